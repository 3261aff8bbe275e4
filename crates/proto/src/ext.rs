//! Stream extension traits: the lab's "extend the socket class" extra credit.
//!
//! With [`AsyncFrameRead`] and [`AsyncFrameWrite`] in scope, every Tokio stream
//! (`TcpStream`, its split halves, `DuplexStream`, a TLS stream later) gains
//! `send_text` / `recv_text` and typed `send_msg` / `recv_msg`.
//! [`BlockingFrameRead`] and [`BlockingFrameWrite`] do the same for
//! `std::net::TcpStream` and any other `Read` / `Write`, for simple programs.
//! Both families drive the same [`FrameReader`] and encode with the same
//! functions, so the framing rules live once, in [`crate::header`].
//!
//! The async reads are not cancel-safe (a frame half-read when the future is
//! dropped is lost); code that races reads against other events in `select!`
//! uses [`crate::FrameCodec`] with `Framed` instead.

use std::io::{self, Read, Write};

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    Message, ProtoError,
    codec::put_json_frame,
    decode_message,
    header::{HEADER_LEN, MAX_FRAME_LENGTH, decode_header, encode_header},
};

/// Reading frames from an async stream.
pub trait AsyncFrameRead: AsyncRead + Unpin + Send {
    /// Reads one frame's payload of at most `max` bytes. `Ok(None)` is a clean
    /// end of stream before a header; an end inside a frame is an error.
    fn recv_frame_max(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, ProtoError>> + Send {
        async move {
            let mut reader = FrameReader::new(max);
            loop {
                let n = self.read(reader.unfilled()).await?;
                if let Some(frame) = reader.advance(n)? {
                    return Ok(frame);
                }
            }
        }
    }

    /// Reads one frame of at most [`MAX_FRAME_LENGTH`] bytes.
    fn recv_frame(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, ProtoError>> + Send {
        self.recv_frame_max(MAX_FRAME_LENGTH)
    }

    /// Reads one frame and returns it as text.
    fn recv_text(&mut self) -> impl Future<Output = Result<Option<String>, ProtoError>> + Send {
        async move { self.recv_frame().await?.map(payload_to_text).transpose() }
    }

    /// Reads one frame and parses it as a message of `T`.
    fn recv_msg<T: Message>(
        &mut self,
    ) -> impl Future<Output = Result<Option<T>, ProtoError>> + Send {
        async move { payload_to_msg(self.recv_frame().await?) }
    }
}

/// Writing frames to an async stream. Every call writes one whole frame with
/// one `write_all` and flushes.
pub trait AsyncFrameWrite: AsyncWrite + Unpin + Send {
    /// Writes `payload` as one frame.
    fn send_frame(
        &mut self,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), ProtoError>> + Send {
        async move { write_frames(self, &frame_bytes(payload)?).await }
    }

    /// Writes `text` as one frame.
    fn send_text(&mut self, text: &str) -> impl Future<Output = Result<(), ProtoError>> + Send {
        self.send_frame(text.as_bytes())
    }

    /// Writes `msg` as one frame holding its JSON form.
    fn send_msg<T: Serialize + Sync>(
        &mut self,
        msg: &T,
    ) -> impl Future<Output = Result<(), ProtoError>> + Send {
        async move { write_frames(self, &msg_frame(msg)?).await }
    }
}

/// Reading frames from a blocking stream, such as `std::net::TcpStream`.
pub trait BlockingFrameRead: Read {
    /// Reads one frame's payload of at most `max` bytes; see
    /// [`AsyncFrameRead::recv_frame_max`].
    fn recv_frame_max(&mut self, max: usize) -> Result<Option<Vec<u8>>, ProtoError> {
        let mut reader = FrameReader::new(max);
        loop {
            let n = match self.read(reader.unfilled()) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if let Some(frame) = reader.advance(n)? {
                return Ok(frame);
            }
        }
    }

    /// Reads one frame of at most [`MAX_FRAME_LENGTH`] bytes.
    fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, ProtoError> {
        self.recv_frame_max(MAX_FRAME_LENGTH)
    }

    /// Reads one frame and returns it as text.
    fn recv_text(&mut self) -> Result<Option<String>, ProtoError> {
        self.recv_frame()?.map(payload_to_text).transpose()
    }

    /// Reads one frame and parses it as a message of `T`.
    fn recv_msg<T: Message>(&mut self) -> Result<Option<T>, ProtoError> {
        payload_to_msg(self.recv_frame()?)
    }
}

/// Writing frames to a blocking stream, such as `std::net::TcpStream`.
pub trait BlockingFrameWrite: Write {
    /// Writes `payload` as one frame.
    fn send_frame(&mut self, payload: &[u8]) -> Result<(), ProtoError> {
        self.write_all(&frame_bytes(payload)?)?;
        self.flush()?;
        Ok(())
    }

    /// Writes `text` as one frame.
    fn send_text(&mut self, text: &str) -> Result<(), ProtoError> {
        self.send_frame(text.as_bytes())
    }

    /// Writes `msg` as one frame holding its JSON form.
    fn send_msg<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtoError> {
        self.write_all(&msg_frame(msg)?)?;
        self.flush()?;
        Ok(())
    }
}

impl<S: AsyncRead + Unpin + Send + ?Sized> AsyncFrameRead for S {}
impl<S: AsyncWrite + Unpin + Send + ?Sized> AsyncFrameWrite for S {}
impl<S: Read + ?Sized> BlockingFrameRead for S {}
impl<S: Write + ?Sized> BlockingFrameWrite for S {}

/// Reading exactly one frame, without I/O of its own: the caller reads into
/// [`FrameReader::unfilled`] and reports how many bytes came with
/// [`FrameReader::advance`]. It never reads past the frame, so the stream is
/// left at the next frame's header.
#[derive(Debug)]
pub struct FrameReader {
    max: usize,
    header: [u8; HEADER_LEN],
    filled: usize,
    /// The payload, once the header is in and checked.
    payload: Option<Vec<u8>>,
}

impl FrameReader {
    /// A reader for one frame of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            header: [0; HEADER_LEN],
            filled: 0,
            payload: None,
        }
    }

