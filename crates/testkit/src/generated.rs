//! `--generate KIND` of a binary, checked by the programs that read it:
//! bash sources the completion script and registers it, zsh and fish (when
//! installed) parse theirs, and `man -l` renders the page.

use std::{
    path::Path,
    process::{Command, Output},
};

/// Runs `binary --generate KIND` and checks each kind with its reader;
/// `program` is the name completions register for, `flag` one long flag the
/// page and scripts must name.
pub fn check_generated(binary: &Path, program: &str, flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bash = write(binary, "complete-bash", &dir.path().join("complete.bash"));
    let registered = run(Command::new("bash").arg("-c").arg(format!(
        "set -e; source '{}'; complete -p {program}",
        bash.display()
    )));
    assert!(registered.contains(program), "bash: {registered}");
    for (kind, shell, file) in [
        ("complete-zsh", "zsh", format!("_{program}")),
        ("complete-fish", "fish", format!("{program}.fish")),
    ] {
        let script = write(binary, kind, &dir.path().join(file));
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.contains(flag), "{kind} names no --{flag}: {text}");
        if which(shell) {
            run(Command::new(shell).arg("-n").arg(&script));
        }
    }
    let page = write(binary, "man", &dir.path().join(format!("{program}.1")));
    let Some(man) = crate::tools::man() else {
        return;
    };
    let rendered = run(Command::new(man)
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env_remove("MAN_KEEP_FORMATTING"));
    for needed in ["NAME", "SYNOPSIS", "OPTIONS", program, &format!("--{flag}")] {
        assert!(
            rendered.contains(needed),
            "man -l lacks {needed:?}: {rendered}"
        );
    }
}

/// `binary --generate kind` into `path`; it must succeed and say something.
fn write(binary: &Path, kind: &str, path: &Path) -> std::path::PathBuf {
    let output = Command::new(binary)
        .args(["--generate", kind])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "--generate {kind}: {}",
        text(&output)
    );
    assert!(
        !output.stdout.is_empty(),
        "--generate {kind} printed nothing"
    );
    std::fs::write(path, &output.stdout).unwrap();
    path.to_owned()
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether `program` is on `PATH`.
fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
