//! What `echo-bench` prints: the report, as a table or as JSON.

use serde::Serialize;

use crate::{
    scenarios::{self, EchoRow, IdleResult, ResumeResult, StormResult},
    spread::{figure, spread},
    stores::StoreTable,
    tls,
};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: String,
    pub echo: Vec<EchoRow>,
    /// The echo table compares the server with and without metrics.
    pub metrics_compared: bool,
    /// The echo table is over TLS.
    pub tls: bool,
    pub tls_handshakes: Option<tls::HandshakeResult>,
    pub login_storm: Option<StormResult>,
    pub login_rate: Option<scenarios::RateResult>,
    pub resume: Option<ResumeResult>,
    pub idle: Option<IdleResult>,
    pub upgrade: Option<scenarios::UpgradeResult>,
    /// The store comparison (`--store URL`).
    pub stores: Option<StoreTable>,
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

pub fn print_table(report: &Report) {
    println!("machine: {}", report.machine);
    if !report.echo.is_empty() {
        print_echo(report);
    }
    if let Some(hs) = &report.tls_handshakes {
        print_handshakes(hs);
    }
    if let Some(rate) = &report.login_rate {
        print_rate(rate);
    }
    print_auth(report);
    if let Some(stores) = &report.stores {
        crate::stores::print(stores);
    }
}

/// Scenario 1's table.
fn print_echo(report: &Report) {
    let against = match (report.metrics_compared, report.tls) {
        (true, _) => {
            "echo-server with its metrics port scraped every second vs the same server without"
        }
        (false, true) => "echo-server over TLS vs a plain Tokio echo over TLS (tokio-rustls)",
        (false, false) => "echo-server vs the plain Tokio echo",
    };
    println!("\nEcho: round trips per second and p99 latency, {against}");
    println!("median of repetitions (min-max); ratio = echo-server / reference, per repetition");
    println!(
        "{:>5} {:>7} {:>5} | {:>26} {:>26} {:>20} | {:>22} {:>22} {:>20}",
        "conns",
        "payload",
        "depth",
        "echo-server rt/s",
        "reference rt/s",
        "rt/s ratio",
        "echo-server p99 us",
        "reference p99 us",
        "p99 ratio"
    );
    for row in &report.echo {
        println!(
            "{:>5} {:>7} {:>5} | {:>26} {:>26} {:>20} | {:>22} {:>22} {:>20}",
            row.connections,
            row.payload,
            row.depth,
            spread(&row.real_rps, 0),
            spread(&row.reference_rps, 0),
            spread(&row.rps_ratio, 2),
            spread(&row.real_p99_us, 0),
            spread(&row.reference_p99_us, 0),
            spread(&row.p99_ratio, 2),
        );
    }
}

/// The TLS handshake rates.
fn print_handshakes(hs: &tls::HandshakeResult) {
    println!(
        "\nTLS handshakes per second, {} clients in turn: full: echo-server {}, reference {}; resumed ({:.0}% or more did): echo-server {}, reference {}",
        hs.workers,
        spread(&hs.full_real, 0),
        spread(&hs.full_reference, 0),
        hs.resumed_share * 100.0,
        spread(&hs.resumed_real, 0),
        spread(&hs.resumed_reference, 0),
    );
}

/// Scenario 2b.
fn print_rate(rate: &scenarios::RateResult) {
    println!("\n{}", rate_line(rate));
}

/// Scenario 2b's line; in words when the rate could not be derived.
fn rate_line(rate: &scenarios::RateResult) -> String {
    let Some(per_sec) = rate.rate_per_sec else {
        return "Login rate: not measured: no login succeeded while the login capacity was measured, so there was no rate to derive (give one with --rate)".to_owned();
    };
    let derived = rate.capacity_per_sec.map_or_else(String::new, |capacity| {
        format!(" (half the measured capacity of {capacity:.0}/s)")
    });
    format!(
        "Login rate: {}' p99, quiet {} us, during {per_sec:.1} login attempts/s{derived} {} us: ratio {}; answered {}/s, {} failed",
        sessions(rate.established, rate.pace_ms),
        spread(&rate.p99_quiet_us, 0),
        spread(&rate.p99_during_us, 0),
        spread(&rate.p99_ratio, 2),
        spread(&rate.answered_per_sec, 0),
        rate.failed,
    )
}

