//! The interactive client: prompts for what it needs, then a line editor
//! with history that prints every server frame the moment it arrives, also
//! while the user is typing.

use std::io::{self, Write};

use crate::history::{HISTORY_LINES, History};

use echo_client::{
    AuthRequest, ClientError, Connection, Credentials, Established, Incoming, TokenJar,
    config::{ClientArgs, ClientConfig},
    handshake,
};
use echo_proto::{ClientMsg, ErrorCode, Mode, Secret, ServerMsg};
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

/// Asks the person at the terminal.
struct TerminalCredentials;

/// What ends one run of the line editor.
enum Action {
    Quit,
    Reconnect,
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

impl Credentials for TerminalCredentials {
    fn name(&mut self) -> Result<String, ClientError> {
        echo_prompt::ask_required(
            &mut io::stdin().lock(),
            &mut io::stdout(),
            "Your name",
            |s| Ok(s.to_owned()),
        )
        .map_err(ClientError::from_question)
    }

    fn choose(&mut self, suggested: Option<&str>) -> Result<AuthRequest, ClientError> {
        let (mut input, mut output) = (io::stdin().lock(), io::stdout());
        let register = echo_prompt::ask(
            &mut input,
            &mut output,
            "Log in or register? (l/r)",
            &"l".to_owned(),
            |answer| match answer.to_lowercase().as_str() {
                "l" | "login" | "log in" => Ok("l".to_owned()),
                "r" | "register" => Ok("r".to_owned()),
                _ => Err("Answer l to log in or r to register.".to_owned()),
            },
        )
        .map_err(ClientError::from_question)?
            == "r";
        let not_empty = |s: &str| Ok(s.to_owned());
        let user = match suggested {
            Some(user) if !register => {
                echo_prompt::ask(&mut input, &mut output, "User", &user.to_owned(), not_empty)
            }
            _ => echo_prompt::ask_required(&mut input, &mut output, "User", not_empty),
        }
        .map_err(ClientError::from_question)?;
        drop(input);
        let password = Secret::new(
            echo_prompt::hidden("Password", register).map_err(ClientError::from_question)?,
        );
        Ok(AuthRequest {
            register,
            user,
            password,
        })
    }

    fn refused(
        &mut self,
        code: ErrorCode,
        message: &str,
        attempts_left: Option<u32>,
    ) -> Result<(), ClientError> {
        match (code, attempts_left) {
            (_, Some(left)) => println!("{message} ({left} attempt(s) left)"),
            _ => println!("{message}"),
        }
        Ok(())
    }

    fn token_rejected(&mut self, server: &str) {
        println!("{}.", echo_client::handshake::token_rejected_text(server));
    }
}

pub async fn run(args: &ClientArgs) -> Result<(), ClientError> {
    let config = crate::resolve_config(args, true)?;
    let jar = TokenJar::new(&config.token_file);
    let history = History::new(&config.history_file);
    let mut session = Some(connect(&config, &jar).await?);
    let mut entries = history.load();
    loop {
        let (mut editor, mut out) = Readline::new("> ".to_owned()).map_err(terminal_error)?;
        editor.set_max_history(HISTORY_LINES);
        editor.set_history_entries(entries.clone());
        editor.should_print_line_on(true, false);
        let action = chat(&mut editor, &mut out, &mut session, &jar, &history).await;
        entries = editor.get_history_entries().iter().cloned().collect();
        let _ = editor.flush();
        drop(editor);
        let (reconnect, then_say) = match action? {
            Action::Quit => return Ok(()),
            Action::Reconnect => (true, None),
            Action::ReconnectAndSay(line) => (true, Some(line)),
        };
        if reconnect {
            session = None;
            match connect(&config, &jar).await {
                Ok(mut conn) => {
                    if let Some(line) = then_say {
                        if let Err(err) = conn.say(line).await {
                            println!("{err}. The next line you type connects again.");
                        } else {
                            session = Some(conn);
                        }
                    } else {
                        session = Some(conn);
                    }
                }
                Err(err) => println!("{err}. The next line you type tries again; /quit leaves."),
            }
        }
    }
}

/// Connects, follows the handshake (prompting if needed) and says hello.
/// When the server stops waiting during the handshake (its timeout ran out
/// while a person was typing), connects again and asks again.
async fn connect(config: &ClientConfig, jar: &TokenJar) -> Result<Connection, ClientError> {
    let mut retries = 0;
    let (conn, established) = loop {
        let mut conn = Connection::connect(&config.host, config.port, config.tls.as_ref()).await?;
        match handshake(&mut conn, Some(jar), &mut TerminalCredentials).await {
            Ok(established) => break (conn, established),
            Err(
                ClientError::Bye(echo_proto::ByeReason::Timeout, _)
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
    session: &mut Option<Connection>,
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
            incoming = next_incoming(session) => {
                if !show(out, incoming) {
                    *session = None;
                }
            }
        }
    }
}

/// `/help`: the client's commands, then the server's.
async fn help(out: &mut SharedWriter, session: &mut Option<Connection>) {
    let _ = writeln!(out, "Client commands:");
    for (command, what) in CLIENT_COMMANDS {
        let _ = writeln!(out, "  {command}: {what}");
    }
    let _ = writeln!(out, "Server commands:");
    send_line(out, session, "/help".to_owned()).await;
}

/// `/logout`: forgets the token and tells the server.
async fn logout(out: &mut SharedWriter, session: &mut Option<Connection>, jar: &TokenJar) {
    let Some(conn) = session else {
        let _ = writeln!(out, "Not connected.");
        return;
    };
    let server = conn.server().to_owned();
    if let Err(err) = jar.remove(&server) {
        let _ = writeln!(out, "{err}");
    }
    if let Err(err) = conn.send(&ClientMsg::Logout {}).await {
        let _ = writeln!(out, "{err}");
    }
}

async fn send_line(out: &mut SharedWriter, session: &mut Option<Connection>, line: String) {
    match session {
        Some(conn) => {
            if let Err(err) = conn.say(line).await {
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

async fn next_incoming(session: &mut Option<Connection>) -> Incoming {
    match session {
        Some(conn) => conn.recv().await,
        None => std::future::pending().await,
    }
}

/// Prints what came in; false when the connection is over.
fn show(out: &mut SharedWriter, incoming: Incoming) -> bool {
    let line = match incoming {
        Incoming::Msg(ServerMsg::Reply { text, .. }) => text,
        Incoming::Msg(ServerMsg::Error { message, fatal, .. }) => {
            let _ = writeln!(out, "error: {message}");
            return !fatal;
        }
        Incoming::Msg(ServerMsg::Bye { reason, cause, .. }) => {
            let _ = writeln!(
                out,
                "* {}. The next line you type connects again (or /reconnect; /quit leaves).",
                ClientError::Bye(reason, cause)
            );
            return false;
        }
        Incoming::Msg(other) => format!("(unexpected {other:?})"),
        Incoming::Unreadable(err) => format!("(skipped a frame this client cannot read: {err})"),
        Incoming::Closed(_) | Incoming::SpeaksTls => {
            let why = match incoming {
                Incoming::Closed(Some(reason)) => reason,
                Incoming::SpeaksTls => ClientError::speaks_tls().to_string(),
                _ => "the server closed the connection".into(),
            };
            let _ = writeln!(
                out,
                "* Disconnected: {why}. The next line you type connects again (or /reconnect; /quit leaves)."
            );
            return false;
        }
    };
    let _ = writeln!(out, "{line}");
    true
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
