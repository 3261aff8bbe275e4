//! docs/PROTOCOL.md is the contract for clients in other languages: every
//! example frame in it must be exactly what this crate sends and accepts.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use echo_proto::{ClientMsg, ErrorCode, Message, ServerMsg, decode_message};

fn protocol_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");
    std::fs::read_to_string(path).unwrap()
}

/// Lines of the form `[S: |C: ]xx xx xx xx  PAYLOAD`.
fn example_frames(doc: &str) -> Vec<(Option<char>, u32, String)> {
    doc.lines()
        .filter_map(|line| {
            let (side, rest) = match line.get(..3) {
                Some("S: ") => (Some('S'), &line[3..]),
                Some("C: ") => (Some('C'), &line[3..]),
                _ => (None, line),
            };
            let (hex, payload) = rest.split_once("  ")?;
            let bytes: Vec<u8> = hex
                .split(' ')
                .map(|b| u8::from_str_radix(b, 16))
                .collect::<Result<_, _>>()
                .ok()?;
            let header: [u8; 4] = bytes.try_into().ok()?;
            Some((side, u32::from_be_bytes(header), payload.to_owned()))
        })
        .collect()
}

#[test]
fn every_example_frame_is_exact() {
    let doc = protocol_doc();
    let frames = example_frames(&doc);
    assert!(frames.len() >= 20, "found only {} examples", frames.len());
    for (side, len, payload) in frames {
        assert_eq!(len as usize, payload.len(), "header of {payload}");
        let server = decode_message::<ServerMsg>(payload.as_bytes());
        let client = decode_message::<ClientMsg>(payload.as_bytes());
        let reencoded = match (side, server, client) {
            (Some('S') | None, Ok(msg), _) => serde_json::to_string(&msg).unwrap(),
            (Some('C') | None, _, Ok(msg)) => serde_json::to_string(&msg).unwrap(),
            (side, server, client) => {
                panic!("{payload} ({side:?}) decodes as neither: {server:?} / {client:?}")
            }
        };
        assert_eq!(
            reencoded, payload,
            "the crate writes this example differently"
        );
    }
}

#[test]
fn the_hex_dump_example_is_one_whole_frame() {
    let doc = protocol_doc();
    let dump = doc
        .lines()
        .find(|line| line.starts_with("00 00 00 21 7b"))
        .unwrap();
    let bytes: Vec<u8> = dump
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mut expected = 33u32.to_be_bytes().to_vec();
    expected.extend_from_slice(br#"{"type":"say","id":1,"text":"hi"}"#);
    assert_eq!(bytes, expected);
}

#[test]
fn every_message_type_has_an_example() {
    let doc = protocol_doc();
    let examples: Vec<String> = example_frames(&doc)
        .into_iter()
        .map(|(_, _, p)| p)
        .collect();
    for kind in ServerMsg::TYPES.iter().chain(ClientMsg::TYPES) {
        let needle = format!("{{\"type\":\"{kind}\"");
        assert!(
            examples.iter().any(|p| p.starts_with(&needle)),
            "no example of {kind}"
        );
    }
}

#[test]
fn every_error_code_is_documented() {
    let doc = protocol_doc();
    for &code in ErrorCode::ALL {
        let name = serde_json::to_value(code).unwrap();
        let row = format!("| `{}` |", name.as_str().unwrap());
        assert!(doc.contains(&row), "{row} missing from the error table");
    }
}
