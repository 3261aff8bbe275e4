//! The README against a binary's `--help`: every flag and environment
//! variable the binary takes is documented.

use std::path::Path;

/// Where the README must name a binary's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// In a table row (`| \`--flag ...\` | ...`): the server's flag table.
    InATable,
    /// Anywhere.
    Anywhere,
}

/// The flags (`--name`) and environment variables (`[env: NAME=...]`) that
/// `help` names and the README at the workspace root does not.
pub fn missing_from_readme(help: &str, where_flags: Flags) -> Vec<String> {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(readme_path).expect("README.md");
    let rows: String = readme
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .collect::<Vec<_>>()
        .join("\n");
    let flag_text = match where_flags {
        Flags::InATable => &rows,
        Flags::Anywhere => &readme,
    };
    let wanted = flags(help).into_iter().map(|flag| (flag, flag_text));
    let variables = environment(help).into_iter().map(|name| (name, &readme));
    let mut missing = Vec::new();
    for (name, text) in wanted.chain(variables) {
        if !mentions(text, &name) && !missing.contains(&name) {
            missing.push(name);
        }
    }
    missing
}

/// `--name` words of `help`, without `--help` and `--version`.
fn flags(help: &str) -> Vec<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .filter(|word| !matches!(*word, "--help" | "--version"))
        .map(str::to_owned)
        .collect()
}

/// The names in `[env: NAME=...]`.
pub fn environment(help: &str) -> Vec<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

/// Whether `text` holds `name` as a whole word (`--store` is not found in
/// `--store-timeout`).
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(at, _)| {
        let next = text[at + name.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}
