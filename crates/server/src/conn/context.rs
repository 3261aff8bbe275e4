//! What every connection shares: settings, the authenticator (store,
//! attempt ledger, passwords, clock), the counters, the transport step and
//! the per-source limits.
//! One `Arc<Context>` per server, cloned into each connection's task. It
//! imports only the parts below it, never the listener or the sessions.

use std::sync::{Arc, atomic::AtomicBool};

use crate::{
    auth::Authenticator, config::Settings, conn::admission::Sources, conn::transport::Acceptor,
    live::clients::Clients, ops::metrics::Metrics,
};

/// The shared state of one running server.
#[derive(Debug)]
pub(crate) struct Context<S> {
    /// The settings in force (a reload replaces them): read where each
    /// limit applies, never kept.
    pub settings: Settings,
    /// Identification and authentication decisions.
    pub auth: Authenticator<S>,
    /// The metrics, behind `/stats` and `--metrics-addr`.
    pub metrics: Arc<Metrics>,
    /// The step between accept and the first frame.
    pub acceptor: Acceptor,
    /// Connections and handshakes per source address.
    pub sources: Sources,
    /// The live connections, for `echo-server clients` and `kick`.
    pub clients: Arc<Clients>,
    /// Set before the connections are stopped when a new process has taken
    /// over the port (`echo-server upgrade`): they say `bye {restart}`
    /// instead of `bye {shutdown}`.
    pub restarting: Arc<AtomicBool>,
}
