//! Stream extension traits: the lab's "extend the socket class" extra credit.
//!
//! With [`AsyncFrameRead`] and [`AsyncFrameWrite`] in scope, every Tokio stream
//! (`TcpStream`, its split halves, `DuplexStream`, a TLS stream later) gains
//! `send_text` / `recv_text` and typed `send_msg` / `recv_msg`.
//! [`BlockingFrameRead`] and [`BlockingFrameWrite`] do the same for
//! `std::net::TcpStream` and any other `Read` / `Write`, for simple programs.
//! All of them use the header functions of [`crate::header`].
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
            let mut header = [0; HEADER_LEN];
            let mut filled = 0;
            while filled < HEADER_LEN {
                let n = self.read(&mut header[filled..]).await?;
                if n == 0 {
                    return end_of_stream(filled);
                }
                filled += n;
            }
            let mut payload = vec![0; decode_header(header, max)?];
            self.read_exact(&mut payload).await?;
            Ok(Some(payload))
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
        async move {
            match self.recv_frame().await? {
                Some(payload) => decode_message(&payload).map(Some),
                None => Ok(None),
            }
        }
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
        async move {
            let frame = frame_bytes(payload)?;
            self.write_all(&frame).await?;
            self.flush().await?;
            Ok(())
        }
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
        async move {
            let mut frame = BytesMut::new();
            put_json_frame(msg, MAX_FRAME_LENGTH, &mut frame)?;
            self.write_all(&frame).await?;
            self.flush().await?;
            Ok(())
        }
    }
}

/// Reading frames from a blocking stream, such as `std::net::TcpStream`.
pub trait BlockingFrameRead: Read {
    /// Reads one frame's payload of at most `max` bytes; see
    /// [`AsyncFrameRead::recv_frame_max`].
    fn recv_frame_max(&mut self, max: usize) -> Result<Option<Vec<u8>>, ProtoError> {
        let mut header = [0; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            let n = match self.read(&mut header[filled..]) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if n == 0 {
                return end_of_stream(filled);
            }
            filled += n;
        }
        let mut payload = vec![0; decode_header(header, max)?];
        self.read_exact(&mut payload)?;
        Ok(Some(payload))
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
        match self.recv_frame()? {
            Some(payload) => decode_message(&payload).map(Some),
            None => Ok(None),
        }
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
        let mut frame = BytesMut::new();
        put_json_frame(msg, MAX_FRAME_LENGTH, &mut frame)?;
        self.write_all(&frame)?;
        self.flush()?;
        Ok(())
    }
}

impl<S: AsyncRead + Unpin + Send + ?Sized> AsyncFrameRead for S {}
impl<S: AsyncWrite + Unpin + Send + ?Sized> AsyncFrameWrite for S {}
impl<S: Read + ?Sized> BlockingFrameRead for S {}
impl<S: Write + ?Sized> BlockingFrameWrite for S {}

/// Header and payload in one buffer, so a frame goes out in one write.
fn frame_bytes(payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let header = encode_header(payload.len(), MAX_FRAME_LENGTH)?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    Ok(frame)
}

fn end_of_stream(header_bytes_read: usize) -> Result<Option<Vec<u8>>, ProtoError> {
    if header_bytes_read == 0 {
        Ok(None)
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside a frame header",
        )
        .into())
    }
}

fn payload_to_text(payload: Vec<u8>) -> Result<String, ProtoError> {
    String::from_utf8(payload).map_err(|err| ProtoError::InvalidUtf8(err.utf8_error()))
}
