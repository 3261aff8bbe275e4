//! The interactive client: prompts for what it needs, then a line editor
//! with history that prints every server frame the moment it arrives, also
//! while the user is typing.

use std::{io::Write, sync::atomic::Ordering};

use crate::{
    history::{HISTORY_LINES, History},
    terminal::TerminalCredentials,
};

use echo_client::{
    ClientError, Connection, Conversation, Established, Incoming, NoQuestions, Target, TokenJar,
    config::{ClientArgs, ClientConfig},
    handshake::token_rejected_text,
    restart,
};
use echo_proto::{ByeReason, ClientMsg, Mode, ServerMsg};
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};

/// Commands the client handles itself.
const CLIENT_COMMANDS: &[(&str, &str)] = &[
    ("/help", "this list, then the server's commands"),
    ("/quit", "leave (Ctrl-D too)"),
    ("/logout", "end the session and forget its token"),
    (
        "/reconnect",
        "connect again, with the saved token if there is one (a line typed while disconnected does it too)",
    ),
    (
        "//TEXT",
        "send /TEXT as it is (a line for the server that starts with /)",
    ),
];

/// The client's own commands, by the word that names them.
const OWN: &[&str] = &["/help", "/quit", "/exit", "/logout", "/reconnect"];

/// What `line` asks for.
fn classify(line: &str) -> Typed {
    let trimmed = line.trim();
    if let Some(text) = trimmed.strip_prefix("//") {
        return Typed::Say(format!("/{text}"));
    }
    let (word, rest) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    match OWN.iter().find(|own| **own == word) {
        Some(own) if rest.trim().is_empty() => Typed::Client(own),
        Some(own) => Typed::Misused(format!(
            "{own} takes no arguments (to send this line to the server, start it with //)"
        )),
        None => Typed::Say(line.to_owned()),
    }
}

/// What the REPL says once the connection is gone.
const AGAIN: &str = "The next line you type connects again (or /reconnect; /quit leaves).";

/// What ends one run of the line editor.
enum Action {
    Quit,
    Reconnect,
    /// `bye restart`: connect again after `retry_after_ms` and resume.
    Restart(Option<u64>),
    /// Not connected: connect again, then send this line.
    ReconnectAndSay(String),
}

/// What a typed line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Typed {
    /// One of the client's own commands.
    Client(&'static str),
    /// A client command with words it does not take: said, not sent.
    Misused(String),
    /// Text for the server (`//x` sends `/x`).
    Say(String),
}

/// Times the client connects again when the server stops waiting in the
/// middle of the handshake (a person typing a password past the timeout).
const HANDSHAKE_RETRIES: u32 = 3;

pub async fn run(args: &ClientArgs) -> Result<(), ClientError> {
    let config = crate::resolve_config(args, true)?;
    let jar = TokenJar::new(&config.token_file);
    let history = History::new(&config.history_file);
    let mut session = Some(Conversation::new(connect(&config, &jar).await?));
    let mut entries = history.load();
    loop {
        let (mut editor, mut out) = Readline::new("> ".to_owned()).map_err(terminal_error)?;
        editor.set_max_history(HISTORY_LINES);
        editor.set_history_entries(entries.clone());
        editor.should_print_line_on(true, false);
        let action = chat(&mut editor, &mut out, &mut session, &jar, &history).await;
        entries = editor.get_history_entries().iter().cloned().collect();
        let _ = editor.flush();
        // The terminal is itself again: a resume refused may ask questions.
        drop(editor);
        let then_say = match action? {
            Action::Quit => return Ok(()),
            Action::Restart(retry_after_ms) => {
                session = restart(session.take(), retry_after_ms, &jar).await;
                continue;
            }
            Action::Reconnect => None,
            Action::ReconnectAndSay(line) => Some(line),
        };
        session = None;
        match connect(&config, &jar).await {
            Ok(conn) => {
                let mut conv = Conversation::new(conn);
                match then_say {
                    Some(line) => match conv.say(line).await {
                        Ok(_) => session = Some(conv),
                        Err(err) => println!("{err}. The next line you type connects again."),
                    },
                    None => session = Some(conv),
                }
            }
            Err(err) => println!("{err}. The next line you type tries again; /quit leaves."),
        }
    }
}

