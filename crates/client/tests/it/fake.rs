//! A scripted fake server for the restart tests: a listener on
//! `127.0.0.1:0` speaking the framed protocol one step at a time, so a test
//! can end a connection with `bye restart` exactly where it wants, and see
//! what the client sends on the next one.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use echo_proto::{
    ByeReason, ClientMsg, Mode, Secret, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};

/// The longest the fake waits for the client to connect or to send.
const WAIT: Duration = Duration::from_secs(20);

/// The listening fake.
pub struct Fake {
    listener: TcpListener,
}

/// One accepted connection of the fake.
pub struct FakeConn {
    stream: TcpStream,
}

impl Fake {
    pub fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Accepting polls, so that a client that never comes fails the
        // test instead of hanging it.
        listener.set_nonblocking(true).unwrap();
        Self { listener }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// The `host:port` the client keys its token by.
    pub fn server_name(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The next connection, as it comes (within [`WAIT`]).
    pub fn accept_raw(&self) -> TcpStream {
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no client came");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => panic!("accept: {err}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }

    /// The next connection, after `hello` in `mode`.
    pub fn accept(&self, mode: Mode) -> FakeConn {
        let mut conn = FakeConn {
            stream: self.accept_raw(),
        };
        conn.send(&ServerMsg::Hello {
            server: "fake 0".into(),
            proto: 1,
            mode,
        });
        conn
    }
}

impl FakeConn {
    pub fn send(&mut self, msg: &ServerMsg) {
        self.stream.send_msg(msg).unwrap();
    }

    /// The client's next message; `None` once it has closed.
    pub fn recv(&mut self) -> Option<ClientMsg> {
        self.stream.recv_msg().unwrap()
    }

    /// Authentication: `ask_auth`, then expects `resume` and answers
    /// `welcome` with `next`; returns the token the client presented.
    pub fn resume(&mut self, next: &str) -> String {
        self.send(&ServerMsg::AskAuth {
            suggested_user: None,
        });
        match self.recv() {
            Some(ClientMsg::Resume { token }) => {
                self.send(&welcome(next));
                token.expose().to_owned()
            }
            other => panic!("expected resume, got {other:?}"),
        }
    }

    /// Reads one `say` and answers it with its own text.
    pub fn echo_one(&mut self) -> String {
        match self.recv() {
            Some(ClientMsg::Say { id, text }) => {
                self.send(&ServerMsg::Reply {
                    re: id,
                    text: text.clone(),
                    last: true,
                });
                text
            }
            other => panic!("expected say, got {other:?}"),
        }
    }

    /// Echoes every `say` until the client closes; the texts, in order.
    pub fn echo_all(&mut self) -> Vec<String> {
        let mut texts = Vec::new();
        while let Some(msg) = self.recv() {
            match msg {
                ClientMsg::Say { id, text } => {
                    self.send(&ServerMsg::Reply {
                        re: id,
                        text: text.clone(),
                        last: true,
                    });
                    texts.push(text);
                }
                other => panic!("expected say, got {other:?}"),
            }
        }
        texts
    }

    /// `bye restart`, then the graceful close a server makes: its side
    /// shut, what the client still sends read and dropped (it was never
    /// read as a message: the server finished what it had read).
    pub fn bye_restart(mut self, retry_after_ms: u64) {
        self.send(&ServerMsg::Bye {
            reason: ByeReason::Restart,
            cause: None,
            retry_after_ms: Some(retry_after_ms),
        });
        self.stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
    }

    /// A connection accepted with [`Fake::accept_raw`], to script.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self { stream }
    }
}

pub fn welcome(token: &str) -> ServerMsg {
    ServerMsg::Welcome {
        user: "ann".into(),
        token: Secret::new(token),
        expires_at: 4_000_000_000,
    }
}

/// Copies bytes both ways between `a` and `b` until either side closes.
pub fn relay(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
            let _ = to.flush();
        })
    };
    let one = copy(a.try_clone().unwrap(), b.try_clone().unwrap());
    let other = copy(b, a);
    one.join().unwrap();
    other.join().unwrap();
}
