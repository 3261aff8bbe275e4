//! The one test harness of the echo-server workspace, a dev-dependency of
//! the server's and the client's tests:
//!
//! - [`TestServer`]: the library's server in process, on `127.0.0.1:0`, in
//!   the test's runtime or on a thread of its own;
//! - [`ServerProcess`]: the real `echo-server` binary as a child process
//!   (located as [`server_binary`] says);
//! - [`TestClient`] and blocking helpers; message builders ([`register`],
//!   [`login`], [`resume`]) and one [`PASSWORD`];
//! - [`postgres`]: a throwaway PostgreSQL cluster per test, [`pg_ha`]: a
//!   primary with a synchronous standby (promote, `kill -9`), [`relay`]: a
//!   TCP relay a test can freeze (a partition), [`haproxy`], and
//!   [`cluster`]: several real servers on one PostgreSQL;
//!   [`cluster_script`]: `scripts/cluster.sh` run by a test;
//! - [`certs`], [`ManualClock`], [`wait_until`], and the store
//!   [`conformance`] suite.
//!
//! Tests that need PostgreSQL, HAProxy, `promtool` or `fail2ban-regex`
//! ([`tools`]) print one line and pass where they are missing, unless
//! `ECHO_TEST_POSTGRES=require` / `ECHO_TEST_HAPROXY=require` /
//! `ECHO_TEST_PROMETHEUS=require` / `ECHO_TEST_FAIL2BAN=require`.
#![allow(missing_docs, clippy::unwrap_used)]

pub mod certs;
mod client;
pub mod cluster;
pub mod cluster_script;
pub mod conformance;
pub mod docs;
pub mod generated;
pub mod haproxy;
pub mod pg_ha;
pub mod postgres;
mod process;
pub mod relay;
mod server;
pub mod tools;
mod wait;

pub use client::*;
use echo_proto::{ClientMsg, Secret};
pub use echo_server::test_util::{ManualClock, PASSWORD};
pub use process::{KillOnDrop, ServerProcess, binary_copy, replace_with_script, server_binary};
pub use server::{TestServer, auth_config, test_config};
pub use wait::{wait_until, wait_until_async};

/// `register` as `user` with `password`.
pub fn register(user: &str, password: &str) -> ClientMsg {
    ClientMsg::Register {
        user: user.into(),
        password: Secret::new(password),
    }
}

/// `login` as `user` with `password`.
pub fn login(user: &str, password: &str) -> ClientMsg {
    ClientMsg::Login {
        user: user.into(),
        password: Secret::new(password),
    }
}

/// A session token, as a test holds one: a [`Secret`] or its text.
pub trait Token {
    fn token(&self) -> Secret;
}

impl Token for Secret {
    fn token(&self) -> Secret {
        self.clone()
    }
}

impl Token for str {
    fn token(&self) -> Secret {
        Secret::new(self)
    }
}

impl Token for String {
    fn token(&self) -> Secret {
        Secret::new(self.as_str())
    }
}

/// `resume` with `token`.
pub fn resume(token: &(impl Token + ?Sized)) -> ClientMsg {
    ClientMsg::Resume {
        token: token.token(),
    }
}
