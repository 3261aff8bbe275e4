//! Property tests: framing is independent of how the bytes are split, and
//! every message survives a trip through JSON.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use bytes::{BufMut, BytesMut};
use echo_proto::{
    ByeCause, ByeReason, ClientMsg, ErrorCode, FrameCodec, Message, Mode, Secret, ServerMsg,
    decode_message, decode_text,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn encode_all(texts: &[String]) -> Vec<u8> {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    for text in texts {
        codec.encode(text.as_str(), &mut buf).unwrap();
    }
    buf.to_vec()
}

/// Feeds `stream` to a fresh decoder in chunks cut at `cuts` (positions taken
/// modulo the length) and collects the decoded texts.
fn decode_in_chunks(stream: &[u8], cuts: &[usize]) -> Vec<String> {
    let mut positions: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    positions.push(0);
    positions.push(stream.len());
    positions.sort_unstable();
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for pair in positions.windows(2) {
        buf.put_slice(&stream[pair[0]..pair[1]]);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(decode_text(frame).unwrap());
        }
    }
    assert!(buf.is_empty());
    out
}

fn secret() -> impl Strategy<Value = Secret> {
    any::<String>().prop_map(Secret::new)
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        any::<String>().prop_map(|name| ClientMsg::Name { name }),
        secret().prop_map(|token| ClientMsg::Resume { token }),
        (any::<String>(), secret())
            .prop_map(|(user, password)| ClientMsg::Login { user, password }),
        (any::<String>(), secret())
            .prop_map(|(user, password)| ClientMsg::Register { user, password }),
        (any::<u64>(), any::<String>()).prop_map(|(id, text)| ClientMsg::Say { id, text }),
        Just(ClientMsg::Logout {}),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}

fn bye_reason() -> impl Strategy<Value = ByeReason> {
    prop_oneof![
        Just(ByeReason::Shutdown),
        Just(ByeReason::Timeout),
        Just(ByeReason::Logout),
        Just(ByeReason::TooManyAttempts),
        Just(ByeReason::Revoked),
        Just(ByeReason::Kicked),
        Just(ByeReason::Restart),
    ]
}

fn bye_cause() -> impl Strategy<Value = Option<ByeCause>> {
    proptest::option::of(prop_oneof![
        Just(ByeCause::Logout),
        Just(ByeCause::Reuse),
        Just(ByeCause::Operator),
        Just(ByeCause::PasswordChanged),
        Just(ByeCause::Expired),
    ])
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (
            any::<String>(),
            any::<u32>(),
            prop_oneof![Just(Mode::Ident), Just(Mode::Auth)]
        )
            .prop_map(|(server, proto, mode)| ServerMsg::Hello {
                server,
                proto,
                mode
            }),
        Just(ServerMsg::AskName {}),
        (any::<String>(), any::<bool>()).prop_map(|(name, known)| ServerMsg::Greet { name, known }),
        proptest::option::of(any::<String>())
            .prop_map(|suggested_user| ServerMsg::AskAuth { suggested_user }),
        (any::<String>(), secret(), any::<u64>()).prop_map(|(user, token, expires_at)| {
            ServerMsg::Welcome {
                user,
                token,
                expires_at,
            }
        }),
        (any::<u64>(), any::<String>(), any::<bool>())
            .prop_map(|(re, text, last)| ServerMsg::Reply { re, text, last }),
        (
            error_code(),
            any::<String>(),
            any::<bool>(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(code, message, fatal, attempts_left)| ServerMsg::Error {
                code,
                message,
                fatal,
                attempts_left
            }),
        (
            bye_reason(),
            bye_cause(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(reason, cause, retry_after_ms)| ServerMsg::Bye {
                reason,
                cause,
                retry_after_ms
            }),
    ]
}

proptest! {
    #[test]
    fn any_split_of_a_stream_decodes_to_the_same_texts(
        texts in proptest::collection::vec(any::<String>(), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = encode_all(&texts);
        prop_assert_eq!(decode_in_chunks(&stream, &cuts), texts);
    }

    #[test]
    fn every_client_message_round_trips(msg in client_msg()) {
        let json = serde_json::to_vec(&msg).unwrap();
        prop_assert!(ClientMsg::TYPES.contains(&msg.kind()));
        prop_assert_eq!(decode_message::<ClientMsg>(&json).unwrap(), msg);
    }

    #[test]
    fn every_server_message_round_trips(msg in server_msg()) {
        let json = serde_json::to_vec(&msg).unwrap();
        prop_assert!(ServerMsg::TYPES.contains(&msg.kind()));
        prop_assert_eq!(decode_message::<ServerMsg>(&json).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut codec = FrameCodec::with_max_frame_length(256);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let _ = decode_message::<ClientMsg>(&frame);
        }
        let _ = decode_message::<ClientMsg>(&bytes);
        let _ = decode_message::<ServerMsg>(&bytes);
    }
}
