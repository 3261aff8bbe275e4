//! The echo fast path: a `say` whose text is echoed back is never unescaped
//! and escaped again. Its text stays the JSON string the client sent, and the
//! `reply` carries that string as it was. Same message, same meaning (a JSON
//! string means the same however its characters are escaped), a fraction of
//! the work on long texts.

use std::{borrow::Cow, sync::LazyLock};

use bytes::BufMut;
use memchr::memmem::Finder;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    ProtoError,
    header::{HEADER_LEN, encode_header},
};

/// A `say` parsed without copying or unescaping its text.
#[derive(Debug)]
pub struct RawSay<'a> {
    /// The `id` to answer with.
    pub id: u64,
    /// The text, still a JSON string with its quotes and escapes, exactly
    /// as the client sent it.
    pub text: &'a str,
}

/// A `say` whose text has no escapes: serde_json then hands out the bytes
/// between the quotes as they are, found with a vectorised search for the
/// closing quote (the bytes path checks neither control characters nor
/// UTF-8: [`RawSay::parse`] does both).
#[derive(Deserialize)]
struct PlainSay<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    id: u64,
    #[serde(borrow)]
    text: &'a [u8],
}

/// Any other `say`: the text as a raw JSON value, escapes and all.
#[derive(Deserialize)]
struct EscapedSay<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    id: u64,
    #[serde(borrow)]
    text: &'a RawValue,
}

/// A `reply` whose text is a JSON string taken as it is; encodes exactly
/// like [`crate::ServerMsg::Reply`] with that text, and is written straight
/// into the frame (see [`RawReply::frame`]).
#[derive(Debug, Clone, Copy)]
pub struct RawReply<'a> {
    /// The `say` answered.
    pub re: u64,
    /// The text, a JSON string with its quotes (from [`RawSay::text`]).
    pub text: &'a str,
    /// Whether this is the final reply.
    pub last: bool,
}

impl<'a> RawSay<'a> {
    /// Parses `payload` if it is a `say` whose text is plain (not a
    /// `/command`). Anything else, or anything in doubt, is `None`: the
    /// caller takes the general path, which gives every error its code.
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        // Validated here as a whole, since the raw text is passed on.
        let json = simdutf8::basic::from_utf8(payload).ok()?;
        let say = Self::canonical(json)
            .or_else(|| Self::without_escapes(json))
            .or_else(|| Self::with_escapes(json))?;
        // A string, and one that does not start with `/` or with an escape
        // that might be one.
        let raw = say.text.as_bytes();
        let plain = raw.first() == Some(&b'"') && !matches!(raw.get(1), Some(b'/' | b'\\'));
        plain.then_some(say)
    }

    /// The commonest case, matched as bytes: a `say` exactly as serde_json
    /// writes one (echo-client's, the bench's), `{"type":"say","id":N,"text":"…"}`
    /// with no escape and no control character in the text. What this
    /// accepts, the parsers below accept with the same id and text; anything
    /// else (other spacing or key order, an escape, a number serde_json would
    /// refuse) is `None` here and goes to them. It saves the parser's work
    /// per field and one of the passes over a long text.
    fn canonical(json: &'a str) -> Option<Self> {
        let rest = json.strip_prefix(SAY_OPEN)?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (id, rest) = rest.split_at(digits);
        // JSON forbids leading zeros; a number past u64 does not parse.
        if id.len() > 1 && id.starts_with('0') {
            return None;
        }
        let id = id.parse().ok()?;
        let text = rest.strip_prefix(TEXT_KEY_STR)?.strip_suffix('}')?;
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        is_plain_string(inner.as_bytes()).then_some(Self { id, text })
    }

    /// The common case: a text with no escape at all.
    fn without_escapes(json: &'a str) -> Option<Self> {
        let say: PlainSay<'a> = serde_json::from_str(json).ok()?;
        // JSON forbids raw control characters in a string; the bytes path
        // lets them through, so they are refused here (the general path
        // then answers them).
        if say.kind != "say" || has_control_character(say.text) {
            return None;
        }
        // The bytes are borrowed from `json`, between two quotes.
        let start = (say.text.as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
        let text = json.get(start.checked_sub(1)?..start + say.text.len() + 1)?;
        let quoted = text.len() >= 2 && text.starts_with('"') && text.ends_with('"');
        quoted.then_some(Self { id: say.id, text })
    }

    /// A text with escapes, kept as they are.
    fn with_escapes(json: &'a str) -> Option<Self> {
        let say: EscapedSay<'a> = serde_json::from_str(json).ok()?;
        let text = say.text.get();
        // serde_json keeps a lone surrogate escape (`\ud800`) in a raw value
        // but refuses it in a string: let the general path answer it.
        if say.kind != "say" || (has_unicode_escape(text) && unescaped(text).is_none()) {
            return None;
        }
        Some(Self { id: say.id, text })
    }
}