/// After `bye restart`: carries the conversation over to the new server
/// process (the lines it never read sent again) and says so in one line.
async fn restart(
    session: Option<Conversation>,
    retry_after_ms: Option<u64>,
    jar: &TokenJar,
) -> Option<Conversation> {
    let mut conv = session?;
    match conv
        .restart(retry_after_ms, Some(jar), &mut TerminalCredentials)
        .await
    {
        Ok(_) => {
            println!("reconnected: the server restarted");
            Some(conv)
        }
        Err(err) => {
            println!("* {err}. {AGAIN}");
            None
        }
    }
}

/// Connects, follows the handshake (prompting if needed) and says hello.
/// When the server stops waiting during the handshake (its timeout ran out
/// while a person was typing), connects again and asks again.
async fn connect(config: &ClientConfig, jar: &TokenJar) -> Result<Connection, ClientError> {
    let mut retries = 0;
    let (conn, established) = loop {
        let target = Target::new(&config.host, config.port, config.tls.clone());
        match restart::connect(&target, Some(jar), &mut TerminalCredentials).await {
            Ok(done) => break done,
            Err(
                ClientError::Bye(ByeReason::Timeout, _)
                | ClientError::Lost(_)
                | ClientError::Broken(_),
            ) if retries < HANDSHAKE_RETRIES => {
                retries += 1;
                println!("* The server stopped waiting for an answer; connecting again.");
            }
            Err(err) => return Err(err),
        }
    };
    println!("{}", greeting(&established));
    println!(
        "Connected to {} ({}). Type /help for commands, /quit to leave.",
        conn.server(),
        established.server
    );
    Ok(conn)
}

fn greeting(established: &Established) -> String {
    match (established.mode, established.recognised) {
        (Mode::Ident, true) => format!("Hello again, {}!", established.name),
        (Mode::Ident, false) => format!("Hello, {}! Nice to meet you.", established.name),
        (Mode::Auth, true) => format!("Welcome back, {} (session resumed).", established.name),
        (Mode::Auth, false) => format!("Welcome, {}.", established.name),
    }
}

