//! Parses arbitrary payloads as client and server messages: any input must
//! give a message or a typed error, and a message must survive re-encoding.
#![no_main]

use echo_proto::{ClientMsg, ServerMsg, decode_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_message::<ClientMsg>(data) {
        let again = serde_json_round_trip(&msg);
        assert_eq!(decode_message::<ClientMsg>(&again).ok(), Some(msg));
    }
    if let Ok(msg) = decode_message::<ServerMsg>(data) {
        let again = serde_json_round_trip(&msg);
        assert_eq!(decode_message::<ServerMsg>(&again).ok(), Some(msg));
    }
});

fn serde_json_round_trip<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("a decoded message serializes")
}
