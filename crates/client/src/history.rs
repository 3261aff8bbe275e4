//! The REPL's history file: one line per entry, kept next to the token
//! file, readable only by its owner.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
};

/// Lines of history kept.
pub const HISTORY_LINES: usize = 1000;

/// The history file: one line per entry, appended as lines are entered.
pub struct History {
    path: PathBuf,
}

impl History {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    pub fn load(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let skip = lines.len().saturating_sub(HISTORY_LINES);
        lines.into_iter().skip(skip).collect()
    }

    /// Best effort: a history that cannot be written is not worth stopping
    /// the conversation for.
    pub fn append(&self, line: &str) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(mut file) = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}
