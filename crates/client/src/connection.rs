//! A connection to an echo-server.

use std::time::Duration;

use echo_proto::{
    ClientMsg, MAX_FRAME_LENGTH, ServerMsg, decode_message,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::mpsc,
    task::JoinHandle,
};

use crate::{ClientError, tls::TlsSettings};

/// The sending half of a plain or TLS connection.
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Time allowed to establish the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected server. Frames are read by a background task as soon as they
/// arrive, so the REPL can print them while the user types.
pub struct Connection {
    server: String,
    target: Target,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    writer: Writer,
    reader: JoinHandle<()>,
    next_id: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

/// Where a connection went, kept so that it can connect again to the same
/// place with the same TLS settings ([`Connection::target`]).
#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    tls: Option<TlsSettings>,
}

/// What the reader task hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message.
    Msg(ServerMsg),
    /// A frame this client does not understand (a newer server?); the
    /// connection goes on.
    Unreadable(String),
    /// The connection is over: `None` if the server closed it cleanly.
    Closed(Option<String>),
    /// The server answered with a TLS record: it speaks TLS and this
    /// connection does not ([`ClientError::speaks_tls`]). The connection
    /// is over.
    SpeaksTls,
}

impl Connection {
    /// Connects to `host:port`, over TLS when `tls` says how (nothing is
    /// sent before the server's identity is verified). A failure is one
    /// sentence naming the address.
    pub async fn connect(
        host: &str,
        port: u16,
        tls: Option<&TlsSettings>,
    ) -> Result<Self, ClientError> {
        let server = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let failed = |reason: String, source| ClientError::Connect {
            addr: server.clone(),
            reason,
            source,
        };
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
                Err(_) => return Err(failed("no answer within 10 s".into(), None)),
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let reason = "connection refused (is the server running?)".into();
                    return Err(failed(reason, Some(err)));
                }
                Ok(Err(err)) => return Err(failed(err.to_string(), Some(err))),
                Ok(Ok(stream)) => stream,
            };
        stream
            .set_nodelay(true)
            .map_err(|err| failed(err.to_string(), Some(err)))?;
        let (tx, incoming) = mpsc::unbounded_channel();
        let (reader, writer): (_, Writer) = match tls {
            Some(settings) => {
                let stream = crate::tls::connect(stream, host, &server, settings).await?;
                let (read, write) = tokio::io::split(stream);
                (
                    tokio::spawn(read_frames(BufReader::new(read), tx)),
                    Box::new(write),
                )
            }
            None => {
                let (read, write) = stream.into_split();
                (
                    tokio::spawn(read_frames(BufReader::new(read), tx)),
                    Box::new(write),
                )
            }
        };
        let target = Target {
            host: host.to_owned(),
            port,
            tls: tls.cloned(),
        };
        Ok(Self {
            server,
            target,
            incoming,
            writer,
            reader,
            next_id: 1,
        })
    }

    /// Where this connection went: [`Target::connect`] makes a new one to
    /// the same host and port, with the same TLS settings (and so the same
    /// trust in the server's key).
    pub fn target(&self) -> Target {
        self.target.clone()
    }

    /// `host:port` as connected to: the key of this server's token.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.writer.send_msg(msg).await.map_err(ClientError::Broken)
    }

    /// Ends the connection from this side (a TCP FIN, or TLS's
    /// `close_notify` then FIN): a server draining it sees the end at once.
    pub async fn close(&mut self) {
        // Already broken or closed: nothing more to end.
        let _ = self.writer.shutdown().await;
    }

    /// Sends `text` as a `say` and returns its id.
    pub async fn say(&mut self, text: String) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientMsg::Say { id, text }).await?;
        Ok(id)
    }

    /// The next thing from the server; after `Closed`, `Closed` again.
    pub async fn recv(&mut self) -> Incoming {
        self.incoming.recv().await.unwrap_or(Incoming::Closed(None))
    }

    /// The next message, or the error that ended the connection.
    pub async fn recv_msg(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            match self.recv().await {
                Incoming::Msg(msg) => return Ok(msg),
                Incoming::Unreadable(_) => continue,
                Incoming::Closed(None) => {
                    return Err(ClientError::Lost("the server closed the connection".into()));
                }
                Incoming::Closed(Some(reason)) => return Err(ClientError::Lost(reason)),
                Incoming::SpeaksTls => return Err(ClientError::speaks_tls()),
            }
        }
    }
}

impl Target {
    /// `host:port`, over TLS when `tls` says how.
    pub fn new(host: &str, port: u16, tls: Option<TlsSettings>) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls,
        }
    }

    /// A new connection to this host and port, over TLS as before.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        Connection::connect(&self.host, self.port, self.tls.as_ref()).await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_frames<R: AsyncRead + Unpin + Send>(
    mut read: BufReader<R>,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    loop {
        let event = match read.recv_frame_max(MAX_FRAME_LENGTH).await {
            // 0x15 0x03 / 0x16 0x03: a TLS alert or handshake record.
            Err(echo_proto::ProtoError::FrameTooLarge { len, .. })
                if matches!(len >> 16, 0x1503 | 0x1603) =>
            {
                Incoming::SpeaksTls
            }
            Ok(Some(payload)) => match decode_message::<ServerMsg>(&payload) {
                Ok(msg) => Incoming::Msg(msg),
                Err(err) => Incoming::Unreadable(err.to_string()),
            },
            Ok(None) => Incoming::Closed(None),
            Err(err) => Incoming::Closed(Some(err.to_string())),
        };
        let last = matches!(event, Incoming::Closed(_) | Incoming::SpeaksTls);
        if tx.send(event).is_err() || last {
            return;
        }
    }
}
