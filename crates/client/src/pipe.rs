//! Pipe mode: no prompts, no line editor. Each input line is a `say`; each
//! reply is a line on standard output; the exit code says how it went (a
//! line the server refused is reported at once, and fails the run at the
//! end: [`ClientError::LinesRefused`]).
//! One-shot mode (`echo-client [OPTIONS] TEXT...`) is the same with one line.
//! Both carry on across `bye restart` without a word: the session resumes
//! on the new server process and the lines it never read are sent again
//! ([`echo_client::restart`]).

use std::io::{self, Write};

use echo_client::{
    AuthRequest, ClientError, Conversation, Credentials, Incoming, Target, TokenJar,
    config::ClientArgs,
};
use echo_proto::{ByeReason, ErrorCode, Secret, ServerMsg};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Credentials from flags and the environment, never from a prompt.
struct ScriptCredentials {
    user: Option<String>,
    password: Option<Secret>,
    register: bool,
}

impl Credentials for ScriptCredentials {
    fn name(&mut self) -> Result<String, ClientError> {
        self.user
            .clone()
            .ok_or(ClientError::MissingCredential("--user or ECHO_USER"))
    }

    fn choose(&mut self, _suggested: Option<&str>) -> Result<AuthRequest, ClientError> {
        let user = self.name()?;
        let password = self
            .password
            .clone()
            .ok_or(ClientError::MissingCredential("ECHO_PASSWORD"))?;
        Ok(AuthRequest {
            register: self.register,
            user,
            password,
        })
    }

    fn refused(
        &mut self,
        code: ErrorCode,
        message: &str,
        _attempts_left: Option<u32>,
    ) -> Result<(), ClientError> {
        // A script cannot answer differently the second time: give up.
        Err(ClientError::Refused {
            code,
            message: message.to_owned(),
        })
    }
}

/// Where the lines to send come from.
pub enum Input {
    /// Standard input, line by line.
    Stdin,
    /// One line given on the command line.
    Once(String),
}

/// The lines being sent.
enum Lines {
    Stdin(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
    Once(Option<String>),
}

impl Lines {
    async fn next(&mut self) -> io::Result<Option<String>> {
        match self {
            Lines::Stdin(lines) => lines.next_line().await,
            Lines::Once(line) => Ok(line.take()),
        }
    }
}

/// The longest `say` sent: a server's default frame limit (`max_frame`,
/// 64 KiB); a longer line would end the connection, so it is skipped.
const MAX_SAY: usize = echo_proto::DEFAULT_MAX_FRAME_LENGTH;

/// The size of the frame a `say` of `text` makes.
fn say_len(text: &str) -> usize {
    let say = echo_proto::ClientMsg::Say {
        id: u64::MAX,
        text: text.to_owned(),
    };
    // Serializing a message of strings and numbers cannot fail.
    serde_json::to_vec(&say).map_or(usize::MAX, |json| json.len())
}

pub async fn run(args: &ClientArgs, input: Input) -> Result<(), ClientError> {
    let mut pipe = connect(args).await?;
    let mut lines = match input {
        Input::Stdin => Lines::Stdin(BufReader::new(tokio::io::stdin()).lines()),
        Input::Once(line) => Lines::Once(Some(line)),
    };
    let mut input_done = false;
    while !(input_done && pipe.conv.unanswered() == 0) {
        tokio::select! {
            line = lines.next(), if !input_done => match line {
                Ok(Some(line)) if say_len(&line) > MAX_SAY => {
                    eprintln!(
                        "echo-client: skipped a line of {} bytes: longer than one message may be ({MAX_SAY} bytes)",
                        line.len()
                    );
                }
                Ok(Some(line)) => {
                    pipe.conv.say(line).await?;
                }
                Ok(None) => input_done = true,
                Err(err) => return Err(ClientError::local_from("cannot read the input", err)),
            },
            incoming = pipe.conv.recv() => pipe.take(incoming?).await?,
        }
    }
    match pipe.refused {
        0 => Ok(()),
        refused => Err(ClientError::LinesRefused(refused)),
    }
}

/// A running pipe: the conversation and what it takes to resume it.
struct Pipe {
    conv: Conversation,
    jar: TokenJar,
    creds: ScriptCredentials,
    /// Lines the server answered with an `error`.
    refused: usize,
}

impl Pipe {
    /// Prints what came in; an end of the connection ends the run, except
    /// `bye restart`, after which the conversation carries on on the new
    /// process (the lines it never read sent again).
    async fn take(&mut self, incoming: Incoming) -> Result<(), ClientError> {
        let printed = |err: io::Error| ClientError::local_from("cannot write the output", err);
        match incoming {
            Incoming::Msg(ServerMsg::Reply { text, .. }) => {
                let mut stdout = io::stdout();
                writeln!(stdout, "{text}")
                    .and_then(|()| stdout.flush())
                    .map_err(printed)?;
            }
            Incoming::Msg(ServerMsg::Error {
                message,
                fatal: false,
                ..
            }) => {
                eprintln!("echo-client: error: {message}");
                self.refused += 1;
            }
            Incoming::Msg(ServerMsg::Error { message, .. }) => {
                return Err(ClientError::Lost(message));
            }
            Incoming::Msg(ServerMsg::Bye {
                reason: ByeReason::Restart,
                retry_after_ms,
                ..
            }) => {
                let jar = Some(&self.jar);
                self.conv
                    .restart(retry_after_ms, jar, &mut self.creds)
                    .await?;
            }
            Incoming::Msg(ServerMsg::Bye { reason, cause, .. }) => {
                return Err(ClientError::Bye(reason, cause));
            }
            Incoming::Msg(_) => {}
            Incoming::Unreadable(err) => eprintln!("echo-client: skipped a frame: {err}"),
            Incoming::Closed(reason) => {
                let why = reason.unwrap_or_else(|| "the server closed the connection".into());
                return Err(ClientError::Lost(why));
            }
            Incoming::SpeaksTls => return Err(ClientError::speaks_tls()),
        }
        Ok(())
    }
}

/// Connects and authenticates (or identifies) from the flags and the
/// environment.
async fn connect(args: &ClientArgs) -> Result<Pipe, ClientError> {
    let config = crate::resolve_config(args, false)?;
    let jar = TokenJar::new(&config.token_file);
    let mut creds = ScriptCredentials {
        user: args.user.clone(),
        password: std::env::var("ECHO_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        register: args.register,
    };
    let target = Target::new(&config.host, config.port, config.tls.clone());
    let (conn, _) = echo_client::restart::connect(&target, Some(&jar), &mut creds).await?;
    // The user exists now: should a resume after a restart be refused, the
    // password logs in rather than registering again.
    creds.register = false;
    Ok(Pipe {
        conv: Conversation::new(conn),
        jar,
        creds,
        refused: 0,
    })
}
