//! The server's tests with real parts started per test: a throwaway
//! PostgreSQL (the store, several servers on one database) and HAProxy in
//! front of several servers. Where PostgreSQL or HAProxy is missing they
//! print one line and pass, unless `ECHO_TEST_POSTGRES=require` /
//! `ECHO_TEST_HAPROXY=require`. The harness is `echo-testkit`.
#![allow(clippy::unwrap_used)]

mod balancer;
mod cluster_rolling;
mod cluster_script;
mod cluster_script_ha;
mod cluster_script_supervision;
mod end_causes;
mod failover;
mod failover_faults;
mod several_servers;
mod several_servers_faults;
mod store_postgres;
mod store_postgres_hangs;
mod store_postgres_hosts;
mod store_postgres_text;
mod upgrade_haproxy;
mod upgrade_postgres;
