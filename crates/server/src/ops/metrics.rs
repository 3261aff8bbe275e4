//! The server's numbers, kept once: the Prometheus metrics that
//! `--metrics-addr` serves (`http.rs`) and `/stats` shows to a client read
//! the same counters, so the two never disagree.
//!
//! Counters bumped per message (messages, replies, bytes) are not touched
//! per message: each connection keeps a tally and adds it here before it
//! waits for the network and when it ends (`session/wire.rs`), so the hot
//! path shares no cache line between connections.

use std::time::{Duration, Instant};

mod labels;

use prometheus_client::metrics::{
    counter::Counter,
    family::{Family, MetricConstructor},
    gauge::Gauge,
    histogram::Histogram,
};
use prometheus_client::registry::Registry;

pub use labels::{AuthFailure, Handshake, Refused, Revoked, StoreOp};
use labels::{AuthFailureLabel, OpLabel, OutcomeLabel, RefusedLabel, RevokedLabel, VersionLabel};

/// The upper bounds of the timing histograms, in seconds: 0.1 ms to 10 s in
/// steps of 1, 2.5 and 5, written out so that each `le` label reads as
/// written here (buckets computed by multiplying print as
/// `0.00030000000000000003`).
pub const TIMING_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Makes the timing histograms ([`TIMING_BUCKETS`]).
#[derive(Debug, Clone, Copy)]
struct Timings;

/// Every metric of one server, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Instant,
    /// `echo_connections_active`.
    pub connections_active: Gauge,
    /// `echo_connections_total`.
    pub connections_total: Counter,
    /// `echo_connections_max`: the connection limit (`max_connections`),
    /// so that an alert can compare the connections open with it.
    pub connections_max: Gauge,
    refused: Family<RefusedLabel, Counter>,
    handshakes: Family<OutcomeLabel, Counter>,
    auth_failures: Family<AuthFailureLabel, Counter>,
    /// `echo_messages_total`: each `say` received.
    pub messages: Counter,
    /// `echo_replies_total`.
    pub replies: Counter,
    /// `echo_bytes_received_total`.
    pub bytes_received: Counter,
    /// `echo_bytes_sent_total`.
    pub bytes_sent: Counter,
    /// `echo_password_hash_seconds`.
    pub password_hash_seconds: Histogram,
    /// `echo_auth_seconds`: the server's time to answer one `resume`,
    /// `login` or `register`, what a client waits for in its handshake.
    pub auth_seconds: Histogram,
    store_operations: Family<OpLabel, Histogram, Timings>,
    revoked: Family<RevokedLabel, Counter>,
    /// `echo_store_up`: 1 while the store answers, 0 while it is known
    /// down (what `/healthz` reports), set at each scrape.
    pub store_up: Gauge,
}

/// Counts one open connection for as long as it lives.
#[derive(Debug)]
pub struct ConnectionCount(Gauge);

