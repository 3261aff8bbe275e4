//! One log file a day, `log_serv.YYYY-MM-DD.txt` (UTC), the newest `keep`
//! kept, and `log_serv.txt`, a symbolic link to the current one, moved at
//! rotation: `tail -F logs/log_serv.txt` follows the log across days (it
//! re-opens the name when the link changes). tracing-appender's rolling
//! writer names files `log_serv.YYYY-MM-DD.txt` but keeps no such link and
//! reads the wall clock itself; this writer takes its day from a [`Clock`],
//! so rotation is tested by moving one. It sits behind tracing-appender's
//! non-blocking writer, on that writer's thread.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{LOG_PREFIX, LOG_SUFFIX};
use crate::sys::clock::{Clock, civil_date};

/// The name that always leads to the current log file.
pub const CURRENT_LOG: &str = "log_serv.txt";

/// The log files of one directory.
#[derive(Debug)]
pub struct DailyFile {
    dir: PathBuf,
    keep: usize,
    clock: Arc<dyn Clock>,
    day: u64,
    file: File,
}

impl DailyFile {
    /// Opens today's file in `dir` (which must exist), points the link at
    /// it and removes the files beyond the newest `keep`.
    pub fn open(dir: &Path, keep: usize, clock: Arc<dyn Clock>) -> io::Result<Self> {
        let day = clock.now() / 86_400;
        let file = open_day(dir, day)?;
        let daily = Self {
            dir: dir.to_owned(),
            keep: keep.max(1),
            clock,
            day,
            file,
        };
        daily.point_link()?;
        daily.prune()?;
        Ok(daily)
    }

    /// Moves to a new file when the day has changed.
    fn roll_if_due(&mut self) -> io::Result<()> {
        let day = self.clock.now() / 86_400;
        if day == self.day {
            return Ok(());
        }
        self.file.flush()?;
        self.file = open_day(&self.dir, day)?;
        self.day = day;
        self.point_link()?;
        self.prune()
    }

    /// Points `log_serv.txt` at the current file, atomically (a link made
    /// under a temporary name, then renamed over the old one).
    fn point_link(&self) -> io::Result<()> {
        let link = self.dir.join(CURRENT_LOG);
        let tmp = self.dir.join(format!("{CURRENT_LOG}.tmp"));
        match std::fs::remove_file(&tmp) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        std::os::unix::fs::symlink(file_name(self.day), &tmp)?;
        std::fs::rename(&tmp, &link)
    }

    /// Removes the oldest daily files beyond `keep`.
    fn prune(&self) -> io::Result<()> {
        let mut days: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| is_daily(name))
            .collect();
        // The date in the name sorts as text.
        days.sort();
        let excess = days.len().saturating_sub(self.keep);
        for old in &days[..excess] {
            std::fs::remove_file(self.dir.join(old))?;
        }
        Ok(())
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.roll_if_due()?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `log_serv.YYYY-MM-DD.txt` for a day counted from 1970-01-01.
fn file_name(day: u64) -> String {
    let (year, month, day) = civil_date(i64::try_from(day).unwrap_or(0));
    format!("{LOG_PREFIX}.{year:04}-{month:02}-{day:02}.{LOG_SUFFIX}")
}

fn open_day(dir: &Path, day: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file_name(day)))
}

/// Whether `name` is one of the daily files (not the link).
fn is_daily(name: &str) -> bool {
    let Some(date) = name
        .strip_prefix(&format!("{LOG_PREFIX}."))
        .and_then(|rest| rest.strip_suffix(&format!(".{LOG_SUFFIX}")))
    else {
        return false;
    };
    date.len() == 10 && date.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clock::ManualClock;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_link_follows_the_current_day_and_old_days_are_kept_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        // 2026-11-21, shortly before midnight UTC.
        let clock = ManualClock::at(1_795_305_000);
        let mut log = DailyFile::open(dir.path(), 2, clock.clone()).unwrap();
        log.write_all(b"first day\n").unwrap();
        let link = dir.path().join(CURRENT_LOG);
        let first = dir.path().join("log_serv.2026-11-21.txt");
        assert_eq!(read(&link), "first day\n");
        assert_eq!(read(&first), "first day\n");

        clock.advance(86_400);
        log.write_all(b"second day\n").unwrap();
        assert_eq!(read(&link), "second day\n");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("log_serv.2026-11-22.txt")
        );
        assert_eq!(read(&first), "first day\n", "yesterday's file is kept");

        clock.advance(86_400);
        log.write_all(b"third day\n").unwrap();
        assert!(!first.exists(), "only the newest 2 days are kept");
        assert!(dir.path().join("log_serv.2026-11-22.txt").exists());
        assert_eq!(read(&link), "third day\n");
    }

    #[test]
    fn dates_are_named_in_utc() {
        assert_eq!(file_name(0), "log_serv.1970-01-01.txt");
        assert_eq!(file_name(20_779), "log_serv.2026-11-22.txt");
        assert!(is_daily("log_serv.2026-11-22.txt"));
        assert!(!is_daily(CURRENT_LOG));
    }
}
