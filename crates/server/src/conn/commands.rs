//! Server commands: a `say` whose text starts with `/` (the lab's task 8,
//! "one message, several answers"). Parsing and running both live here, so
//! a new command is one edit to this file: a variant, its `HELP` line, its
//! arm in [`Command::parse`] and in [`Command::run`].

use std::{borrow::Cow, time::Duration};

use echo_proto::ErrorCode;

use crate::{
    ops::metrics::Metrics,
    sys::peer::{ConnectionId, Peer},
};

/// A parsed `/command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/help`: one reply per command.
    Help,
    /// `/whoami`: who the server thinks the client is.
    Whoami,
    /// `/stats`: uptime, connections, messages served.
    Stats,
    /// `/repeat N TEXT`: TEXT back N times.
    Repeat {
        /// How many replies.
        count: u32,
        /// What to repeat.
        text: &'a str,
    },
}

/// A `/command` that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No such command.
    #[error("unknown command /{0}: try /help")]
    Unknown(String),
    /// The command's arguments are wrong.
    #[error("{0}")]
    Bad(String),
}

/// Who is asking, and what the server can tell them.
#[derive(Debug)]
pub struct Caller<'a> {
    /// The identified or authenticated name.
    pub name: &'a str,
    /// Where the client connects from.
    pub peer: &'a Peer,
    /// The connection's id.
    pub connection: ConnectionId,
    /// The server's counters.
    pub stats: &'a Metrics,
}

/// A command's replies, made one at a time as they are sent, so `/repeat`
/// never holds its copies: each one borrows the text of the request.
#[derive(Debug)]
pub enum Replies<'a> {
    /// Lines computed up front (they are few and short).
    Lines(std::vec::IntoIter<String>),
    /// The same text, `left` more times.
    Repeat {
        /// Copies still to send.
        left: u32,
        /// The text.
        text: &'a str,
    },
}

/// One line of `/help` per command, in the order shown.
pub const HELP: &[(&str, &str)] = &[
    ("/help", "list the server's commands"),
    ("/whoami", "who the server thinks you are"),
    ("/stats", "uptime, connections and messages served"),
    ("/repeat N TEXT", "TEXT back N times, as N replies"),
];

/// Longest command name echoed back in an error.
const MAX_ECHOED_NAME: usize = 32;

impl<'a> Command<'a> {
    /// Parses `text` (which starts with `/`). `max_repeat` caps `/repeat`.
    pub fn parse(text: &'a str, max_repeat: u32) -> Result<Self, CommandError> {
        let body = text.strip_prefix('/').unwrap_or(text);
        let (name, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let args = args.trim_start();
        match name {
            "help" => Ok(Command::Help),
            "whoami" => Ok(Command::Whoami),
            "stats" => Ok(Command::Stats),
            "repeat" => {
                let usage = || {
                    CommandError::Bad(format!(
                        "usage: /repeat N TEXT, with N from 1 to {max_repeat}"
                    ))
                };
                let (count, text) = args.split_once(char::is_whitespace).ok_or_else(usage)?;
                let count = count
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max_repeat).contains(n))
                    .ok_or_else(usage)?;
                Ok(Command::Repeat { count, text })
            }
            _ => Err(CommandError::Unknown(
                name.chars().take(MAX_ECHOED_NAME).collect(),
            )),
        }
    }
}

impl<'a> Command<'a> {
    /// Runs the command for `caller`.
    pub fn run(&self, caller: &Caller<'_>) -> Replies<'a> {
        match self {
            Command::Help => Replies::Lines(help_lines().into_iter()),
            Command::Whoami => Replies::Lines(
                vec![format!(
                    "you are {}, connected from {} (connection {})",
                    caller.name, caller.peer, caller.connection
                )]
                .into_iter(),
            ),
            Command::Stats => {
                let stats = caller.stats;
                Replies::Lines(
                    vec![
                        format!("uptime: {}", format_uptime(stats.uptime())),
                        format!(
                            "connections now: {} (since start: {})",
                            stats.connections_now(),
                            stats.connections_total()
                        ),
                        format!("messages served: {}", stats.messages_served()),
                    ]
                    .into_iter(),
                )
            }
            Command::Repeat { count, text } => Replies::Repeat { left: *count, text },
        }
    }
}

impl CommandError {
    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::Unknown(_) => ErrorCode::UnknownCommand,
            CommandError::Bad(_) => ErrorCode::BadCommand,
        }
    }
}

