//! The client's integration tests, one test binary: the client binary run
//! against an in-process `TestServer` or the real `echo-server` (both from
//! `echo-testkit`), one module per subject.
#![allow(clippy::unwrap_used)]

mod e2e;
mod fake;
mod farewell;
mod oneshot;
mod parallel;
mod pipe;
mod restart;
mod restart_repl;
mod terminal;
mod tls;
mod upgrade;
mod usage;
