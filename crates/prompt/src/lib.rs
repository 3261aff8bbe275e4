//! Interactive questions on a terminal (the lab's task 2): an empty answer
//! takes the default, a bad one is explained and asked again. Shared by
//! `echo-server` (`Port [13131]:`) and `echo-client` (`Host`, `Port`, names).
//!
//! The functions work on any `BufRead` / `Write`, so the rules are tested
//! without a terminal; the binaries pass standard input and standard error.

mod args;
mod generate;

use std::io::{self, BufRead, Write};

pub use args::{EnvCheck, parse_command_line};
pub use generate::{Generate, GenerateArg, generate, print_generated};

/// The error of a question the person cancelled (Ctrl-D): its text is
/// `cancelled`, its kind `UnexpectedEof`.
pub fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "cancelled")
}

/// Asks `label [default]:` on `output` until `parse` accepts the answer read
/// from `input`. An empty line takes `default`; the end of input (Ctrl-D)
/// cancels the question (an `UnexpectedEof` error, [`cancelled`]).
pub fn ask<T: std::fmt::Display + Clone>(
    input: &mut impl BufRead,
    output: &mut impl Write,
    label: &str,
    default: &T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> io::Result<T> {
    ask_inner(input, output, label, Some(default), parse)
}

/// Asks `label:` until `parse` accepts a non-empty answer. The end of input
/// cancels it ([`cancelled`]).
pub fn ask_required<T: std::fmt::Display + Clone>(
    input: &mut impl BufRead,
    output: &mut impl Write,
    label: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> io::Result<T> {
    ask_inner(input, output, label, None, parse)
}

fn ask_inner<T: std::fmt::Display + Clone>(
    input: &mut impl BufRead,
    output: &mut impl Write,
    label: &str,
    default: Option<&T>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> io::Result<T> {
    loop {
        match default {
            Some(default) => write!(output, "{label} [{default}]: ")?,
            None => write!(output, "{label}: ")?,
        }
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            // Ctrl-D: the person does not want to answer; nothing is taken.
            writeln!(output)?;
            return Err(cancelled());
        }
        let answer = line.trim();
        match (answer.is_empty(), default) {
            (true, Some(default)) => return Ok(default.clone()),
            (true, None) => {
                writeln!(output, "an answer is needed")?;
                continue;
            }
            (false, _) => {}
        }
        match parse(answer) {
            Ok(value) => return Ok(value),
            Err(message) => writeln!(output, "{message}")?,
        }
    }
}

/// Parses a port a server listens on, typed by a person: a whole number
/// from 0 to 65535, where 0 means any free port (as on the command line).
pub fn parse_listen_port(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(port) => u16::try_from(port).map_err(|_| {
            format!("{text} is out of range: a port is from 0 (any free port) to 65535")
        }),
        Err(_) => Err(format!(
            "{text:?} is not a number: a port is from 0 (any free port) to 65535"
        )),
    }
}

/// Parses a port to connect to, typed by a person: a whole number from 1
/// to 65535 (no server listens on port 0).
pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        Ok(_) => Err(format!("{text} is out of range: a port is from 1 to 65535")),
        Err(_) => Err(format!(
            "{text:?} is not a number: a port is from 1 to 65535"
        )),
    }
}

/// Parses an on/off switch from the environment (`ECHO_SERVER_TLS=1`):
/// `1`, `true`, `yes`, `on`, `0`, `false`, `no`, `off`, any case, as clap
/// reads the switch itself.
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!(
            "{text:?} is not a switch: use 1 or 0 (true/false, yes/no, on/off)"
        )),
    }
}

/// What a mismatched confirmation of [`hidden`] prints, after dialoguer's
/// `error: `: the style of every error line of the binaries (lower case,
/// no period).
pub const MISMATCH: &str = "the two answers differ; once more";

/// Asks for a secret on the terminal without echoing it; with `confirm`,
/// asks twice and again until both answers match. An empty answer is asked
/// again. Only for a terminal: callers decide what to do without one.
pub fn hidden(label: &str, confirm: bool) -> io::Result<String> {
    let mut question = dialoguer::Password::new().with_prompt(label);
    if confirm {
        question = question.with_confirmation(format!("{label} again"), MISMATCH);
    }
    question.interact().map_err(|err| match err {
        dialoguer::Error::IO(err) => err,
    })
}

