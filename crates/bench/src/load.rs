//! Closed-loop load: each connection keeps `depth` messages in flight and
//! sends the next one when an answer is complete, for a fixed time after a
//! warm-up. Both targets are sent the very same bytes: a `say` frame.

use std::{collections::VecDeque, net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use echo_proto::{
    ClientMsg, ErrorCode, FrameCodec, Json, MAX_FRAME_LENGTH, Secret, ServerMsg, decode_message,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf},
    net::TcpStream,
    time::Instant,
};
use tokio_rustls::TlsConnector;
use tokio_util::codec::Encoder;

/// A benchmark connection: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection of either kind.
pub type Conn = Box<dyn Io>;

/// Connects to `addr`, with a TLS handshake when `tls` is given.
pub async fn open(addr: SocketAddr, tls: Option<&TlsConnector>) -> anyhow::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(match tls {
        Some(connector) => {
            let name = echo_tls::pki_types::ServerName::IpAddress(addr.ip().into());
            Box::new(connector.connect(name, stream).await?)
        }
        None => Box::new(stream),
    })
}

/// What is measured: the echo-server or the plain reference echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// echo-server: frames, JSON, the state machine.
    Real,
    /// The reference echo: bytes back as they came.
    Reference,
}

/// How the connections reach the conversation on the real server.
#[derive(Debug, Clone)]
pub enum Handshake {
    /// Identification mode: give a name if asked.
    Ident,
    /// Authentication mode: log in as `user`.
    Login { user: String, password: String },
    /// Authentication mode: register `user`, or log in if it exists.
    Account { user: String, password: String },
}

/// One run: closed loop, or paced when `interval` is given.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub payload: usize,
    pub depth: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Paced: each connection sends one message every `interval` on a
    /// fixed schedule (the connections' schedules spread evenly over one
    /// interval), whatever the answers. A message held back by the answer
    /// before it counts from when it was due, so a server that stalls is
    /// not let off (no coordinated omission); otherwise from when it left
    /// (the load generator's timer is only millisecond-precise, and its
    /// lateness is not the server's). `None`: the next message as soon as
    /// an answer is complete.
    pub interval: Option<Duration>,
}

impl Load {
    /// The pace in milliseconds, for reports; `None` for a closed loop.
    pub fn pace_ms(&self) -> Option<f64> {
        self.interval.map(|every| every.as_secs_f64() * 1000.0)
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Measured {
    /// Round trips completed inside the measured window.
    pub round_trips: u64,
    /// Latency of each, in microseconds.
    pub latency: Histogram<u64>,
    /// Length of the window.
    pub seconds: f64,
}

impl Measured {
    /// The latency at quantile `q` in microseconds; NaN (not measured) when
    /// no round trip completed, rather than a zero that reads as a figure.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            f64::NAN
        } else {
            self.latency.value_at_quantile(q) as f64
        }
    }
}

/// The bytes of the `reply` frame that echoes [`say_frame`].
pub fn reply_frame(payload: usize) -> Bytes {
    frame_of(&ServerMsg::Reply {
        re: 1,
        text: "x".repeat(payload),
        last: true,
    })
}

/// The bytes of one `say` frame with `payload` bytes of text.
pub fn say_frame(payload: usize) -> Bytes {
    frame_of(&ClientMsg::Say {
        id: 1,
        text: "x".repeat(payload),
    })
}

fn frame_of(msg: &impl serde::Serialize) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    // The benchmark's messages are far below the 1 MiB cap: they encode.
    #[allow(clippy::unwrap_used)]
    FrameCodec::with_max_frame_length(MAX_FRAME_LENGTH)
        .encode(Json(msg), &mut buf)
        .unwrap();
    buf.freeze()
}

