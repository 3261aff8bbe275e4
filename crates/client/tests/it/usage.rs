//! Usage errors exit 1 (2 means "cannot connect") and name the source of
//! the bad value.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

use crate::pipe::CLIENT;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(CLIENT);
    command
        .args(args)
        .env_remove("ECHO_CLIENT_PORT")
        .env_remove("ECHO_CLIENT_HOST")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn usage_errors_exit_1_and_name_where_the_value_came_from() {
    for args in [
        &["--port", "abc", "x"][..],
        &["--no-such-flag"],
        &["--port", "0", "x"],
    ] {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
    let out = run(&["x"], &[("ECHO_CLIENT_PORT", "99999")]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("ECHO_CLIENT_PORT") && !said.contains("--port"),
        "{said}"
    );
    assert_eq!(run(&["--version"], &[]).status.code(), Some(0));
}

#[test]
fn every_flag_and_environment_variable_of_help_is_in_the_readme() {
    let help = Command::new(CLIENT).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--port"), "{help}");
    let missing =
        echo_testkit::docs::missing_from_readme(&help, echo_testkit::docs::Flags::Anywhere);
    assert!(
        missing.is_empty(),
        "echo-client --help names, the README does not: {missing:?}"
    );
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_flags() {
    echo_testkit::generated::check_generated(
        std::path::Path::new(CLIENT),
        "echo-client",
        "known-hosts",
    );
}