impl<'a> Iterator for Replies<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        match self {
            Replies::Lines(lines) => lines.next().map(Cow::Owned),
            Replies::Repeat { left, text } => {
                *left = left.checked_sub(1)?;
                Some(Cow::Borrowed(*text))
            }
        }
    }
}

/// `/help`'s replies.
pub fn help_lines() -> Vec<String> {
    HELP.iter()
        .map(|(usage, what)| format!("{usage}: {what}"))
        .collect()
}

/// A duration as `1d 2h 3m 4s`, leaving out leading zero units.
pub fn format_uptime(uptime: Duration) -> String {
    let total = uptime.as_secs();
    let parts = [
        (total / 86_400, "d"),
        (total / 3_600 % 24, "h"),
        (total / 60 % 60, "m"),
        (total % 60, "s"),
    ];
    let first = parts
        .iter()
        .position(|(value, _)| *value > 0)
        .unwrap_or(parts.len() - 1);
    parts[first..]
        .iter()
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands() {
        assert_eq!(Command::parse("/help", 100), Ok(Command::Help));
        assert_eq!(Command::parse("/whoami", 100), Ok(Command::Whoami));
        assert_eq!(Command::parse("/stats", 100), Ok(Command::Stats));
        assert_eq!(
            Command::parse("/repeat 4 hello  world", 100),
            Ok(Command::Repeat {
                count: 4,
                text: "hello  world"
            })
        );
    }

    #[test]
    fn repeat_count_is_checked_against_the_cap() {
        assert!(Command::parse("/repeat 100 x", 100).is_ok());
        for bad in [
            "/repeat 101 x",
            "/repeat 0 x",
            "/repeat -1 x",
            "/repeat x",
            "/repeat 3",
        ] {
            assert!(
                matches!(Command::parse(bad, 100), Err(CommandError::Bad(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_command_is_named() {
        assert_eq!(
            Command::parse("/dance now", 100),
            Err(CommandError::Unknown("dance".into()))
        );
    }

    #[test]
    fn help_has_one_line_per_command() {
        let lines = help_lines();
        assert_eq!(lines.len(), 4);
        assert!(lines[3].starts_with("/repeat N TEXT:"));
    }

    #[test]
    fn repeat_makes_its_copies_one_at_a_time() {
        let peer = Peer::direct("192.0.2.7:4000".parse().unwrap());
        let stats = Metrics::new();
        let id = ConnectionId::random();
        assert_eq!(id.to_string().len(), 8);
        let caller = Caller {
            name: "ann",
            peer: &peer,
            connection: id,
            stats: &stats,
        };
        let replies = Command::Repeat {
            count: 3,
            text: "hi",
        }
        .run(&caller);
        assert_eq!(replies.collect::<Vec<_>>(), ["hi", "hi", "hi"]);
        let whoami: Vec<String> = Command::Whoami
            .run(&caller)
            .map(|line| line.into_owned())
            .collect();
        assert_eq!(
            whoami,
            [format!(
                "you are ann, connected from 192.0.2.7:4000 (connection {id})"
            )]
        );
    }

    #[test]
    fn uptime_is_readable() {
        assert_eq!(format_uptime(Duration::from_secs(0)), "0s");
        assert_eq!(format_uptime(Duration::from_secs(61)), "1m 1s");
        assert_eq!(format_uptime(Duration::from_secs(90_061)), "1d 1h 1m 1s");
    }
}
