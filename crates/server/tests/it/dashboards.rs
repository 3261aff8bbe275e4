//! `config/prometheus-alerts.yml` and `config/grafana/echo-server.json`
//! against the real thing: promtool checks the rules and runs their unit
//! tests (`config/prometheus-alerts.test.yml`), and every metric the rules
//! and the dashboard name is one a server exports.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, path::Path, process::Command};

use echo_testkit::{
    TestServer, auth_config,
    tools::{promtool, workspace_root},
};

use super::metrics::get;

fn config_file(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("config").join(name)).unwrap()
}

/// Runs promtool in the workspace root; its output when it fails.
fn run_promtool(promtool: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric names in a PromQL expression: the words that start with
/// `echo_` (label values such as `job="echo-server"` have a dash).
fn metric_names(expr: &str, names: &mut BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for token in expr.split(|c: char| !word(c)) {
        if token.starts_with("echo_") {
            names.insert(token.to_owned());
        }
    }
}

/// The expressions of the alert rules (`expr:` lines).
fn rule_expressions() -> Vec<String> {
    config_file("prometheus-alerts.yml")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| expr.trim().to_owned())
        .collect()
}

/// Every query of the dashboard: panels' `expr` and the variables' queries.
fn dashboard_queries(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", serde_json::Value::String(q)) => {
                        found.push(q.clone());
                    }
                    _ => dashboard_queries(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| dashboard_queries(item, found));
        }
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&config_file("grafana/echo-server.json")).unwrap()
}

/// The sample names a freshly started server exports (with their
/// `_total`, `_bucket`, `_sum` and `_count` as Prometheus stores them).
async fn exported_names() -> BTreeSet<String> {
    let (server, http_addr) = TestServer::start_with_metrics(auth_config()).await;
    let (status, body) = get(http_addr, "/metrics").await;
    server.stop().await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    run_promtool(
        &promtool,
        &["check", "rules", "config/prometheus-alerts.yml"],
    );
    run_promtool(
        &promtool,
        &["test", "rules", "config/prometheus-alerts.test.yml"],
    );
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it() {
    let rules = config_file("prometheus-alerts.yml");
    let tests = config_file("prometheus-alerts.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    for alert in alerts {
        let tested = format!("alertname: {alert}");
        // Once with no alert expected, once with one.
        assert!(
            tests.matches(&tested).count() >= 2,
            "{alert} is not tested both ways"
        );
    }
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let exported = exported_names().await;
    let mut named = BTreeSet::new();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard(), &mut queries);
    for expr in rule_expressions().iter().chain(&queries) {
        metric_names(expr, &mut named);
    }
    // Every family appears in one or the other.
    assert!(named.len() >= 15, "too few names found: {named:?}");
    let unknown: Vec<&String> = named.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "named but not exported: {unknown:?}\nexported: {exported:?}"
    );
}

#[test]
fn the_dashboard_asks_for_its_data_source_and_shows_each_server() {
    let dashboard = dashboard();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("instance")["multi"], true);
    let mut targets = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "not per server: {expr}"
            );
            assert!(
                target["legendFormat"]
                    .as_str()
                    .unwrap()
                    .contains("{{instance}}")
            );
            targets += 1;
        }
    }
    assert!(targets >= 20, "{targets} queries");
}
