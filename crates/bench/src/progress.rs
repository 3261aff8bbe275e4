//! The one progress line on standard error, rewritten as a run goes: an
//! indicatif spinner, which draws nothing when standard error is not a
//! terminal (or `TERM` is `dumb`), so a log file gets no control codes.

use std::{sync::OnceLock, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The spinner, made on the first call.
fn bar() -> &'static ProgressBar {
    static BAR: OnceLock<ProgressBar> = OnceLock::new();
    BAR.get_or_init(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    })
}

/// Shows `line` as what the run is doing now.
pub fn progress(line: &str) {
    bar().set_message(line.to_owned());
}

/// Removes the progress line, before the report is printed.
pub fn done() {
    bar().finish_and_clear();
}
