//! What a person typing the command sees: usage errors exit 1 and name the
//! source of the bad value, messages say each thing once, a daemon asks
//! nothing, and a move off busy ports names them.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

use echo_testkit::{ServerProcess, free_port};

const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(SERVER);
    command
        .args(args)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .env_remove("ECHO_SERVER_PORT")
        .env_remove("ECHO_SERVER_HOST")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn usage_errors_exit_1_and_name_where_the_value_came_from() {
    let flag = run(&["--port", "abc"], &[]);
    assert_eq!(flag.status.code(), Some(1), "{}", stderr(&flag));
    assert!(stderr(&flag).contains("--port"), "{}", stderr(&flag));
    let unknown = run(&["--no-such-flag"], &[]);
    assert_eq!(unknown.status.code(), Some(1));
    let env = run(&[], &[("ECHO_SERVER_PORT", "99999")]);
    assert_eq!(env.status.code(), Some(1));
    let said = stderr(&env);
    assert!(
        said.contains("ECHO_SERVER_PORT") && !said.contains("--port"),
        "{said}"
    );
    let help = run(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn an_os_error_is_said_once() {
    let out = run(&["--port", "0", "--config", "/nonexistent/echo.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert_eq!(said.matches("(os error 2)").count(), 1, "{said}");
    assert!(said.contains("/nonexistent/echo.toml"), "{said}");
}

#[test]
fn a_move_off_several_busy_ports_names_them() {
    // Two ports in a row held by someone else.
    let (first, _a, _b) = loop {
        let port = free_port();
        let a = std::net::TcpListener::bind(("127.0.0.1", port));
        let b = std::net::TcpListener::bind(("127.0.0.1", port + 1));
        if let (Ok(a), Ok(b)) = (a, b) {
            break (port, a, b);
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let port = first.to_string();
    let server = ServerProcess::start(dir.path(), &["--port", &port], &[]);
    let moved = server.addr().port();
    // The next free one: two past, unless another test took that one too
    // meanwhile (the suite runs in parallel).
    assert!(moved >= first + 2, "{moved} after {first}");
    assert_eq!(
        server.first_line,
        format!(
            "listening on 127.0.0.1:{moved} (ports {first}-{} were busy)",
            moved - 1
        )
    );
}

#[test]
fn a_daemon_asks_nothing_even_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("echo.pid");
    // Through a shell, as from a terminal: the shell leads the session, so
    // the daemon's parent exiting does not hang up its child.
    let line = format!(
        "{SERVER} --daemon --mode ident --pid-file {} --data-dir {} --log-dir {}; sleep 2",
        pid_file.display(),
        dir.path().join("data").display(),
        dir.path().join("logs").display()
    );
    let mut command = Command::new("sh");
    command.args(["-c", &line]).env_remove("ECHO_SERVER_PORT");
    let options = rexpect::reader::Options::new().timeout_ms(Some(10_000));
    let mut session = rexpect::session::spawn_with_options(command, options).unwrap();
    // The first thing on the terminal is the listening line, not "Port [".
    let (before, _) = session.exp_regex("listening on [^\\r\\n]+").unwrap();
    assert!(!before.contains("Port"), "{before:?}");
    for _ in 0..100 {
        if pid_file.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM).unwrap();
}

#[test]
fn every_flag_and_environment_variable_of_help_is_in_the_readme() {
    let help = Command::new(SERVER).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--port"), "{help}");
    let missing =
        echo_testkit::docs::missing_from_readme(&help, echo_testkit::docs::Flags::InATable);
    assert!(
        missing.is_empty(),
        "echo-server --help names, the README does not: {missing:?}"
    );
    // The example config's precedence comment names every variable too.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/server.toml");
    let example = std::fs::read_to_string(example).unwrap();
    let precedence: String = example
        .lines()
        .take_while(|line| line.starts_with('#'))
        .collect();
    for name in help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
    {
        assert!(
            precedence.contains(name),
            "config/server.toml's precedence misses {name}"
        );
    }
}

#[test]
fn a_bad_store_or_metrics_address_in_the_environment_is_named_as_such() {
    for (name, value) in [
        ("ECHO_SERVER_METRICS_ADDR", "nonsense"),
        ("ECHO_SERVER_STORE", "mysql://x"),
    ] {
        let output = run(&["--port", "0"], &[(name, value)]);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let said = stderr(&output);
        assert!(said.contains(name), "{name}: {said}");
        assert!(said.lines().count() == 1, "one sentence: {said}");
    }
}

#[test]
fn the_readme_says_how_to_install_before_it_calls_the_binaries_by_name() {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(readme).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let line_of = |wanted: &dyn Fn(&str) -> bool| lines.iter().position(|line| wanted(line));
    for (binary, crate_dir) in [
        ("echo-server", "crates/server"),
        ("echo-client", "crates/client"),
    ] {
        let install =
            line_of(&|line| line.starts_with(&format!("cargo install --path {crate_dir}")))
                .unwrap_or_else(|| panic!("the README never says how to install {binary}"));
        let bare = line_of(&|line| line.starts_with(&format!("{binary} ")));
        assert!(
            bare.is_none_or(|first| first > install),
            "the README calls {binary} by name (line {}) before saying how to install it",
            bare.unwrap_or_default() + 1
        );
    }
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_flags() {
    echo_testkit::generated::check_generated(
        std::path::Path::new(SERVER),
        "echo-server",
        "proxy-protocol-from",
    );
}

/// `user add` on a terminal, confirmation mistyped: dialoguer's `error:`
/// line reads like every other error (lower case, no period), and the
/// question is asked again.
#[test]
fn a_mistyped_password_confirmation_is_said_like_every_other_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(SERVER);
    command
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["user", "add", "ann"])
        .env_remove("ECHO_SERVER_PORT")
        .env_remove("ECHO_SERVER_STORE");
    let options = rexpect::reader::Options::new().timeout_ms(Some(10_000));
    let mut session = rexpect::session::spawn_with_options(command, options).unwrap();
    session.exp_string("Password:").unwrap();
    session.send_line(echo_testkit::PASSWORD).unwrap();
    session.exp_string("Password again:").unwrap();
    session.send_line("another horse battery").unwrap();
    let (_, said) = session.exp_regex("error: [^\\r\\n]*").unwrap();
    assert_eq!(said, format!("error: {}", echo_prompt::MISMATCH));
    assert_eq!(echo_prompt::MISMATCH, "the two answers differ; once more");
    session.exp_string("Password:").unwrap();
    session.send_line(echo_testkit::PASSWORD).unwrap();
    session.exp_string("Password again:").unwrap();
    session.send_line(echo_testkit::PASSWORD).unwrap();
    session.exp_string("user ann added").unwrap();
}
