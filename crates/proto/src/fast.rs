//! The echo fast path: a `say` whose text is echoed back is never unescaped
//! and escaped again. Its text stays the JSON string the client sent, and the
//! `reply` carries that string as it was. Same message, same meaning (a JSON
//! string means the same however its characters are escaped), a fraction of
//! the work on long texts.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A `say` parsed without copying or unescaping its text.
#[derive(Debug, Deserialize)]
pub struct RawSay<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    /// The `id` to answer with.
    pub id: u64,
    /// The text, still a JSON string with its quotes and escapes.
    #[serde(borrow)]
    pub text: &'a RawValue,
}

/// A `reply` whose text is a JSON string taken as it is; encodes exactly
/// like [`crate::ServerMsg::Reply`] with that text.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "reply")]
pub struct RawReply<'a> {
    /// The `say` answered.
    pub re: u64,
    /// The text, a JSON string.
    pub text: &'a RawValue,
    /// Whether this is the final reply.
    pub last: bool,
}

impl<'a> RawSay<'a> {
    /// Parses `payload` if it is a `say` whose text is plain (not a
    /// `/command`). Anything else, or anything in doubt, is `None`: the
    /// caller takes the general path, which gives every error its code.
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        // Validated here as a whole, since the raw text is passed on.
        let text = std::str::from_utf8(payload).ok()?;
        let say: RawSay<'a> = serde_json::from_str(text).ok()?;
        let raw = say.text.get().as_bytes();
        // A string, and one that does not start with `/` or with an escape
        // that might be one.
        let plain = say.kind == "say"
            && raw.first() == Some(&b'"')
            && !matches!(raw.get(1), Some(b'/' | b'\\'));
        // serde_json keeps a lone surrogate escape (`\ud800`) in a raw value
        // but refuses it in a string: let the general path answer it.
        if !plain || (has_unicode_escape(raw) && say.text_unescaped().is_none()) {
            return None;
        }
        Some(say)
    }

    fn text_unescaped(&self) -> Option<Cow<'a, str>> {
        let raw = self.text.get();
        match serde_json::from_str::<&'a str>(raw) {
            Ok(text) => Some(Cow::Borrowed(text)),
            Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
        }
    }
}

/// A `say` whose text is a `/command`: the text unescaped, and borrowed from
/// the payload when it has no escapes, so a long argument is not copied.
#[derive(Debug)]
pub struct CommandSay<'a> {
    /// The `id` to answer with.
    pub id: u64,
    /// The command line, starting with `/`.
    pub text: Cow<'a, str>,
}

impl<'a> CommandSay<'a> {
    /// Parses `payload` if it is a `say` whose text starts with `/`; anything
    /// else, or in doubt, is `None` (the general path decides).
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let say: RawSay<'a> = serde_json::from_str(text).ok()?;
        if say.kind != "say" {
            return None;
        }
        let text = say.text_unescaped()?;
        text.starts_with('/')
            .then_some(CommandSay { id: say.id, text })
    }
}

/// A `reply` whose text is borrowed; encodes exactly like
/// [`crate::ServerMsg::Reply`] with that text, without owning a copy of it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "reply")]
pub struct TextReply<'a> {
    /// The `say` answered.
    pub re: u64,
    /// The text.
    pub text: &'a str,
    /// Whether this is the final reply.
    pub last: bool,
}

fn has_unicode_escape(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"\\u").is_some()
}
