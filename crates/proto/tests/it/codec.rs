//! The frame codec, one behaviour per test.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use bytes::{BufMut, BytesMut};
use echo_proto::{FrameCodec, Json, ProtoError, ServerMsg, decode_text};
use tokio_util::codec::{Decoder, Encoder};

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn decodes_one_frame() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&frame(b"hello")[..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"hello"[..]);
    assert!(buf.is_empty());
    assert!(codec.decode(&mut buf).unwrap().is_none());
}

#[test]
fn decodes_header_split_across_reads() {
    let mut codec = FrameCodec::new();
    let bytes = frame(b"abc");
    let mut buf = BytesMut::from(&bytes[..2]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.put_slice(&bytes[2..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
}

#[test]
fn decodes_payload_split_across_reads() {
    let mut codec = FrameCodec::new();
    let bytes = frame(b"abcdef");
    let mut buf = BytesMut::from(&bytes[..6]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.put_slice(&bytes[6..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"abcdef"[..]);
}

#[test]
fn decodes_one_byte_at_a_time() {
    let mut codec = FrameCodec::new();
    let mut stream = frame(b"first");
    stream.extend(frame(b"second"));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for byte in stream {
        buf.put_u8(byte);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
    }
    assert_eq!(out, vec![&b"first"[..], &b"second"[..]]);
}

#[test]
fn decodes_several_frames_in_one_read() {
    let mut codec = FrameCodec::new();
    let mut stream = frame(b"a");
    stream.extend(frame(b"bb"));
    stream.extend(frame(b"ccc"));
    let mut buf = BytesMut::from(&stream[..]);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        out.push(frame);
    }
    assert_eq!(out, vec![&b"a"[..], &b"bb"[..], &b"ccc"[..]]);
}

#[test]
fn accepts_frame_at_exactly_the_maximum() {
    let mut codec = FrameCodec::with_max_frame_length(16);
    let payload = [7u8; 16];
    let mut buf = BytesMut::from(&frame(&payload)[..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &payload[..]);
}

#[test]
fn rejects_frame_over_max_without_allocating() {
    let mut codec = FrameCodec::with_max_frame_length(16);
    // The header announces 17 bytes; none of them is sent.
    let mut buf = BytesMut::from(&17u32.to_be_bytes()[..]);
    let capacity_before = buf.capacity();
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        ProtoError::FrameTooLarge { len: 17, max: 16 }
    ));
    assert_eq!(buf.capacity(), capacity_before);
}

#[test]
fn rejects_huge_announced_length_without_allocating() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, ProtoError::FrameTooLarge { .. }));
    assert!(buf.capacity() < 1024);
}

#[test]
fn decodes_zero_length_payload() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&frame(b"")[..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), 0);
    assert!(buf.is_empty());
}

#[test]
fn invalid_utf8_is_a_typed_error() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&frame(&[b'o', b'k', 0xff, 0xfe])[..]);
    let payload = codec.decode(&mut buf).unwrap().unwrap();
    let err = decode_text(payload).unwrap_err();
    assert!(matches!(err, ProtoError::InvalidUtf8(e) if e.valid_up_to() == 2));
}

#[test]
fn text_round_trips_without_loss() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec.encode("привет, мир", &mut buf).unwrap();
    let payload = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(decode_text(payload).unwrap(), "привет, мир");
}

#[test]
fn encoder_writes_big_endian_length_header() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec.encode(&b"abc"[..], &mut buf).unwrap();
    assert_eq!(&buf[..], &[0, 0, 0, 3, b'a', b'b', b'c']);
}

#[test]
fn encoder_refuses_payload_over_max_and_writes_nothing() {
    let mut codec = FrameCodec::with_max_frame_length(2);
    let mut buf = BytesMut::new();
    let err = codec.encode(&b"abc"[..], &mut buf).unwrap_err();
    assert!(matches!(err, ProtoError::FrameTooLarge { len: 3, max: 2 }));
    assert!(buf.is_empty());
}

#[test]
fn json_encoder_refuses_message_over_max_and_leaves_buffer_as_it_was() {
    let mut codec = FrameCodec::with_max_frame_length(10);
    let mut buf = BytesMut::from(&b"xy"[..]);
    let msg = ServerMsg::Reply {
        re: 1,
        text: "far too long for ten bytes".into(),
        last: true,
    };
    assert!(codec.encode(Json(&msg), &mut buf).is_err());
    assert_eq!(&buf[..], b"xy");
}

#[test]
fn json_encoder_writes_header_then_json() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec
        .encode(Json(&ServerMsg::AskName {}), &mut buf)
        .unwrap();
    let expected = br#"{"type":"ask_name"}"#;
    assert_eq!(&buf[..4], &(expected.len() as u32).to_be_bytes());
    assert_eq!(&buf[4..], expected);
}

#[test]
fn raised_maximum_applies_to_the_next_frame() {
    let mut codec = FrameCodec::with_max_frame_length(4);
    let mut buf = BytesMut::from(&frame(b"12345678")[..]);
    assert!(codec.decode(&mut buf.clone()).is_err());
    codec.set_max_frame_length(8);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"12345678"[..]);
}
