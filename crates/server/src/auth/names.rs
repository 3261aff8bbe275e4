//! Names: what an identification name or a user name may be.

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Checks a name (an identification name or a user name): trimmed, 1 to 64
/// characters, none of them a control character. Returns the trimmed name
/// or a sentence saying what is wrong.
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
    Ok(name.to_owned())
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
}