/// Scenarios 2, 3 and 4.
fn print_auth(report: &Report) {
    if let Some(storm) = &report.login_storm {
        println!(
            "\nLogin storm: {}' p99, quiet {} us, during {} logging-in connections {} us: ratio {}; logins/s {}",
            sessions(storm.established, storm.pace_ms),
            spread(&storm.p99_quiet_us, 0),
            storm.storm,
            spread(&storm.p99_storm_us, 0),
            spread(&storm.p99_ratio, 2),
            spread(&storm.logins_per_sec, 0),
        );
    }
    if let Some(resume) = &report.resume {
        println!(
            "\nResume: {} workers, connect + resume + one say: {} per second",
            resume.workers,
            spread(&resume.resumes_per_sec, 0)
        );
    }
    if let Some(upgrade) = &report.upgrade {
        println!("\n{}", upgrade_line(upgrade));
    }
    if let Some(idle) = &report.idle {
        println!("{}", idle_lines(idle));
    }
}

/// Scenario 4: memory per idle session, the kernel's beside it, and the
/// active sessions' p99 among the idle.
fn idle_lines(idle: &IdleResult) -> String {
    let how = match idle.mode.as_str() {
        "ident" => "identified",
        _ => "authenticated",
    };
    let over = if idle.tls { "TLS" } else { "plain TCP" };
    let slabs = match idle.kernel_slab_bytes_per_session {
        Some(bytes) => format!("{:.1} KiB", bytes / 1024.0),
        None => "not readable (root only)".to_owned(),
    };
    format!(
        "\nIdle memory: {} {how} idle connections over {over} from {} source address(es): \
         server RSS {} KiB -> {} KiB (peak {} KiB), {:.1} KiB per connection\n\
         Kernel, per session (client and server ends): TCP buffers {:.1} KiB, socket slabs {slabs}\n\
         Active among idle: {} sessions ping-ponging 64 B: p99 {} alone, {} among the idle: {:.2}x\n\
         Opening the idle sessions: {} per second over the first tenth, {} over the last",
        idle.connections,
        idle.sources,
        idle.rss_before_kib,
        idle.rss_after_kib,
        idle.peak_rss_kib,
        idle.kib_per_connection,
        idle.kernel_tcp_bytes_per_session / 1024.0,
        idle.active,
        figure(idle.p99_alone_us, " us"),
        figure(idle.p99_among_idle_us, " us"),
        idle.p99_ratio,
        figure(idle.open_rates[0], ""),
        figure(idle.open_rates[1], ""),
    )
}

/// Scenario 6 in one paragraph: the figures that must be 0 first.
fn upgrade_line(u: &scenarios::UpgradeResult) -> String {
    format!(
        "Upgrade: {} sessions, {} upgrades in {:.1} s: messages sent {}, answered {}, lost {}, doubled {}; \
         connections refused {}; password prompts {}; sessions failed {}; resumed {} times; \
         longest gap per session p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        u.sessions,
        u.upgrades,
        u.seconds,
        u.sent,
        u.answered,
        u.lost,
        u.doubled,
        u.refused,
        u.passwords_asked,
        u.sessions_failed,
        u.restarts,
        u.gap_p50_ms,
        u.gap_p99_ms,
        u.gap_max_ms,
    )
}

/// The established sessions of scenarios 2 and 2b, and how they talk.
fn sessions(count: usize, pace_ms: Option<f64>) -> String {
    match pace_ms {
        Some(ms) => format!("{count} established sessions (one message every {ms:.0} ms each)"),
        None => format!("{count} established sessions (ping-pong)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_that_could_not_be_derived_is_said_in_words_not_as_zeros() {
        let unmeasured = scenarios::RateResult::unmeasured(4, None, Some(0.0));
        let line = rate_line(&unmeasured);
        assert!(line.starts_with("Login rate: not measured"), "{line}");
        assert!(!line.contains(" 0/s"), "{line}");
        let json = serde_json::to_value(&unmeasured).unwrap();
        assert!(json["rate_per_sec"].is_null(), "{json}");
        assert!(json["p99_during_us"].is_null(), "{json}");
    }
}
