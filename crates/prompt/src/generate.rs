//! `--generate KIND`, the same way for both binaries (as ripgrep does it):
//! shell completions and a man page, made from the clap definitions so they
//! never drift from `--help`.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

/// What `--generate` writes on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// A bash completion script (`source` it, or put it in
    /// /usr/share/bash-completion/completions/)
    CompleteBash,
    /// A zsh completion script (a file named `_PROGRAM` on `$fpath`)
    CompleteZsh,
    /// A fish completion script (~/.config/fish/completions/PROGRAM.fish)
    CompleteFish,
    /// A man page in roff (`man -l -` reads it; or install it under
    /// /usr/local/share/man/man1/PROGRAM.1)
    Man,
}

/// The `--generate` flag, flattened into each binary's command line.
#[derive(Debug, Clone, Default, Args)]
pub struct GenerateArg {
    /// Print shell completions or the man page, then exit
    #[arg(long, value_enum, value_name = "KIND")]
    pub generate: Option<Generate>,
}

/// Writes what `kind` asks for, for the command line `C`, on `out`.
pub fn generate<C: CommandFactory>(kind: Generate, out: &mut impl Write) -> io::Result<()> {
    let mut command = C::command();
    let name = command.get_name().to_owned();
    let shell = match kind {
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
        Generate::Man => return clap_mangen::Man::new(command).render(out),
    };
    clap_complete::generate(shell, &mut command, name, out);
    out.flush()
}

/// `--generate KIND` of a binary: writes on standard output; the exit code
/// says whether that worked (a closed pipe is a failure, named).
pub fn print_generated<C: CommandFactory>(program: &str, kind: Generate) -> ExitCode {
    match generate::<C>(kind, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: cannot write the output: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A small command line with a flag, a value and a subcommand.
    #[derive(Debug, Parser)]
    #[command(name = "demo", version, about = "A demo")]
    struct Demo {
        /// The port
        #[arg(long)]
        port: Option<u16>,
        #[command(flatten)]
        generate: GenerateArg,
        #[command(subcommand)]
        sub: Option<Sub>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        /// Lists things
        List,
    }

    fn text(kind: Generate) -> String {
        let mut out = Vec::new();
        generate::<Demo>(kind, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_kind_names_the_flags_and_subcommands() {
        for kind in [
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
            Generate::Man,
        ] {
            let text = text(kind);
            assert!(text.contains("port"), "{kind:?}: {text}");
            assert!(text.contains("list"), "{kind:?}: {text}");
        }
        assert!(text(Generate::Man).starts_with(".ie"));
        assert!(text(Generate::CompleteBash).contains("complete -F"));
    }

    #[test]
    fn the_kinds_are_spelled_as_documented() {
        let names: Vec<String> = Generate::value_variants()
            .iter()
            .filter_map(|kind| kind.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        assert_eq!(
            names,
            ["complete-bash", "complete-zsh", "complete-fish", "man"]
        );
    }
}
