//! The echo fast path: a `say` whose text is echoed back is never unescaped
//! and escaped again. Its text stays the JSON string the client sent, and the
//! `reply` carries that string as it was. Same message, same meaning (a JSON
//! string means the same however its characters are escaped), a fraction of
//! the work on long texts.

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
        plain.then_some(say)
    }
}
