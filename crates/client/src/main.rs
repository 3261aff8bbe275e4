//! `echo-client`: not implemented yet; see the README.

fn main() -> std::process::ExitCode {
    eprintln!("echo-client: not implemented yet (see the client issue)");
    std::process::ExitCode::FAILURE
}
