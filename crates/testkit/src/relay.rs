//! A TCP relay in front of one address that a test can freeze: it then
//! forwards nothing either way, and new connections are accepted but never
//! answered, so both ends see what a network partition shows them (their
//! packets go unanswered) without a firewall rule. It runs on threads of
//! the test process and needs no privilege; dropping it closes everything.
//!
//! Why not `nft` or a network namespace: those need root and change the
//! whole machine's network (shared with other jobs, and left behind if the
//! test dies). What differs is only how a new connection fails: a
//! dropped SYN makes the connect time out, an accepted but unanswered one
//! makes the handshake time out; the store under test treats both as an
//! unreachable host within its deadline.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// How often a waiting relay thread looks at the frozen and stop flags.
const POLL: Duration = Duration::from_millis(10);

/// A running relay; see the module doc.
pub struct Relay {
    /// The relay's own port on 127.0.0.1: connect here instead.
    pub port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    frozen: AtomicBool,
    stopped: AtomicBool,
    /// Bumped by [`Relay::cut`]: a thread holding bytes from an older
    /// generation drops them.
    generation: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
}

impl Relay {
    /// A relay on a free port of 127.0.0.1 to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept(listener, upstream, accepting));
        Self { port, shared }
    }

    /// Forwards nothing from now on, until [`Relay::thaw`].
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// Forwards again (what was held while frozen goes through).
    pub fn thaw(&self) {
        self.shared.frozen.store(false, Ordering::SeqCst);
    }

    /// Closes every connection through the relay, dropping whatever it
    /// held unforwarded; later connections are relayed as before.
    pub fn cut(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || relay(client, upstream, shared));
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// One connection: while the relay is frozen it is left unanswered; then
/// it is joined to a new connection to `upstream`, both ways.
fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let generation = shared.generation.load(Ordering::SeqCst);
    if !wait_while_frozen(&shared, generation) {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(client_too), Ok(server_too)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut open = shared.open.lock().unwrap();
        for stream in [&client, &server] {
            if let Ok(stream) = stream.try_clone() {
                open.push(stream);
            }
        }
    }
    let back = Arc::clone(&shared);
    std::thread::spawn(move || copy(server_too, client_too, back, generation));
    copy(client, server, shared, generation);
}

/// Copies `from` to `to` until either ends, holding each chunk while the
/// relay is frozen and dropping it if the relay is cut meanwhile.
fn copy(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>, generation: u64) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !wait_while_frozen(&shared, generation) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Waits while the relay is frozen; false once it is cut or stopped.
fn wait_while_frozen(shared: &Shared, generation: u64) -> bool {
    loop {
        let alive = !shared.stopped.load(Ordering::SeqCst)
            && shared.generation.load(Ordering::SeqCst) == generation;
        if !alive {
            return false;
        }
        if !shared.frozen.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(POLL);
    }
}