pub fn histogram() -> Histogram<u64> {
    // Microseconds up to an hour, 3 significant digits: valid bounds.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

/// Connects `count` clients through the handshake, `parallel` at a time.
pub async fn connect_many(
    addr: SocketAddr,
    target: Target,
    handshakes: Vec<Handshake>,
    parallel: usize,
    tls: Option<&TlsConnector>,
) -> anyhow::Result<Vec<Conn>> {
    let mut streams = Vec::with_capacity(handshakes.len());
    let mut pending =
        futures_util::stream::iter(handshakes.into_iter().map(|handshake| async move {
            let mut stream = open(addr, tls).await?;
            if target == Target::Real {
                handshake_on(&mut stream, &handshake).await?;
            }
            anyhow::Ok(stream)
        }))
        .buffer_unordered(parallel.max(1));
    while let Some(stream) = pending.next().await {
        streams.push(stream.context("a benchmark connection failed")?);
    }
    Ok(streams)
}

/// Takes a fresh connection to the real server through its handshake.
pub async fn handshake_on<S: AsyncRead + AsyncWrite + Unpin + Send + ?Sized>(
    stream: &mut S,
    handshake: &Handshake,
) -> anyhow::Result<()> {
    loop {
        let msg: ServerMsg = stream.recv_msg().await?.context("server closed")?;
        match (msg, handshake) {
            (ServerMsg::Hello { .. }, _) => {}
            (ServerMsg::AskName {}, _) => {
                stream
                    .send_msg(&ClientMsg::Name {
                        name: "bench".into(),
                    })
                    .await?;
            }
            (ServerMsg::Greet { .. }, _) | (ServerMsg::Welcome { .. }, _) => return Ok(()),
            (ServerMsg::AskAuth { .. }, Handshake::Login { user, password })
            | (
                ServerMsg::Error {
                    code: ErrorCode::NameTaken,
                    ..
                },
                Handshake::Account { user, password },
            ) => {
                let login = ClientMsg::Login {
                    user: user.clone(),
                    password: Secret::new(password.clone()),
                };
                stream.send_msg(&login).await?;
            }
            (ServerMsg::AskAuth { .. }, Handshake::Account { user, password }) => {
                let register = ClientMsg::Register {
                    user: user.clone(),
                    password: Secret::new(password.clone()),
                };
                stream.send_msg(&register).await?;
            }
            (other, _) => bail!("unexpected {other:?} in the handshake"),
        }
    }
}

/// Runs closed-loop ping-pong on `streams` and measures the window after
/// the warm-up.
pub async fn ping_pong<S: Io>(
    streams: Vec<S>,
    target: Target,
    load: Load,
) -> anyhow::Result<Measured> {
    let frame = say_frame(load.payload);
    let reply = reply_frame(load.payload);
    let start = Instant::now();
    let from = start + load.warmup;
    let end = from + load.duration;
    let count = streams.len().max(1) as u32;
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let (frame, reply) = (frame.clone(), reply.clone());
            match load.interval {
                None => tokio::spawn(one_connection(
                    stream, target, frame, reply, load.depth, from, end,
                )),
                Some(every) => {
                    let first = start + every * i as u32 / count;
                    let schedule = Schedule {
                        first,
                        every,
                        from,
                        end,
                    };
                    tokio::spawn(paced_connection(stream, target, frame, reply, schedule))
                }
            }
        })
        .collect();
    let mut latency = histogram();
    let mut round_trips = 0;
    for task in tasks {
        let (count, hist) = task.await??;
        round_trips += count;
        latency.add(&hist)?;
    }
    Ok(Measured {
        round_trips,
        latency,
        seconds: load.duration.as_secs_f64(),
    })
}

async fn one_connection<S: Io>(
    stream: S,
    target: Target,
    frame: Bytes,
    reply: Bytes,
    depth: usize,
    from: Instant,
    end: Instant,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let (read, mut write) = tokio::io::split(stream);
    let mut hist = histogram();
    let mut count = 0u64;
    let mut sent = VecDeque::with_capacity(depth);
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * depth)
        .collect();
    write.write_all(&burst).await?;
    for _ in 0..depth {
        sent.push_back(Instant::now());
    }
    let mut answers = Answers::new(read, target, &frame, &reply);
    loop {
        answers.next().await?;
        let now = Instant::now();
        let sent_at = sent.pop_front().context("an answer nobody asked for")?;
        if sent_at >= from && now <= end {
            hist.record(now.duration_since(sent_at).as_micros().max(1) as u64)?;
            count += 1;
        }
        if now >= end {
            return Ok((count, hist));
        }
        write.write_all(&frame).await?;
        sent.push_back(Instant::now());
    }
}

/// When a paced connection's messages are due, and the measured window.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    first: Instant,
    every: Duration,
    from: Instant,
    end: Instant,
}

/// One message every `schedule.every`, timed as [`Load::interval`] says.
/// A message due while the last answer is still awaited is sent as soon as
/// that answer is complete (one in flight at a time, as a person typing).
async fn paced_connection<S: Io>(
    stream: S,
    target: Target,
    frame: Bytes,
    reply: Bytes,
    schedule: Schedule,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let (read, mut write) = tokio::io::split(stream);
    let (mut hist, mut count) = (histogram(), 0u64);
    let mut answers = Answers::new(read, target, &frame, &reply);
    let (mut due, mut answered) = (schedule.first, schedule.first);
    while due < schedule.end {
        tokio::time::sleep_until(due).await;
        let sent = if answered > due { due } else { Instant::now() };
        write.write_all(&frame).await?;
        answers.next().await?;
        answered = Instant::now();
        if due >= schedule.from && answered <= schedule.end {
            hist.record(answered.duration_since(sent).as_micros().max(1) as u64)?;
            count += 1;
        }
        due += schedule.every;
    }
    Ok((count, hist))
}

/// Reads complete answers. Both targets are read the same way, one
/// `read_exact` of the answer's known length, so the load generator does the
/// same work for both: the reference sends back the bytes it got, the real
/// server a `reply` frame whose bytes are known in advance (checked whole the
/// first time, by its header and final flag after that).
struct Answers<S> {
    read: ReadHalf<S>,
    buf: Vec<u8>,
    expected: Option<Bytes>,
    checked: bool,
}

impl<S: Io> Answers<S> {
    fn new(read: ReadHalf<S>, target: Target, frame: &Bytes, reply: &Bytes) -> Self {
        let (len, expected) = match target {
            Target::Real => (reply.len(), Some(reply.clone())),
            Target::Reference => (frame.len(), None),
        };
        Self {
            read,
            buf: vec![0; len],
            expected,
            checked: false,
        }
    }

    async fn next(&mut self) -> anyhow::Result<()> {
        self.read.read_exact(&mut self.buf).await?;
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        if !self.checked {
            if self.buf[..] != expected[..] {
                let msg: ServerMsg = decode_message(&self.buf[echo_proto::HEADER_LEN..])?;
                bail!("expected the echo of the say, got {msg:?}");
            }
            self.checked = true;
        } else if self.buf[..4] != expected[..4] || !self.buf.ends_with(b"\"last\":true}") {
            bail!("an answer that is not the final reply");
        }
        Ok(())
    }
}
