//! Names: what an identification name or a user name may be, and when two
//! names are the same user.
//!
//! A name is kept as it was typed, and compared in its canonical form
//! (Unicode NFKC, then lower case, as RFC 8265's UsernameCaseMapped profile
//! does): `Victim`, `VICTIM` and fullwidth `ｖｉｃｔｉｍ` are one user, and any
//! of those spellings logs in. Two names that merely look alike (`vіctim`
//! with a Cyrillic `і`, `victím`) are different strings but the same
//! [`confusable_key`] (Unicode UTS #39 skeletons, accents set aside), and a
//! registration may not take a name that looks like an existing one.
//! Invisible and direction-changing characters are refused outright.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Checks a name (an identification name or a user name): trimmed, 1 to 64
/// characters, no control characters, and none of the characters that hide
/// or disguise text (zero-width, soft hyphen, byte-order mark, bidirectional
/// controls). Returns the trimmed name or a sentence saying what is wrong.
pub fn validate_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the name has control characters".into());
    }
    if name.chars().any(is_disguising) {
        return Err(
            "the name has invisible, line-breaking or direction-changing characters (zero-width spaces, soft hyphens, line separators, noncharacters, bidirectional controls)"
                .into(),
        );
    }
    if canonical(name).trim().is_empty() {
        return Err("the name is empty".into());
    }
    Ok(name.to_owned())
}

/// The form two names are compared in: NFKC, then lower case, then NFKC
/// again (lower-casing can undo normalization).
pub fn canonical(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    folded.nfkc().collect()
}

/// What two names that look alike have in common: the UTS #39 skeleton of
/// the canonical form with combining marks (accents) removed.
pub fn confusable_key(name: &str) -> String {
    let bare: String = canonical(name)
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect();
    unicode_security::confusable_detection::skeleton(&bare).collect()
}

/// Whether `c` hides or disguises text: a control character, a line or
/// paragraph separator (U+2028, U+2029: many readers start a new line
/// there), a noncharacter (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), a
/// bidirectional control (U+202E would reverse what follows), or an
/// invisible "default ignorable" character (U+200B, U+00AD, U+FEFF, ...).
/// Names may not hold them, and log lines show them escaped.
pub fn is_disguising(c: char) -> bool {
    let code = u32::from(c);
    c.is_control()
        || code & 0xFFFE == 0xFFFE
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2028}'..='\u{2029}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FDD0}'..='\u{FDEF}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("  Ann  "), Ok("Ann".to_owned()));
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert!(validate_name(&"я".repeat(64)).is_ok());
        assert!(validate_name("a\u{7}b").is_err());
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for name in [
            "victim\u{200b}",
            "\u{200b}victim",
            "victim\u{2060}",
            "\u{feff}victim",
            "vic\u{ad}tim",
            "victim\u{202e}",
            "\u{2066}victim\u{2069}",
            "x\u{2029}Z INFO registered",
            "a\u{2028}b",
            "a\u{fffe}b",
            "a\u{ffff}b",
            "\u{fdd0}x",
            "a\u{1fffe}",
        ] {
            assert!(validate_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn spellings_of_one_name_share_a_canonical_form() {
        for spelling in ["Victim", "VICTIM", "ｖｉｃｔｉｍ", "victim"] {
            assert_eq!(canonical(spelling), "victim", "{spelling:?}");
        }
        assert_ne!(canonical("victím"), canonical("victim"));
    }

    #[test]
    fn names_that_look_alike_share_a_confusable_key() {
        let key = confusable_key("victim");
        for lookalike in ["vіctim", "victi\u{301}m", "VICTIM", "ｖｉｃｔｉｍ"] {
            assert_eq!(confusable_key(lookalike), key, "{lookalike:?}");
        }
        assert_ne!(confusable_key("victor"), key);
        assert_ne!(confusable_key("Анна"), confusable_key("Ян"));
    }
}
