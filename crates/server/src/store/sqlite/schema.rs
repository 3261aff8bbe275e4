//! The database file, its connections' settings and its versioned
//! migrations (`crates/server/migrations/sqlite/`, recorded in
//! `PRAGMA user_version`).

use std::{ops::Neg, path::Path};

use super::{BUSY_TIMEOUT, failure};
use crate::{store::StoreError, sys::files};

/// The database's file name in the data directory.
pub const DB_FILE: &str = "echo.db";

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../../migrations/sqlite/0002_identity_changes.sql"),
];

/// The newest schema version this binary knows.
pub fn latest() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Each connection's page cache, in KiB (SQLite's default is 2,000). The
/// operating system caches the file too, so a page not held here costs a
/// `pread`, not a disk read; held here, it is server memory that grows with
/// the number of users until the cap (five connections: the writer and the
/// readers).
const CACHE_KIB: i64 = 256;

/// Every connection: wait for another process's lock up to
/// [`BUSY_TIMEOUT`], check foreign keys. (WAL and `synchronous` are set by
/// the writer: the journal mode is the file's, `synchronous` is the
/// writer's, the only connection that commits.)
fn configure(connection: &rusqlite::Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "cache_size", CACHE_KIB.neg())?;
    connection.pragma_update(None, "foreign_keys", "ON")
}

/// Opens the writer's connection: the file created 0600 if missing (it
/// holds password hashes; SQLite gives its `-wal` and `-shm` files the
/// same mode), WAL, `synchronous = FULL` (a commit is on disk when it
/// returns), and the schema brought up to date.
pub fn open_writer(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let io_error = |source| StoreError::Io {
        what: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        files::create_private_dir(dir).map_err(io_error)?;
    }
    refuse_links(path)?;
    drop(files::open_private(path).map_err(io_error)?);
    let connection = rusqlite::Connection::open(path).map_err(|err| failure(path, err))?;
    let setup = || -> rusqlite::Result<()> {
        configure(&connection)?;
        let mode: String =
            connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode = WAL (the file stayed in {mode} mode)"
            )));
        }
        connection.pragma_update(None, "synchronous", "FULL")
    };
    setup().map_err(|err| failure(path, err))?;
    migrate(&connection).map_err(|err| match err {
        Migration::Sqlite(err) => failure(path, err),
        Migration::TooNew(found) => StoreError::SchemaTooNew {
            found,
            known: latest(),
        },
    })?;
    Ok(connection)
}

/// A symbolic link planted in the place of the database or of its `-wal`
/// or `-shm` file would have SQLite write through it: refused.
fn refuse_links(path: &Path) -> Result<(), StoreError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if std::fs::symlink_metadata(file).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Err(StoreError::Io {
                what: file.display().to_string(),
                source: std::io::Error::other(
                    "a symbolic link is in the store's place; refusing to write through it",
                ),
            });
        }
    }
    Ok(())
}

enum Migration {
    Sqlite(rusqlite::Error),
    TooNew(i32),
}

impl From<rusqlite::Error> for Migration {
    fn from(err: rusqlite::Error) -> Self {
        Migration::Sqlite(err)
    }
}

/// Applies the migrations the file lacks, under the write lock, so that of
/// several processes starting at once one migrates and the others find it
/// done.
fn migrate(connection: &rusqlite::Connection) -> Result<(), Migration> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let applied = (|| {
        let version: i32 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > latest() {
            return Err(Migration::TooNew(version));
        }
        let start = usize::try_from(version).unwrap_or(0);
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
            connection.execute_batch(sql)?;
            connection.pragma_update(
                None,
                "user_version",
                i64::try_from(index + 1).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => Ok(connection.execute_batch("COMMIT")?),
        Err(err) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

/// A reading connection to `path` (the writer has made the file): it may
/// not change anything (`query_only`).
pub fn open_reader(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let connection = rusqlite::Connection::open(path).map_err(|err| failure(path, err))?;
    configure(&connection)
        .and_then(|()| connection.pragma_update(None, "query_only", "ON"))
        .map_err(|err| failure(path, err))?;
    Ok(connection)
}

/// `db status` for the file at `path`, read without changing it: its
/// schema version and what this binary would apply at its next start.
pub fn status(path: &Path) -> Result<String, StoreError> {
    let shown = path.display();
    if !path.exists() {
        return Ok(format!(
            "sqlite:{shown}: no database yet; the first start creates it at schema version {}\n",
            latest()
        ));
    }
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let version = rusqlite::Connection::open_with_flags(path, flags)
        .and_then(|connection| {
            connection.busy_timeout(BUSY_TIMEOUT)?;
            connection.query_row("PRAGMA user_version", [], |row| row.get::<_, i32>(0))
        })
        .map_err(|err| failure(path, err))?;
    let next = match version.cmp(&latest()) {
        std::cmp::Ordering::Equal => "up to date".to_owned(),
        std::cmp::Ordering::Less => {
            format!("the next start applies {} to {}", version + 1, latest())
        }
        std::cmp::Ordering::Greater => format!(
            "newer than this binary knows ({}): upgrade echo-server",
            latest()
        ),
    };
    Ok(format!(
        "sqlite:{shown}: schema version {version}; {next}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page cache is what SQLite holds per connection as users grow:
    /// capped for the writer and the readers alike.
    #[test]
    fn every_connection_caps_its_page_cache() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join(DB_FILE);
        let writer = open_writer(&path).expect("the writer opens");
        let reader = open_reader(&path).expect("a reader opens");
        for connection in [&writer, &reader] {
            let cache: i64 = connection
                .query_row("PRAGMA cache_size", [], |row| row.get(0))
                .expect("cache_size reads");
            assert_eq!(cache, -CACHE_KIB);
        }
    }
}
