//! The byte matcher for the commonest `say` against the parsers it stands
//! in front of.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use proptest::prelude::*;

use super::RawSay;

/// What serde_json makes of `json` on the fast path without the matcher.
fn parsed(json: &str) -> Option<(u64, &str)> {
    RawSay::without_escapes(json)
        .or_else(|| RawSay::with_escapes(json))
        .map(|say| (say.id, say.text))
}

fn matched(json: &str) -> Option<(u64, &str)> {
    RawSay::canonical(json).map(|say| (say.id, say.text))
}

#[test]
fn the_bytes_serde_writes_are_matched() {
    for json in [
        r#"{"type":"say","id":1,"text":"hello"}"#,
        r#"{"type":"say","id":0,"text":""}"#,
        r#"{"type":"say","id":18446744073709551615,"text":"café 😀 /x"}"#,
    ] {
        assert!(matched(json).is_some(), "{json}");
        assert_eq!(matched(json), parsed(json), "{json}");
    }
}

#[test]
fn anything_else_is_left_to_the_parser() {
    for json in [
        // Other spacing, order, escapes: valid, for serde_json to read.
        r#"{"type":"say","id":1,"text":"x"} "#,
        r#"{"type": "say","id":1,"text":"x"}"#,
        r#"{"id":1,"type":"say","text":"x"}"#,
        r#"{"type":"say","id":1,"text":"a\"b"}"#,
        r#"{"type":"say","id":1,"text":"a\nb"}"#,
        r#"{"type":"say","id":1e2,"text":"x"}"#,
        // Not JSON, or not a u64: refused by the parser too.
        "{\"type\":\"say\",\"id\":1,\"text\":\"tab\there\"}",
        r#"{"type":"say","id":01,"text":"x"}"#,
        r#"{"type":"say","id":18446744073709551616,"text":"x"}"#,
        r#"{"type":"say","id":-1,"text":"x"}"#,
        r#"{"type":"say","id":,"text":"x"}"#,
        r#"{"type":"say","id":1,"text":"a"b"}"#,
        r#"{"type":"say","id":1,"text":"a","text":"b"}"#,
        r#"{"type":"say","id":1,"text":"x""#,
    ] {
        assert!(matched(json).is_none(), "{json}");
    }
}

proptest! {
    #[test]
    fn what_is_matched_is_what_serde_json_reads(id in any::<u64>(), text in any::<String>()) {
        let json = serde_json::to_string(&crate::ClientMsg::Say { id, text }).unwrap();
        if let Some(say) = matched(&json) {
            prop_assert_eq!(Some(say), parsed(&json));
        }
    }

    #[test]
    fn a_text_is_plain_exactly_when_serde_json_leaves_it_as_it_is(text in any::<String>()) {
        let quoted = serde_json::to_string(&text).unwrap();
        prop_assert_eq!(super::is_plain_string(text.as_bytes()), quoted[1..quoted.len() - 1] == text);
    }
}
