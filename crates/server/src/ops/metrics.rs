//! The server's numbers, kept once: the Prometheus metrics that
//! `--metrics-addr` serves (`http.rs`) and `/stats` shows to a client read
//! the same counters, so the two never disagree.
//!
//! Counters bumped per message (messages, replies, bytes) are not touched
//! per message: each connection keeps a tally and adds it here before it
//! waits for the network and when it ends (`session/wire.rs`), so the hot
//! path shares no cache line between connections.

use std::time::{Duration, Instant};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

// The label values: each enum's variants are spelled as the values
// exported (the derive writes a variant's name as it is), hence snake case.

/// Why a connection was refused before its handshake
/// (`echo_connections_refused_total{reason}`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Refused {
    /// The server is at its connection limit.
    busy,
    /// The source (an address or IPv6 /64) is at one of its limits.
    per_ip,
}

/// How a handshake ended (`echo_handshakes_total{outcome}`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Handshake {
    /// Identified by address (ident mode).
    greeted,
    /// A new account.
    registered,
    /// A password login.
    logged_in,
    /// A session token.
    resumed,
    /// Ended otherwise, before its deadline.
    failed,
    /// Its deadline passed.
    timeout,
}

/// Why an authentication attempt was refused
/// (`echo_auth_failures_total{reason}`): the wire error code's text, and
/// `token_reused` for a rotated-away token.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum AuthFailure {
    invalid_credentials,
    invalid_name,
    name_taken,
    weak_password,
    rate_limited,
    token_invalid,
    token_reused,
    unavailable,
    internal,
}

/// Why a session chain was revoked (`echo_sessions_revoked_total{reason}`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Revoked {
    /// A rotated-away token was presented.
    reused,
    /// The client logged out.
    logout,
}

/// A store operation (`echo_store_operation_seconds{op}`): the
/// `UserStore` method's name.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum StoreOp {
    identity,
    remember_identity,
    identities,
    forget_identity,
    familiar_since,
    note_familiar,
    user,
    users,
    create_user,
    register,
    set_password,
    remove_user,
    create_session,
    rotate_session,
    revoke_session,
    revoke_user_sessions,
    sessions,
    chains_alive,
    note_visit,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabel {
    reason: Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Handshake,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuthFailureLabel {
    reason: AuthFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RevokedLabel {
    reason: Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabel {
    op: StoreOp,
}

/// `echo_build_info`'s label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// Buckets for timings from 0.1 ms to about 13 s.
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
    store_operations: Family<OpLabel, Histogram, Timings>,
    revoked: Family<RevokedLabel, Counter>,
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
            refused: Family::default(),
            handshakes: Family::default(),
            auth_failures: Family::default(),
            messages: Counter::default(),
            replies: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            password_hash_seconds: Timings.new_metric(),
            store_operations: Family::new_with_constructor(Timings),
            revoked: Family::default(),
        };
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
            "echo_store_operation_seconds",
            "Time of one store operation, by operation",
            self.store_operations.clone(),
        );
        registry.register(
            "echo_sessions_revoked",
            "Session chains revoked, by reason",
            self.revoked.clone(),
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
        Histogram::new(exponential_buckets(0.0001, 3.0, 12))
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
}