    /// Where the next bytes read from the stream go.
    pub fn unfilled(&mut self) -> &mut [u8] {
        match &mut self.payload {
            Some(payload) => &mut payload[self.filled..],
            None => &mut self.header[self.filled..],
        }
    }

    /// Takes note of `n` bytes read into [`FrameReader::unfilled`] (0 means
    /// the stream ended). Returns the frame once it is whole: `None` for a
    /// clean end of stream before any header byte.
    pub fn advance(&mut self, n: usize) -> Result<Option<Option<Vec<u8>>>, ProtoError> {
        let fresh = self.filled == 0 && self.payload.is_none();
        if n == 0 && !self.is_complete() {
            if fresh {
                return Ok(Some(None));
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a frame",
            )
            .into());
        }
        self.filled += n;
        if self.payload.is_none() && self.filled == HEADER_LEN {
            // Checked before anything is allocated for the payload.
            let len = decode_header(self.header, self.max)?;
            self.payload = Some(vec![0; len]);
            self.filled = 0;
        }
        if self.is_complete() {
            return Ok(Some(self.payload.take()));
        }
        Ok(None)
    }

    fn is_complete(&self) -> bool {
        self.payload
            .as_ref()
            .is_some_and(|payload| self.filled == payload.len())
    }
}

/// Writes bytes that hold whole frames with one `write_all`, and flushes.
async fn write_frames<W: AsyncWrite + Unpin + ?Sized>(
    stream: &mut W,
    frames: &[u8],
) -> Result<(), ProtoError> {
    stream.write_all(frames).await?;
    stream.flush().await?;
    Ok(())
}

/// Header and payload in one buffer, so a frame goes out in one write.
fn frame_bytes(payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let header = encode_header(payload.len(), MAX_FRAME_LENGTH)?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// One frame holding `msg` as JSON.
fn msg_frame<T: Serialize + ?Sized>(msg: &T) -> Result<BytesMut, ProtoError> {
    let mut frame = BytesMut::new();
    put_json_frame(msg, MAX_FRAME_LENGTH, &mut frame)?;
    Ok(frame)
}

fn payload_to_text(payload: Vec<u8>) -> Result<String, ProtoError> {
    String::from_utf8(payload).map_err(|err| ProtoError::InvalidUtf8(err.utf8_error()))
}

fn payload_to_msg<T: Message>(payload: Option<Vec<u8>>) -> Result<Option<T>, ProtoError> {
    payload.map(|payload| decode_message(&payload)).transpose()
}
