//! Interactive questions on a terminal (the lab's task 2): an empty answer
//! takes the default, a bad one is explained and asked again.

use std::io::{self, BufRead, Write};

/// Asks `label [default]:` on `output` until `parse` accepts the answer read
/// from `input`. An empty line takes `default`; the end of input (Ctrl-D)
/// takes it too, rather than asking forever.
pub fn ask<T: std::fmt::Display + Clone>(
    input: &mut impl BufRead,
    output: &mut impl Write,
    label: &str,
    default: &T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> io::Result<T> {
    loop {
        write!(output, "{label} [{default}]: ")?;
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(output)?;
            return Ok(default.clone());
        }
        let answer = line.trim();
        if answer.is_empty() {
            return Ok(default.clone());
        }
        match parse(answer) {
            Ok(value) => return Ok(value),
            Err(message) => writeln!(output, "{message}")?,
        }
    }
}

/// Parses a port typed by a person: a whole number from 1 to 65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        Ok(_) => Err(format!(
            "{text} is out of range: a port is from 1 to 65535."
        )),
        Err(_) => Err(format!(
            "{text:?} is not a number: a port is from 1 to 65535."
        )),
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
    fn end_of_input_takes_the_default() {
        assert_eq!(run("").0, 13131);
        assert_eq!(run("junk\n").0, 13131);
    }
}
