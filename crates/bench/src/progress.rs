//! The one progress line on standard error, rewritten as a run goes.

use std::io::Write;

/// Prints a progress line over the previous one on standard error.
pub fn progress(line: &str) {
    let mut err = std::io::stderr();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
}
