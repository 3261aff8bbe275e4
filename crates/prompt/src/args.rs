//! Command lines, the same way for both binaries: a usage error exits 1
//! (clap's own code is 2, which the client documents as "cannot connect"),
//! and a bad value from an environment variable is named as such instead of
//! as the flag it stands for.

use std::process::ExitCode;

/// An environment variable that stands for a flag, and the check its value
/// must pass.
pub type EnvCheck = (&'static str, fn(&str) -> Result<(), String>);

/// Checks the environment variables in `env`, then parses the command line
/// into `P`. On failure the message is printed (on standard error, prefixed
/// with `program`) and the exit code returned: 1, or 0 for `--help` and
/// `--version`.
pub fn parse_command_line<P: clap::Parser>(program: &str, env: &[EnvCheck]) -> Result<P, ExitCode> {
    if let Some(message) = invalid_environment(env, |name| std::env::var_os(name)) {
        eprintln!("{program}: {message}");
        return Err(ExitCode::FAILURE);
    }
    P::try_parse().map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// The first variable of `env` whose value (from `lookup`) fails its check,
/// as a sentence.
fn invalid_environment(
    env: &[EnvCheck],
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<String> {
    env.iter().find_map(|(name, check)| {
        let value = lookup(name)?;
        let value = value.to_string_lossy();
        check(&value)
            .err()
            .map(|why| format!("invalid {name}={value:?}: {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_environment_value_is_named() {
        let env: &[EnvCheck] = &[("ECHO_X_PORT", |v| crate::parse_port(v).map(drop))];
        let bad = invalid_environment(env, |_| Some("99999".into())).unwrap();
        assert!(bad.starts_with("invalid ECHO_X_PORT=\"99999\": "), "{bad}");
        assert_eq!(invalid_environment(env, |_| Some("80".into())), None);
        assert_eq!(invalid_environment(env, |_| None), None);
    }
}
