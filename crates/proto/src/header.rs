//! The frame header: 4 bytes, unsigned big-endian, holding the length of the
//! payload that follows (the header itself is not counted).
//!
//! This is the only place that knows the header's layout; the codec and both
//! families of stream extension traits call these two functions.

use crate::ProtoError;

/// Length of the header in bytes.
pub const HEADER_LEN: usize = 4;

/// Default limit on frames a server reads from a client: 64 KiB.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 64 * 1024;

/// The protocol's cap on any frame, either way: 1 MiB. A server never sends
/// a longer frame, so a client that accepts this much accepts every reply
/// (a reply can be longer than the message it echoes, once JSON-escaped).
pub const MAX_FRAME_LENGTH: usize = 1024 * 1024;

/// Builds the header for a payload of `len` bytes, refusing payloads longer
/// than `max` (or than the header can express).
pub fn encode_header(len: usize, max: usize) -> Result<[u8; HEADER_LEN], ProtoError> {
    match u32::try_from(len) {
        Ok(len32) if len <= max => Ok(len32.to_be_bytes()),
        _ => Err(ProtoError::FrameTooLarge { len, max }),
    }
}

/// Reads the payload length from a header, refusing lengths over `max`.
///
/// Callers check this before reserving any memory for the payload, so a
/// hostile header cannot make the process allocate 4 GiB.
pub fn decode_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, ProtoError> {
    let announced = u32::from_be_bytes(header);
    // On a 64-bit target this conversion cannot fail; on a 16-bit one a
    // length that does not fit is over any possible maximum anyway.
    let len = usize::try_from(announced).unwrap_or(usize::MAX);
    if len > max {
        return Err(ProtoError::FrameTooLarge { len, max });
    }
    Ok(len)
}