async fn chat(
    editor: &mut Readline,
    out: &mut SharedWriter,
    session: &mut Option<Conversation>,
    jar: &TokenJar,
    history: &History,
) -> Result<Action, ClientError> {
    loop {
        tokio::select! {
            event = editor.readline() => {
                let line = match event.map_err(terminal_error)? {
                    ReadlineEvent::Line(line) => line,
                    ReadlineEvent::Eof => return Ok(Action::Quit),
                    // Ctrl-C has cleared the line.
                    ReadlineEvent::Interrupted => {
                        let _ = writeln!(out, "(Ctrl-C clears the line; /quit or Ctrl-D leaves)");
                        continue;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                editor.add_history_entry(line.clone());
                history.append(&line);
                let typed = classify(&line);
                if session.is_none() && matches!(typed, Typed::Say(_)) {
                    let Typed::Say(text) = typed else { continue };
                    let _ = writeln!(out, "* Not connected: connecting again.");
                    return Ok(Action::ReconnectAndSay(text));
                }
                match typed {
                    Typed::Client("/quit" | "/exit") => return Ok(Action::Quit),
                    Typed::Client("/reconnect") => return Ok(Action::Reconnect),
                    Typed::Client("/help") => help(out, session).await,
                    // `/logout`, the only one left.
                    Typed::Client(_) => logout(out, session, jar).await,
                    Typed::Misused(message) => {
                        let _ = writeln!(out, "{message}");
                    }
                    Typed::Say(text) => send_line(out, session, text).await,
                }
            }
            incoming = next_incoming(session) => match show(out, incoming) {
                Shown::Going => {}
                Shown::Over => *session = None,
                Shown::Restart(retry_after_ms) => {
                    if let Some(action) = resume_in_place(out, session, retry_after_ms, jar).await {
                        return Ok(action);
                    }
                }
            }
        }
    }
}

/// After `bye restart`: resumes without leaving the line editor, so that
/// what the user is typing stays where it is, as long as no question is
/// needed; one line says so. A question to ask (the token refused, a name
/// asked for) leaves the editor for the terminal: [`Action::Restart`], the
/// lines still in flight going along.
async fn resume_in_place(
    out: &mut SharedWriter,
    session: &mut Option<Conversation>,
    retry_after_ms: Option<u64>,
    jar: &TokenJar,
) -> Option<Action> {
    let conv = session.as_mut()?;
    let mut creds = NoQuestions::default();
    match conv.restart(retry_after_ms, Some(jar), &mut creds).await {
        Ok(_) => {
            let _ = writeln!(out, "reconnected: the server restarted");
            None
        }
        Err(_) if creds.asked.load(Ordering::Relaxed) > 0 => {
            if let Some(server) = &creds.rejected {
                let _ = writeln!(out, "* {}", token_rejected_text(server));
            }
            Some(Action::Restart(Some(0)))
        }
        Err(err) => {
            let _ = writeln!(out, "* {err}. {AGAIN}");
            *session = None;
            None
        }
    }
}

/// `/help`: the client's commands, then the server's.
async fn help(out: &mut SharedWriter, session: &mut Option<Conversation>) {
    let _ = writeln!(out, "Client commands:");
    for (command, what) in CLIENT_COMMANDS {
        let _ = writeln!(out, "  {command}: {what}");
    }
    let _ = writeln!(out, "Server commands:");
    send_line(out, session, "/help".to_owned()).await;
}

/// `/logout`: forgets the token and tells the server.
async fn logout(out: &mut SharedWriter, session: &mut Option<Conversation>, jar: &TokenJar) {
    let Some(conv) = session else {
        let _ = writeln!(out, "Not connected.");
        return;
    };
    let conn = conv.connection();
    let server = conn.server().to_owned();
    if let Err(err) = jar.remove(&server) {
        let _ = writeln!(out, "{err}");
    }
    if let Err(err) = conn.send(&ClientMsg::Logout {}).await {
        let _ = writeln!(out, "{err}");
    }
}

async fn send_line(out: &mut SharedWriter, session: &mut Option<Conversation>, line: String) {
    match session {
        Some(conv) => {
            if let Err(err) = conv.say(line).await {
                let _ = writeln!(out, "{err}. The next line you type connects again.");
                *session = None;
            }
        }
        None => {
            let _ = writeln!(
                out,
                "Not connected: type /reconnect to connect again, or /quit."
            );
        }
    }
}

async fn next_incoming(session: &mut Option<Conversation>) -> Result<Incoming, ClientError> {
    match session {
        Some(conv) => conv.recv().await,
        None => std::future::pending().await,
    }
}

/// What became of the connection once something came in.
enum Shown {
    Going,
    Over,
    /// `bye restart`, with its `retry_after_ms`.
    Restart(Option<u64>),
}

/// Prints what came in.
fn show(out: &mut SharedWriter, incoming: Result<Incoming, ClientError>) -> Shown {
    let incoming = match incoming {
        Ok(incoming) => incoming,
        Err(err) => {
            let _ = writeln!(out, "* {err}. The next line you type connects again.");
            return Shown::Over;
        }
    };
    let line = match incoming {
        Incoming::Msg(ServerMsg::Reply { text, .. }) => text,
        Incoming::Msg(ServerMsg::Error { message, fatal, .. }) => {
            let _ = writeln!(out, "error: {message}");
            return if fatal { Shown::Over } else { Shown::Going };
        }
        Incoming::Msg(ServerMsg::Bye {
            reason: ByeReason::Restart,
            retry_after_ms,
            ..
        }) => return Shown::Restart(retry_after_ms),
        Incoming::Msg(ServerMsg::Bye { reason, cause, .. }) => {
            let _ = writeln!(out, "* {}. {AGAIN}", ClientError::Bye(reason, cause));
            return Shown::Over;
        }
        Incoming::Msg(other) => format!("(unexpected {other:?})"),
        Incoming::Unreadable(err) => format!("(skipped a frame this client cannot read: {err})"),
        Incoming::Closed(_) | Incoming::SpeaksTls => {
            let why = match incoming {
                Incoming::Closed(Some(reason)) => reason,
                Incoming::SpeaksTls => ClientError::speaks_tls().to_string(),
                _ => "the server closed the connection".into(),
            };
            let _ = writeln!(out, "* Disconnected: {why}. {AGAIN}");
            return Shown::Over;
        }
    };
    let _ = writeln!(out, "{line}");
    Shown::Going
}

fn terminal_error(err: impl Into<echo_client::Source>) -> ClientError {
    ClientError::local_from("terminal", err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_slash_sends_a_slash_and_client_commands_take_no_words() {
        assert_eq!(classify("//help"), Typed::Say("/help".into()));
        assert_eq!(classify("  /quit "), Typed::Client("/quit"));
        assert_eq!(classify("/repeat 2 x"), Typed::Say("/repeat 2 x".into()));
        assert!(
            matches!(classify("/quit now"), Typed::Misused(m) if m.contains("takes no arguments"))
        );
        assert!(matches!(classify("/logout please"), Typed::Misused(_)));
        assert_eq!(classify("hello"), Typed::Say("hello".into()));
    }
}
