//! The server's fast paths agree with the general parser: whatever one
//! accepts, the other accepts with the same meaning, and borrowed replies
//! encode byte for byte like owned ones.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use echo_proto::{
    ClientMsg, ServerMsg, decode_message,
    fast::{CommandSay, RawSay, TextReply},
};
use proptest::prelude::*;

/// A `say` payload whose text is `escaped`, already a JSON string body.
fn say_with_raw_text(escaped: &str) -> Vec<u8> {
    format!(r#"{{"type":"say","id":7,"text":"{escaped}"}}"#).into_bytes()
}

/// What the general parser makes of a payload: the text of a `say`, if any.
fn general_text(payload: &[u8]) -> Option<String> {
    match decode_message::<ClientMsg>(payload) {
        Ok(ClientMsg::Say { text, .. }) => Some(text),
        _ => None,
    }
}

/// A JSON string body mixing plain characters, escapes of every kind, and
/// surrogate escapes, paired or lone.
fn escaped_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z /]{1,4}".prop_map(|s| s),
        Just("\\n".to_owned()),
        Just("\\\"".to_owned()),
        Just("\\/".to_owned()),
        Just("\\u0041".to_owned()),
        Just("\\ud83d\\ude00".to_owned()),
        Just("\\ud800".to_owned()),
        Just("\\udc00".to_owned()),
        Just("\\ud800x".to_owned()),
        // Raw control characters: not JSON, refused by both paths.
        Just("\u{1}".to_owned()),
        Just("\t".to_owned()),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

#[test]
fn a_lone_surrogate_takes_the_general_path_and_is_refused() {
    let payload = say_with_raw_text("\\ud800");
    assert!(RawSay::parse(&payload).is_none());
    assert!(decode_message::<ClientMsg>(&payload).is_err());
    let pair = say_with_raw_text("a\\ud83d\\ude00");
    assert!(RawSay::parse(&pair).is_some());
    assert_eq!(general_text(&pair).as_deref(), Some("a😀"));
}

#[test]
fn a_raw_control_character_takes_the_general_path_and_is_refused() {
    for text in ["a\u{1}b", "tab\there", "\u{1f}", "end\n"] {
        let payload = say_with_raw_text(text);
        assert!(RawSay::parse(&payload).is_none(), "{text:?}");
        assert!(decode_message::<ClientMsg>(&payload).is_err(), "{text:?}");
    }
}

#[test]
fn a_plain_text_is_echoed_as_the_exact_string_sent() {
    let payload = br#"{"text":"hello there","type":"say","id":4}"#;
    let say = RawSay::parse(payload).unwrap();
    assert_eq!((say.id, say.text), (4, r#""hello there""#));
    let empty = br#"{"type":"say","id":5,"text":""}"#;
    assert_eq!(RawSay::parse(empty).unwrap().text, "\"\"");
}

#[test]
fn a_command_is_borrowed_when_it_has_no_escapes() {
    let payload = say_with_raw_text("/repeat 3 hi");
    let say = CommandSay::parse(&payload).unwrap();
    assert_eq!((say.id, &*say.text), (7, "/repeat 3 hi"));
    assert!(matches!(say.text, std::borrow::Cow::Borrowed(_)));
    let escaped = say_with_raw_text("\\/repeat 2 \\\"x\\\"");
    assert_eq!(
        &*CommandSay::parse(&escaped).unwrap().text,
        "/repeat 2 \"x\""
    );
    assert!(CommandSay::parse(&say_with_raw_text("plain")).is_none());
}

#[test]
fn a_borrowed_reply_encodes_like_an_owned_one() {
    for text in ["", "hi", "quote \" and \\ and \u{7}", "😀"] {
        let owned = ServerMsg::Reply {
            re: 3,
            text: text.to_owned(),
            last: true,
        };
        let borrowed = TextReply {
            re: 3,
            text,
            last: true,
        };
        assert_eq!(
            serde_json::to_string(&owned).unwrap(),
            serde_json::to_string(&borrowed).unwrap()
        );
    }
}

proptest! {
    #[test]
    fn the_fast_paths_and_the_general_parser_agree(escaped in escaped_text()) {
        let payload = say_with_raw_text(&escaped);
        let general = general_text(&payload);
        if let Some(say) = RawSay::parse(&payload) {
            // Accepted raw: the general parser accepts it too, and the raw
            // text, read back, is the same text.
            let echoed: String = serde_json::from_str(say.text).unwrap();
            prop_assert_eq!(Some(echoed), general.clone());
        }
        if let Some(say) = CommandSay::parse(&payload) {
            prop_assert_eq!(Some(say.text.into_owned()), general);
        }
    }
}