/// Longest host name accepted (RFC 1035).
const MAX_HOST_LEN: usize = 253;

/// Parses a host typed by a person: an IPv4 or IPv6 address, or a host name
/// made of dot-separated labels of letters, digits and hyphens.
pub fn parse_host(text: &str) -> Result<String, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(bare.to_owned());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.len() <= MAX_HOST_LEN && name.split('.').all(valid_label) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a host name or address: use letters, digits, hyphens and dots, \
             or an IP address"
        ))
    }
}

#[cfg(test)]
mod listen_port_tests {
    use super::*;

    #[test]
    fn a_server_may_listen_on_port_0_a_client_may_not_connect_to_it() {
        assert_eq!(parse_listen_port("0"), Ok(0));
        assert_eq!(parse_listen_port("13131"), Ok(13131));
        assert!(
            parse_listen_port("65536")
                .unwrap_err()
                .contains("0 (any free port)")
        );
        assert!(parse_port("0").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (u16, String) {
        let mut output = Vec::new();
        let port = ask(
            &mut input.as_bytes(),
            &mut output,
            "Port",
            &13131,
            parse_port,
        )
        .unwrap();
        (port, String::from_utf8(output).unwrap())
    }

    #[test]
    fn empty_answer_takes_the_default() {
        assert_eq!(run("\n"), (13131, "Port [13131]: ".to_owned()));
    }

    #[test]
    fn a_valid_port_is_taken() {
        assert_eq!(run("  8080 \n").0, 8080);
    }

    #[test]
    fn bad_values_are_explained_and_asked_again() {
        let (port, shown) = run("abc\n0\n70000\n-1\n9000\n");
        assert_eq!(port, 9000);
        assert_eq!(shown.matches("Port [13131]: ").count(), 5);
        assert!(shown.contains("\"abc\" is not a number"));
        assert!(shown.contains("0 is out of range"));
        assert!(shown.contains("70000 is out of range"));
        assert!(shown.contains("\"-1\" is not a number"));
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for good in [
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "echo.example.org",
            "a-b.c1",
        ] {
            assert!(parse_host(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "bad host",
            "-x.org",
            "x..org",
            "under_score",
            "ä.org",
            "a:b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_host("[::1]").unwrap(), "::1");
    }

    #[test]
    fn messages_start_in_lower_case_and_end_without_a_period() {
        // They end up in `echo-server: invalid ECHO_SERVER_PORT=...: ...`
        // lines, and dialoguer prints MISMATCH after `error: `.
        let messages = [
            parse_port("abc").unwrap_err(),
            parse_port("0").unwrap_err(),
            parse_listen_port("abc").unwrap_err(),
            parse_listen_port("70000").unwrap_err(),
            parse_switch("maybe").unwrap_err(),
            parse_host("bad host").unwrap_err(),
            MISMATCH.to_owned(),
        ];
        for message in messages {
            assert!(!message.ends_with('.'), "{message}");
            let first = message.trim_start_matches('"').chars().next().unwrap();
            assert!(!first.is_uppercase(), "{message}");
        }
    }

    #[test]
    fn a_required_answer_is_asked_until_given() {
        let mut output = Vec::new();
        let name = ask_required(&mut "\n  Ann \n".as_bytes(), &mut output, "Name", |s| {
            Ok(s.to_owned())
        })
        .unwrap();
        assert_eq!(name, "Ann");
        assert_eq!(
            String::from_utf8(output).unwrap(),
            "Name: an answer is needed\nName: "
        );
        let err = ask_required(&mut "".as_bytes(), &mut Vec::new(), "Name", |s| {
            Ok(s.to_owned())
        });
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn end_of_input_cancels_the_question() {
        for input in ["", "junk\n"] {
            let mut output = Vec::new();
            let err = ask(
                &mut input.as_bytes(),
                &mut output,
                "Port",
                &13131,
                parse_port,
            );
            let err = err.unwrap_err();
            assert_eq!(
                (err.kind(), err.to_string()),
                (io::ErrorKind::UnexpectedEof, "cancelled".to_owned())
            );
        }
    }
}
