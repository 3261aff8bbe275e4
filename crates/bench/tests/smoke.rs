//! `echo-bench --quick` runs every scenario end to end (no thresholds: the
//! figures live in `docs/BENCHMARKS.md`; this checks that the tool works).

use std::{process::Command, sync::Mutex};

/// One run at a time: each measures, and two at once would share the cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn quick(args: &[&str]) -> String {
    quick_with_stderr(args).0
}

/// The report (standard output) and the progress (standard error).
fn quick_with_stderr(args: &[&str]) -> (String, String) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .arg("--quick")
        .args(args)
        .output()
        .expect("echo-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "echo-bench --quick {args:?} failed: {stderr}\n{stdout}",
    );
    (stdout, stderr)
}

#[test]
fn every_scenario_runs_and_reports() {
    // Standard error is a pipe here: the progress line draws nothing, so a
    // log of the run gets no terminal control codes.
    let (report, progress) = quick_with_stderr(&[]);
    assert!(
        !progress.contains('\x1b'),
        "control codes on a pipe: {progress:?}"
    );
    assert!(!report.contains('\x1b'), "{report:?}");
    for heading in [
        "Echo:",
        "Login rate:",
        "Login storm:",
        "Resume:",
        "Idle memory:",
    ] {
        assert!(report.contains(heading), "no {heading} in:\n{report}");
    }
}

#[test]
fn the_echo_scenario_runs_over_tls() {
    let report = quick(&["--tls", "--scenario", "echo"]);
    assert!(report.contains("Echo:"), "{report}");
    assert!(report.contains("over TLS"), "{report}");
}

#[test]
fn the_resume_scenario_runs_on_postgres() {
    // The store comparison: the same scenario on a throwaway PostgreSQL
    // (skipped with one line where PostgreSQL is not installed, unless
    // ECHO_TEST_POSTGRES=require).
    let Some(pg) = echo_testkit::postgres::Postgres::start() else {
        return;
    };
    let report = quick(&["--scenario", "resume", "--store", &pg.url()]);
    assert!(report.contains("Resume:"), "{report}");
    assert!(report.to_lowercase().contains("postgres"), "{report}");
}

#[test]
fn the_upgrade_scenario_carries_every_session_across_a_real_upgrade() {
    // The scenario runs the echo-server binary beside echo-bench.
    echo_testkit::server_binary();
    let report = quick(&["--scenario", "upgrade", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    let upgrade = &json["upgrade"];
    assert_eq!(upgrade["sessions"], 20, "{upgrade}");
    assert!(upgrade["answered"].as_u64() > Some(20), "{upgrade}");
    assert_eq!(upgrade["sent"], upgrade["answered"], "{upgrade}");
    for zero in [
        "lost",
        "doubled",
        "refused",
        "passwords_asked",
        "sessions_failed",
    ] {
        assert_eq!(upgrade[zero], 0, "{zero}: {upgrade}");
    }
    assert_eq!(upgrade["restarts"], 20, "each session once: {upgrade}");
    assert!(upgrade["gap_max_ms"].as_f64().is_some(), "{upgrade}");
}
