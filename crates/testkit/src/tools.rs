//! The operators' tools the configuration in `config/` is written for:
//! Prometheus' `promtool` (Debian's `prometheus`) and `fail2ban-regex`
//! (Debian's `fail2ban`), and `man` for the generated man pages. Where one
//! is missing its tests print one line and pass, unless its variable says
//! `require` (`.ci/run` sets them).

use std::{
    path::{Path, PathBuf},
    sync::Once,
};

/// `promtool`, or `None` (and one line said) when it is not installed.
/// `ECHO_TEST_PROMETHEUS=require` makes its absence a failure.
pub fn promtool() -> Option<PathBuf> {
    static SAID: Once = Once::new();
    tool("promtool", "ECHO_TEST_PROMETHEUS", "prometheus", &SAID)
}

/// `fail2ban-regex`, or `None` (and one line said) when it is not
/// installed. `ECHO_TEST_FAIL2BAN=require` makes its absence a failure.
pub fn fail2ban_regex() -> Option<PathBuf> {
    static SAID: Once = Once::new();
    tool("fail2ban-regex", "ECHO_TEST_FAIL2BAN", "fail2ban", &SAID)
}

/// `man`, or `None` (and one line said) when it is not installed, for
/// rendering `--generate man`. `ECHO_TEST_MAN=require` makes its absence a
/// failure.
pub fn man() -> Option<PathBuf> {
    static SAID: Once = Once::new();
    tool("man", "ECHO_TEST_MAN", "man-db", &SAID)
}

/// The workspace's root, where `config/` is.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(name: &str, variable: &str, package: &str, said: &Once) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        let why = format!("{name} is not installed (apt-get install {package})");
        if std::env::var(variable).as_deref() == Ok("require") {
            panic!("{variable}=require, but {why}");
        }
        said.call_once(|| eprintln!("skipped: the {name} tests: {why}"));
    }
    found
}
