//! Client strings in log lines: escaped and cut, so no client can forge or
//! disguise a line.

/// A string that came from a client, as it may appear in a log line: cut to
/// `max` characters (with `…` when cut), and with every character that
/// could forge or disguise a line written as `\u{…}`: control characters
/// (a newline would start a fake line, ESC would colour the terminal that
/// shows the log), line and paragraph separators (U+2028, U+2029: a new
/// line to many readers), noncharacters, bidirectional controls (U+202E would reverse the rest of
/// the line) and the invisible "default ignorable" ones (U+200B, U+00AD,
/// U+FEFF, ...). Formatting allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    text: &'a str,
    max: usize,
}

/// Longest client-chosen name written to the log, in characters.
pub const MAX_LOGGED_NAME: usize = 64;
/// Longest client-caused error message written to the log, in characters.
pub const MAX_LOGGED_ERROR: usize = 200;

/// `text` from a client, escaped and cut to [`MAX_LOGGED_NAME`] for the log.
pub fn shown(text: &str) -> Shown<'_> {
    Shown {
        text,
        max: MAX_LOGGED_NAME,
    }
}

/// Like [`shown`], cut to `max` characters.
pub fn shown_max(text: &str, max: usize) -> Shown<'_> {
    Shown { text, max }
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut chars = self.text.chars();
        for c in chars.by_ref().take(self.max) {
            if crate::sys::names::is_disguising(c) {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_strings_cannot_forge_or_disguise_a_log_line() {
        assert_eq!(
            shown("ann\n2026-11-21 INFO forged").to_string(),
            "ann\\u{a}2026-11-21 INFO forged"
        );
        assert_eq!(shown("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(shown("abc\u{202e}fed").to_string(), "abc\\u{202e}fed");
        assert_eq!(
            shown("x\u{2029}Z INFO forged\u{2028}").to_string(),
            "x\\u{2029}Z INFO forged\\u{2028}"
        );
        assert_eq!(
            shown("vic\u{ad}tim\u{200b}").to_string(),
            "vic\\u{ad}tim\\u{200b}"
        );
        assert_eq!(
            shown("\u{feff}plain é ü 名").to_string(),
            "\\u{feff}plain é ü 名"
        );
    }

    #[test]
    fn long_client_strings_are_cut() {
        let cut = shown(&"n".repeat(100)).to_string();
        assert_eq!(cut, format!("{}…", "n".repeat(MAX_LOGGED_NAME)));
        assert_eq!(shown_max("abcdef", 3).to_string(), "abc…");
        assert_eq!(shown_max("abc", 3).to_string(), "abc");
    }
}
