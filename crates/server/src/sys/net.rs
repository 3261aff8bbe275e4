//! Binding the listening socket, moving to the next free port when the one
//! asked for is taken (the lab's task 4).

use std::{
    io,
    net::{SocketAddr, TcpListener, ToSocketAddrs},
};

/// A bound listener and what happened while binding it.
#[derive(Debug)]
pub struct Bound {
    /// The listening socket, blocking; convert it inside the runtime.
    pub listener: TcpListener,
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The port asked for, when it was busy and another was taken.
    pub busy_port: Option<u16>,
}

/// Why no port could be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The host name did not resolve to any address.
    #[error("cannot resolve host {host:?}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        source: io::Error,
    },
    /// Every port in the range was busy.
    #[error("ports {first} to {last} on {host} are all in use")]
    AllBusy {
        /// The host.
        host: String,
        /// The first port tried.
        first: u16,
        /// The last port tried.
        last: u16,
    },
    /// Binding failed for another reason (permission, no such address, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

impl Bound {
    /// The console line of a healthy start: `listening on HOST:PORT`, plus
    /// `(port N was busy)` or `(ports N-M were busy)` when the server moved.
    pub fn announcement(&self) -> String {
        let last_busy = self.addr.port().saturating_sub(1);
        match self.busy_port {
            Some(port) if port == last_busy => {
                format!("listening on {} (port {port} was busy)", self.addr)
            }
            Some(port) => format!(
                "listening on {} (ports {port}-{last_busy} were busy)",
                self.addr
            ),
            None => format!("listening on {}", self.addr),
        }
    }
}

/// Connections the kernel completes and queues before the server takes them:
/// enough for a burst of clients (std's 128 overflowed under 300 at once,
/// and a client whose handshake overflows it waits for the kernel's
/// retransmissions, seconds). The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket on `addr`, as std's `TcpListener::bind` makes it
/// (`SO_REUSEADDR`, close-on-exec) but with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Binds `host:port`, or the first free port among the `search` ports after
/// it. Only "address in use" moves on; any other failure is reported at once.
/// Port 0 asks the OS for any free port.
pub fn bind_with_fallback(host: &str, port: u16, search: u16) -> Result<Bound, BindError> {
    let ip = (host, port)
        .to_socket_addrs()
        .and_then(|mut addrs| {
            addrs
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"))
        })
        .map_err(|source| BindError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .ip();
    let last = if port == 0 {
        0
    } else {
        port.saturating_add(search)
    };
    for candidate in port..=last {
        let addr = SocketAddr::new(ip, candidate);
        match listen(addr) {
            Ok(listener) => {
                let addr = listener
                    .local_addr()
                    .map_err(|source| BindError::Bind { addr, source })?;
                let busy_port = (candidate != port).then_some(port);
                return Ok(Bound {
                    listener,
                    addr,
                    busy_port,
                });
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => continue,
            Err(source) => return Err(BindError::Bind { addr, source }),
        }
    }
    Err(BindError::AllBusy {
        host: host.to_owned(),
        first: port,
        last,
    })
}
