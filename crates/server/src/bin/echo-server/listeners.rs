//! The sockets a server serves on, made or taken before the runtime
//! starts: the port (bound, handed over by the previous process of an
//! upgrade, or by systemd's socket activation), the control socket, the
//! metrics port, the TLS setup, and what an upgrade will hand on.

use std::{io, sync::Arc};

use anyhow::Context;
use echo_server::{
    ServerConfig, ServerTls, bind_with_fallback, control, inherit,
    upgrade::{Handoff, Successor},
};

/// The sockets bound before the runtime starts, and the TLS setup.
pub(crate) struct Listeners {
    pub(crate) main: std::net::TcpListener,
    pub(crate) metrics: Option<std::net::TcpListener>,
    pub(crate) control: control::ControlSocket,
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// The one line a healthy server prints: where it listens (and its
    /// TLS key).
    pub(crate) announcement: String,
    /// What `echo-server upgrade` starts, with copies of the sockets.
    pub(crate) successor: Successor,
}

impl Listeners {
    /// The TLS pair, the port (or the next free one), its control socket
    /// and the metrics port, in that order; the sockets handed over by an
    /// upgrade, or by systemd's socket activation, instead of binding.
    pub(crate) fn bind(config: &ServerConfig, handoff: Option<Handoff>) -> anyhow::Result<Self> {
        let tls = match config.tls.enabled {
            true => Some(Arc::new(
                ServerTls::prepare(config).context("cannot set up TLS")?,
            )),
            false => None,
        };
        let upgrading = handoff.is_some();
        let (main, handed_metrics, mut announcement) = inherited_or_bound(config, handoff)?;
        // Bound now, before the server says it is listening, and named after
        // the port it got; without it `clients` and `kick` could not reach
        // this server, so it is no start. A new process of an upgrade binds
        // its own beside the old one's and takes its place once ready.
        let data_dir = &config.store.data_dir;
        let port = main.local_addr().context("cannot read the port")?.port();
        let control = match upgrading {
            false => control::bind(data_dir, port),
            true => control::bind_successor(data_dir, port),
        };
        let control = control.with_context(|| {
            let path = control::socket_path(data_dir, port);
            format!("cannot make the control socket {}", path.display())
        })?;
        let metrics = match (handed_metrics, &config.metrics.addr) {
            (Some(handed), Some(_)) => Some(handed),
            (_, Some(addr)) => Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on the metrics address {addr}"))?,
            ),
            (_, None) => None,
        };
        let successor =
            Successor::prepare(&main, metrics.as_ref()).context("cannot prepare for upgrades")?;
        if let Some(tls) = &tls {
            announcement.push_str(&format!(" (TLS key {})", tls.fingerprint()));
        }
        Ok(Self {
            main,
            metrics,
            control,
            tls,
            announcement,
            successor,
        })
    }
}

/// The port's socket and the metrics port's, if one was handed over (by
/// the old process of an upgrade, or systemd: the first socket of
/// `LISTEN_FDS` is the port, the second the metrics port), else the port
/// bound now; and the console line that says where it listens.
fn inherited_or_bound(
    config: &ServerConfig,
    handoff: Option<Handoff>,
) -> anyhow::Result<(std::net::TcpListener, Option<std::net::TcpListener>, String)> {
    let (main, metrics) = match handoff {
        Some(handoff) => (handoff.port, handoff.metrics),
        None => {
            let mut activated = inherit::systemd_sockets()
                .context("cannot take the sockets of LISTEN_FDS")?
                .into_iter()
                .map(std::net::TcpListener::from);
            match activated.next() {
                Some(main) => (main, activated.next()),
                None => {
                    let listen = &config.listen;
                    let bound = bind_with_fallback(&listen.host, listen.port, listen.port_search)?;
                    let announcement = bound.announcement();
                    return Ok((bound.listener, None, announcement));
                }
            }
        }
    };
    let addr = main
        .local_addr()
        .context("cannot read the handed-over port")?;
    Ok((main, metrics, format!("listening on {addr}")))
}

/// A bound std listener, handed to the runtime.
pub(crate) fn tokio_listener(
    listener: std::net::TcpListener,
) -> io::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}
