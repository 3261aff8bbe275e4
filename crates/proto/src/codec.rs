//! The length-prefixed frame codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

use crate::{
    ProtoError,
    fast::RawReply,
    header::{DEFAULT_MAX_FRAME_LENGTH, HEADER_LEN, decode_header, encode_header},
};

/// Decodes and encodes length-prefixed frames (see [`crate::header`]).
///
/// Decoding yields each payload as a `BytesMut`; parsing it is left to the
/// caller (see [`crate::decode_message`]) so that a payload that is not a
/// valid message does not end the stream: `Framed` stops for good after the
/// first decoder error, which is right only for errors that break framing.
///
/// Frames read and frames written have separate limits: a server reads small
/// frames from clients but may write replies longer than what it echoes. The
/// read limit can be changed between frames, which is how the server accepts
/// larger frames once a client has authenticated.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_length: usize,
    max_encode_length: usize,
    state: DecodeState,
}

/// Where the decoder is: waiting for a header, or for a payload whose length
/// has already been read, so a header is parsed exactly once.
#[derive(Debug, Clone, Copy)]
enum DecodeState {
    Head,
    Data(usize),
}

/// A value to be encoded as one frame holding its JSON form.
///
/// `framed.send(Json(&msg))` serializes straight into the output buffer, with
/// no intermediate `String`.
#[derive(Debug, Clone, Copy)]
pub struct Json<T>(pub T);

impl FrameCodec {
    /// A codec with the default maximum frame length (64 KiB).
    pub fn new() -> Self {
        Self::with_max_frame_length(DEFAULT_MAX_FRAME_LENGTH)
    }

    /// A codec that refuses payloads longer than `max` bytes, both ways.
    pub fn with_max_frame_length(max: usize) -> Self {
        Self::with_limits(max, max)
    }

    /// A codec that reads payloads of at most `read_max` bytes and writes
    /// payloads of at most `write_max` bytes.
    pub fn with_limits(read_max: usize, write_max: usize) -> Self {
        Self {
            max_frame_length: read_max,
            max_encode_length: write_max,
            state: DecodeState::Head,
        }
    }

    /// The limit on frames read.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The limit on frames written.
    pub fn max_encode_length(&self) -> usize {
        self.max_encode_length
    }

    /// Changes the limit on frames read, for the frames that follow.
    ///
    /// A frame whose header has already been accepted is still read whole.
    pub fn set_max_frame_length(&mut self, max: usize) {
        self.max_frame_length = max;
    }

    fn put_frame(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), ProtoError> {
        let header = encode_header(payload.len(), self.max_encode_length)?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_slice(&header);
        dst.put_slice(payload);
        Ok(())
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtoError> {
        let len = match self.state {
            DecodeState::Head => {
                let Some(header) = src.first_chunk::<HEADER_LEN>() else {
                    return Ok(None);
                };
                // Checked before anything is reserved for the payload.
                let len = decode_header(*header, self.max_frame_length)?;
                src.advance(HEADER_LEN);
                self.state = DecodeState::Data(len);
                len
            }
            DecodeState::Data(len) => len,
        };
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let payload = src.split_to(len);
        self.state = DecodeState::Head;
        src.reserve(HEADER_LEN);
        Ok(Some(payload))
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.put_frame(payload, dst)
    }
}

impl Encoder<&str> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, text: &str, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.put_frame(text.as_bytes(), dst)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.put_frame(&payload, dst)
    }
}

impl Encoder<RawReply<'_>> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, reply: RawReply<'_>, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let frame = reply.frame(self.max_encode_length)?;
        dst.reserve(frame.len());
        for part in frame.parts() {
            dst.put_slice(part);
        }
        Ok(())
    }
}

impl<T: Serialize> Encoder<Json<T>> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: Json<T>, dst: &mut BytesMut) -> Result<(), ProtoError> {
        put_json_frame(&item.0, self.max_encode_length, dst)
    }
}

/// Appends one frame holding `value` as JSON to `dst`; on any error `dst`
/// is left as it was.
pub(crate) fn put_json_frame<T: Serialize + ?Sized>(
    value: &T,
    max: usize,
    dst: &mut BytesMut,
) -> Result<(), ProtoError> {
    put_frame_with(max, dst, |dst| {
        serde_json::to_writer(dst.writer(), value).map_err(ProtoError::Serialize)
    })
}

/// Appends one frame whose payload `write` appends to `dst`.
///
/// A placeholder header is written first and patched once the payload length
/// is known; on any error `dst` is left as it was.
fn put_frame_with(
    max: usize,
    dst: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<(), ProtoError>,
) -> Result<(), ProtoError> {
    let start = dst.len();
    dst.reserve(HEADER_LEN + 64);
    dst.put_slice(&[0; HEADER_LEN]);
    let result = write(dst).and_then(|()| encode_header(dst.len() - start - HEADER_LEN, max));
    match result {
        Ok(header) => {
            dst[start..start + HEADER_LEN].copy_from_slice(&header);
            Ok(())
        }
        Err(err) => {
            dst.truncate(start);
            Err(err)
        }
    }
}