impl<'a> RawReply<'a> {
    /// The whole frame (header and JSON: the bytes serde_json writes for
    /// [`crate::ServerMsg::Reply`]), in three pieces with the text borrowed
    /// as it is; `max` is the largest payload allowed.
    pub fn frame(&self, max: usize) -> Result<ReplyFrame<'a>, ProtoError> {
        let mut id = itoa::Buffer::new();
        let id = id.format(self.re).as_bytes();
        let tail: &'static [u8] = if self.last {
            b",\"last\":true}"
        } else {
            b",\"last\":false}"
        };
        let len = REPLY_OPEN.len() + id.len() + TEXT_KEY.len() + self.text.len() + tail.len();
        let mut head = [0; HEAD_MAX];
        let mut rest = &mut head[..];
        rest.put_slice(&encode_header(len, max)?);
        rest.put_slice(REPLY_OPEN);
        rest.put_slice(id);
        rest.put_slice(TEXT_KEY);
        let head_len = HEAD_MAX - rest.len();
        Ok(ReplyFrame {
            head,
            head_len,
            text: self.text.as_bytes(),
            tail,
        })
    }
}

const REPLY_OPEN: &[u8] = b"{\"type\":\"reply\",\"re\":";
const TEXT_KEY: &[u8] = TEXT_KEY_STR.as_bytes();
const TEXT_KEY_STR: &str = ",\"text\":";
const SAY_OPEN: &str = "{\"type\":\"say\",\"id\":";
/// The frame header, the opening and the longest `u64`, and the text's key.
const HEAD_MAX: usize = HEADER_LEN + REPLY_OPEN.len() + 20 + TEXT_KEY.len();

/// A `reply` frame as three pieces, for a vectored write or for copying
/// into a buffer: everything up to the text, the text (borrowed), and what
/// follows it.
#[derive(Debug, Clone, Copy)]
pub struct ReplyFrame<'a> {
    head: [u8; HEAD_MAX],
    head_len: usize,
    text: &'a [u8],
    tail: &'static [u8],
}

impl<'a> ReplyFrame<'a> {
    /// The pieces, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.head[..self.head_len], self.text, self.tail]
    }

    /// The frame's length in bytes, header included.
    pub fn len(&self) -> usize {
        self.head_len + self.text.len() + self.tail.len()
    }

    /// Never: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The text of a raw JSON string, if it is a valid one.
fn unescaped(raw: &str) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
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
        let json = std::str::from_utf8(payload).ok()?;
        let say: EscapedSay<'a> = serde_json::from_str(json).ok()?;
        if say.kind != "say" {
            return None;
        }
        let text = unescaped(say.text.get())?;
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

fn has_unicode_escape(raw: &str) -> bool {
    // Built once: building a searcher costs more than a short text's search.
    static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\\u"));
    FINDER.find(raw.as_bytes()).is_some()
}

/// Whether `bytes` can stand between two quotes as they are: no quote, no
/// backslash, no control character. Flipping one bit moves a quote (0x22)
/// to 0x20 and keeps the control characters below it, so a byte XOR 0x02
/// is at most 0x20 exactly when it is one of those; a backslash XOR itself
/// is zero. Two running minimums then say it all: one pass with no branch,
/// which the compiler turns into vector instructions.
fn is_plain_string(bytes: &[u8]) -> bool {
    let (mut quote_or_control, mut backslash) = (u8::MAX, u8::MAX);
    for &byte in bytes {
        quote_or_control = quote_or_control.min(byte ^ 0x02);
        backslash = backslash.min(byte ^ b'\\');
    }
    quote_or_control > 0x20 && backslash != 0
}

/// Whether `bytes` holds a byte below 0x20. The smallest byte, found with
/// no early exit, which the compiler turns into vector instructions: a
/// quarter of an instruction a byte, where `any` takes five.
fn has_control_character(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .copied()
        .min()
        .is_some_and(|least| least < 0x20)
}

#[cfg(test)]
mod tests;