impl Metrics {
    /// Fresh metrics, registered; uptime starts now.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            registry: Registry::default(),
            started: Instant::now(),
            connections_active: Gauge::default(),
            connections_total: Counter::default(),
            connections_max: Gauge::default(),
            refused: Family::default(),
            handshakes: Family::default(),
            auth_failures: Family::default(),
            messages: Counter::default(),
            replies: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            password_hash_seconds: Timings.new_metric(),
            auth_seconds: Timings.new_metric(),
            store_operations: Family::new_with_constructor(Timings),
            revoked: Family::default(),
            store_up: Gauge::default(),
        };
        metrics.store_up.set(1);
        metrics.create_every_series();
        metrics.register_connections(&mut registry);
        metrics.register_work(&mut registry);
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("echo_build_info", "The server's version", build);
        Self {
            registry,
            ..metrics
        }
    }

    /// Creates every labelled series at 0, for every label value known in
    /// advance (all of them): a series that appears only at its first event
    /// has no rate until its second scrape, and an alert on it stays silent.
    fn create_every_series(&self) {
        // Creating a series is all that is wanted: the guard is let go at once.
        for &reason in Refused::ALL {
            drop(self.refused.get_or_create(&RefusedLabel { reason }));
        }
        for &outcome in Handshake::ALL {
            drop(self.handshakes.get_or_create(&OutcomeLabel { outcome }));
        }
        for &reason in AuthFailure::ALL {
            drop(
                self.auth_failures
                    .get_or_create(&AuthFailureLabel { reason }),
            );
        }
        for &reason in Revoked::ALL {
            drop(self.revoked.get_or_create(&RevokedLabel { reason }));
        }
        for &op in StoreOp::ALL {
            drop(self.store_operations.get_or_create(&OpLabel { op }));
        }
    }

    /// Registers the connection and handshake metrics.
    fn register_connections(&self, registry: &mut Registry) {
        // prometheus-client adds `_total` to counters' names itself.
        registry.register(
            "echo_connections_active",
            "Connections open now",
            self.connections_active.clone(),
        );
        registry.register(
            "echo_connections",
            "Connections accepted",
            self.connections_total.clone(),
        );
        registry.register(
            "echo_connections_max",
            "The connection limit (max_connections)",
            self.connections_max.clone(),
        );
        registry.register(
            "echo_connections_refused",
            "Connections refused before their handshake, by reason",
            self.refused.clone(),
        );
        registry.register(
            "echo_handshakes",
            "Handshakes ended, by outcome",
            self.handshakes.clone(),
        );
        registry.register(
            "echo_auth_failures",
            "Refused authentication attempts, by reason",
            self.auth_failures.clone(),
        );
    }

    /// Registers the traffic, timing and revocation metrics.
    fn register_work(&self, registry: &mut Registry) {
        registry.register(
            "echo_messages",
            "say messages received",
            self.messages.clone(),
        );
        registry.register("echo_replies", "reply messages sent", self.replies.clone());
        registry.register(
            "echo_bytes_received",
            "Bytes read from clients",
            self.bytes_received.clone(),
        );
        registry.register(
            "echo_bytes_sent",
            "Bytes written to clients",
            self.bytes_sent.clone(),
        );
        registry.register(
            "echo_password_hash_seconds",
            "Time of one password hash or check",
            self.password_hash_seconds.clone(),
        );
        registry.register(
            "echo_auth_seconds",
            "Time to answer one resume, login or register",
            self.auth_seconds.clone(),
        );
        registry.register(
            "echo_store_operation_seconds",
            "Time of one store operation, by operation",
            self.store_operations.clone(),
        );
        registry.register(
            "echo_sessions_revoked",
            "Session chains revoked, by reason",
            self.revoked.clone(),
        );
        registry.register(
            "echo_store_up",
            "1 while the store answers, 0 while it is known down",
            self.store_up.clone(),
        );
    }

    /// Counts a connection until the returned guard is dropped.
    pub fn connection(&self) -> ConnectionCount {
        self.connections_active.inc();
        self.connections_total.inc();
        ConnectionCount(self.connections_active.clone())
    }

    /// A connection refused before its handshake.
    pub fn refused(&self, reason: Refused) {
        self.refused.get_or_create(&RefusedLabel { reason }).inc();
    }

    /// A handshake's end.
    pub fn handshake(&self, outcome: Handshake) {
        self.handshakes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A refused authentication attempt.
    pub fn auth_failure(&self, reason: AuthFailure) {
        let label = AuthFailureLabel { reason };
        self.auth_failures.get_or_create(&label).inc();
    }

    /// A revoked session chain.
    pub fn revoked(&self, reason: Revoked) {
        self.revoked.get_or_create(&RevokedLabel { reason }).inc();
    }

    /// A store operation `op` that took `took`.
    pub fn store_operation(&self, op: StoreOp, took: Duration) {
        let label = OpLabel { op };
        self.store_operations
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Connections open now.
    pub fn connections_now(&self) -> u64 {
        u64::try_from(self.connections_active.get()).unwrap_or(0)
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.get()
    }

    /// `say` messages received since start.
    pub fn messages_served(&self) -> u64 {
        self.messages.get()
    }

    /// Everything, in the OpenMetrics text format Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricConstructor<Histogram> for Timings {
    fn new_metric(&self) -> Histogram {
        Histogram::new(TIMING_BUCKETS)
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_the_contract_is_exposed() {
        let metrics = Metrics::new();
        let _open = metrics.connection();
        metrics.refused(Refused::busy);
        metrics.handshake(Handshake::greeted);
        metrics.auth_failure(AuthFailure::invalid_credentials);
        metrics.revoked(Revoked::logout);
        metrics.store_operation(StoreOp::user, Duration::from_millis(1));
        metrics.password_hash_seconds.observe(0.02);
        let text = metrics.encode();
        for line in [
            "echo_connections_active 1",
            "echo_connections_total 1",
            "echo_connections_refused_total{reason=\"busy\"} 1",
            "echo_handshakes_total{outcome=\"greeted\"} 1",
            "echo_auth_failures_total{reason=\"invalid_credentials\"} 1",
            "echo_messages_total 0",
            "echo_replies_total 0",
            "echo_bytes_received_total 0",
            "echo_bytes_sent_total 0",
            "echo_password_hash_seconds_count 1",
            "echo_store_operation_seconds_count{op=\"user\"} 1",
            "echo_sessions_revoked_total{reason=\"logout\"} 1",
            "echo_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn every_known_label_value_is_exported_at_zero_before_any_event() {
        let text = Metrics::new().encode();
        let outcomes = Handshake::ALL
            .iter()
            .map(|v| format!("echo_handshakes_total{{outcome=\"{v:?}\"}} 0"));
        let failures = AuthFailure::ALL
            .iter()
            .map(|v| format!("echo_auth_failures_total{{reason=\"{v:?}\"}} 0"));
        let refused = Refused::ALL
            .iter()
            .map(|v| format!("echo_connections_refused_total{{reason=\"{v:?}\"}} 0"));
        let revoked = Revoked::ALL
            .iter()
            .map(|v| format!("echo_sessions_revoked_total{{reason=\"{v:?}\"}} 0"));
        let ops = StoreOp::ALL
            .iter()
            .map(|v| format!("echo_store_operation_seconds_count{{op=\"{v:?}\"}} 0"));
        let lines: Vec<String> = outcomes
            .chain(failures)
            .chain(refused)
            .chain(revoked)
            .chain(ops)
            .collect();
        assert_eq!(lines.len(), 7 + 9 + 2 + 2 + 19);
        for line in lines {
            assert!(text.contains(&line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn histogram_buckets_print_as_written() {
        let text = Metrics::new().encode();
        let bounds: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("echo_password_hash_seconds_bucket"))
            .filter_map(|line| line.split('"').nth(1))
            .collect();
        let round = [
            "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
            "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
        ];
        assert_eq!(bounds, round, "{text}");
    }
}
