//! `echo-client`: a REPL on a terminal, a pipe for scripts. See the README.

mod history;
mod pipe;
mod repl;
mod terminal;

use std::{
    io::{self, IsTerminal},
    process::ExitCode,
};

use clap::Parser;
use echo_client::{
    ClientError,
    config::{ClientArgs, ClientConfig, FileConfig},
    tls::Trust,
};
use echo_prompt::EnvCheck;

/// Echo client: talks to echo-server. On a terminal it is an interactive
/// REPL; with standard input from a pipe it sends each line and prints the
/// replies; with words after the options it sends them as one message,
/// prints the replies and exits (credentials from --user / ECHO_USER and
/// ECHO_PASSWORD, or the saved session).
///
/// Exit codes: 0 done, 1 usage or local error (a missing credential
/// included), 2 cannot connect, 3 refused by the server (wrong password,
/// taken name, ...), 4 connection lost or closed before all replies came,
/// 5 protocol error, 6 the server's identity could not be verified (unknown
/// key refused, key changed, untrusted chain, host name mismatch) or the TLS
/// handshake failed, 7 the server refused a line (pipe and one-shot mode),
/// 8 wrong transport (a plain client meeting a TLS server, or a TLS client
/// meeting a plain one).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: ClientArgs,
    /// Send these words, joined by spaces, as one message; print every
    /// reply and exit (like `redis-cli PING`), with the pipe mode's
    /// credentials and exit codes
    #[arg(trailing_var_arg = true, value_name = "TEXT")]
    text: Vec<String>,
    #[command(flatten)]
    generate: echo_prompt::GenerateArg,
}

/// The environment variables that stand for flags, and what they must be.
const ENVIRONMENT: &[EnvCheck] = &[
    ("ECHO_CLIENT_PORT", |value| {
        echo_prompt::parse_port(value).map(drop)
    }),
    ("ECHO_CLIENT_HOST", |value| {
        echo_prompt::parse_host(value).map(drop)
    }),
    ("ECHO_CLIENT_TLS", |value| {
        echo_prompt::parse_switch(value).map(drop)
    }),
];

fn main() -> ExitCode {
    let cli: Cli = match echo_prompt::parse_command_line("echo-client", ENVIRONMENT) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Some(kind) = cli.generate.generate {
        return echo_prompt::print_generated::<Cli>("echo-client", kind);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("echo-client: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let interactive = io::stdin().is_terminal();
    let result = runtime.block_on(async {
        if !cli.text.is_empty() {
            pipe::run(&cli.args, pipe::Input::Once(cli.text.join(" "))).await
        } else if interactive {
            repl::run(&cli.args).await
        } else {
            pipe::run(&cli.args, pipe::Input::Stdin).await
        }
    });
    // Standard input is read on a blocking thread, which a plain drop of the
    // runtime would wait for: a pipe the server ended (a `bye`) while its
    // input stays open would never exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-client: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Resolves the settings; `interactive` allows the `Host` / `Port` questions.
fn resolve_config(args: &ClientArgs, interactive: bool) -> Result<ClientConfig, ClientError> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut ask_host =
        |default: &String| ask(interactive, "Host", default, echo_prompt::parse_host);
    let mut ask_port = |default: &u16| ask(interactive, "Port", default, echo_prompt::parse_port);
    // Unknown server keys: asked about in the REPL, refused by scripts.
    let trust = if interactive {
        Trust::Ask
    } else {
        Trust::Strict
    };
    ClientConfig::resolve(args, file, &mut ask_host, &mut ask_port, trust)
}

/// Asks `label [default]:` on the terminal; `None` without one.
fn ask<T: std::fmt::Display + Clone>(
    interactive: bool,
    label: &str,
    default: &T,
    parse: fn(&str) -> Result<T, String>,
) -> io::Result<Option<T>> {
    if !interactive {
        return Ok(None);
    }
    echo_prompt::ask(
        &mut io::stdin().lock(),
        &mut io::stdout(),
        label,
        default,
        parse,
    )
    .map(Some)
}
