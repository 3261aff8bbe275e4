//! `echo-server`: parses flags, sets up logging and calls
//! [`echo_server::run`]; `admin_cli.rs` holds the administration commands.
//! See the README for usage.

mod admin;
mod listeners;
mod setup;
mod start;
mod upgrade;

use std::process::ExitCode;

use admin::{Admin, administer};
use clap::Parser;
use echo_prompt::EnvCheck;
use echo_server::config::RunArgs;
use setup::describe;
use start::start;

/// Echo server: identifies clients by IP or authenticates users, then
/// echoes their messages. Logs go to LOG_DIR/log_serv.<date>.txt.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    admin: Option<Admin>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    generate: echo_prompt::GenerateArg,
}

/// Files the process creates are never readable by others: log files come
/// out 0640 and directories 0750 (the store asks for 0600 and 0700 itself).
const UMASK: u32 = 0o027;

/// The environment variables that stand for flags, and what they must be.
const ENVIRONMENT: &[EnvCheck] = &[
    ("ECHO_SERVER_PORT", |value| {
        echo_prompt::parse_listen_port(value).map(drop)
    }),
    ("ECHO_SERVER_HOST", |value| {
        echo_prompt::parse_host(value).map(drop)
    }),
    ("ECHO_SERVER_TLS", |value| {
        echo_prompt::parse_switch(value).map(drop)
    }),
    ("ECHO_SERVER_STORE", |value| {
        echo_server::config::parse_store(value, None).map(drop)
    }),
    ("ECHO_SERVER_METRICS_ADDR", |value| {
        value
            .parse::<std::net::SocketAddr>()
            .map(drop)
            .map_err(|_| format!("{value:?} is not an address and port, like 127.0.0.1:9090"))
    }),
];

fn main() -> ExitCode {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(UMASK));
    let cli: Cli = match echo_prompt::parse_command_line("echo-server", ENVIRONMENT) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Some(kind) = cli.generate.generate {
        return echo_prompt::print_generated::<Cli>("echo-server", kind);
    }
    let result = match cli.admin {
        Some(admin) => administer(&cli.run, admin),
        None => start(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-server: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}
