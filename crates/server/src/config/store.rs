//! Where users and sessions live: [`Storage`].

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, FileConfig, RunArgs, at_least_1, pick, secs};
use crate::store::{
    PgUrl, StoreLocation,
    postgres::{DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, PgOptions},
    sqlite::DB_FILE,
};

/// The store: SQLite (by default `DATA_DIR/echo.db`), or a PostgreSQL
/// database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Directory of the SQLite database by default (and of the TLS pair,
    /// the control sockets).
    pub data_dir: PathBuf,
    /// The PostgreSQL store (`--store URL`); `None`: SQLite.
    pub url: Option<PgUrl>,
    /// The SQLite database's file (`--store sqlite:PATH`); `None`:
    /// `DATA_DIR/echo.db`.
    pub sqlite: Option<PathBuf>,
    /// Connections at most in the PostgreSQL store's pool
    /// (`store_pool_size`).
    pub pool_size: usize,
    /// Longest one call to the PostgreSQL store may take; past it the call
    /// fails as `unavailable` and the store counts as down
    /// (`store_timeout`).
    pub timeout: Duration,
}

/// What `--store` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// SQLite: `sqlite` (in the data directory), `sqlite:PATH`; `file`, the
    /// name of the journal store SQLite replaced, means `sqlite` (its
    /// journal is imported at the first start).
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL URL.
    Postgres(Box<PgUrl>),
}

/// Parses `--store`: `sqlite`, `sqlite:PATH`, `file` (as `sqlite`) or a
/// PostgreSQL URL (its password from `pg_password` when it has none).
pub fn parse_store(text: &str, pg_password: Option<String>) -> Result<StoreChoice, String> {
    match text {
        "sqlite" | "file" => Ok(StoreChoice::Sqlite(None)),
        _ => match text.strip_prefix("sqlite:") {
            Some("") => Err(
                "sqlite: needs a file after the colon, like sqlite:/var/lib/echo-server/echo.db"
                    .into(),
            ),
            Some(path) => Ok(StoreChoice::Sqlite(Some(PathBuf::from(path)))),
            None => PgUrl::parse(text, pg_password).map(|url| StoreChoice::Postgres(Box::new(url))),
        },
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            url: None,
            sqlite: None,
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Storage {
    /// From the flags, else the file, else the defaults; a PostgreSQL URL
    /// takes its password from `PGPASSWORD` when it has none.
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        let choice = match args.store.as_deref().or(file.store.as_deref()) {
            None => StoreChoice::Sqlite(None),
            Some(text) => parse_store(text, std::env::var("PGPASSWORD").ok())
                .map_err(|err| ConfigError::Invalid(format!("store: {err}")))?,
        };
        let (url, sqlite) = match choice {
            StoreChoice::Sqlite(path) => (None, path),
            StoreChoice::Postgres(url) => (Some(*url), None),
        };
        Ok(Self {
            data_dir: pick(args.data_dir.clone(), file.data_dir.clone(), d.data_dir),
            url,
            sqlite,
            pool_size: at_least_1(
                "store_pool_size",
                file.store_pool_size.unwrap_or(d.pool_size),
            )?,
            timeout: at_least_1(
                "store_timeout",
                secs(args.store_timeout, file.store_timeout, d.timeout),
            )?,
        })
    }

    /// Which store to open.
    pub fn location(&self) -> StoreLocation {
        match &self.url {
            Some(url) => StoreLocation::Postgres {
                url: Box::new(url.clone()),
                options: PgOptions {
                    pool_size: self.pool_size,
                    timeout: self.timeout,
                },
            },
            None => StoreLocation::Sqlite(
                self.sqlite
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join(DB_FILE)),
            ),
        }
    }
}
