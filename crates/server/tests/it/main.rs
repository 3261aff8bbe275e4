//! The server's integration tests that need nothing outside this machine's
//! Rust build: one test binary (see "Delete Cargo Integration Tests"),
//! one module per subject. The harness is `echo-testkit`.
#![allow(clippy::unwrap_used)]

mod admission;
mod attacks;
mod attacks_identity;
mod auth;
mod auth_sessions;
mod auth_sources;
mod binary;
mod control;
mod control_ids;
mod control_servers;
mod dashboards;
mod fail2ban;
mod hardening;
mod layers;
mod logs;
mod metrics;
mod metrics_port;
mod metrics_series;
mod operations;
mod password_memory;
mod proxy;
mod reload;
mod reload_attacks;
mod server;
mod server_sessions;
mod soak;
mod sqlite_servers;
mod store;
mod store_identities;
mod tls;
mod upgrade;
mod upgrade_edges;
mod upgrade_failures;
mod upgrade_storm;
mod usage;
