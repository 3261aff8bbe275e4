//! Where users and sessions live: [`Storage`].

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, FileConfig, RunArgs, at_least_1, pick, secs};
use crate::store::{
    PgUrl, StoreLocation,
    postgres::{DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, PgOptions},
    sqlite::DB_FILE,
};

/// The store: an embedded one in `data_dir`, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Directory of the embedded store (and the TLS pair, the control
    /// socket).
    pub data_dir: PathBuf,
    /// The PostgreSQL store (`--store URL`); `None`: the embedded store.
    pub url: Option<PgUrl>,
    /// Which embedded store, when there is no `url`.
    pub embedded: Embedded,
    /// Connections at most in the PostgreSQL store's pool
    /// (`store_pool_size`).
    pub pool_size: usize,
    /// Longest one call to the PostgreSQL store may take; past it the call
    /// fails as `unavailable` and the store counts as down
    /// (`store_timeout`).
    pub timeout: Duration,
}

/// The embedded stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    /// The journal in `data_dir` (`--store file`).
    File,
    /// A SQLite database (`--store sqlite`, `sqlite:PATH`): `DATA_DIR/echo.db`
    /// unless a path is given.
    Sqlite(Option<PathBuf>),
}

/// What `--store` names: an embedded store, or a PostgreSQL URL (its
/// password from `pg_password` when it has none).
pub fn parse_store(
    text: &str,
    pg_password: Option<String>,
) -> Result<(Option<PgUrl>, Embedded), String> {
    match text {
        "file" => Ok((None, Embedded::File)),
        "sqlite" => Ok((None, Embedded::Sqlite(None))),
        _ => match text.strip_prefix("sqlite:") {
            Some("") => Err(
                "sqlite: needs a path after the colon, like sqlite:/var/lib/echo/echo.db".into(),
            ),
            Some(path) => Ok((None, Embedded::Sqlite(Some(PathBuf::from(path))))),
            None => PgUrl::parse(text, pg_password).map(|url| (Some(url), Embedded::File)),
        },
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            url: None,
            embedded: Embedded::File,
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
        let (url, embedded) = match args.store.as_deref().or(file.store.as_deref()) {
            None => (None, d.embedded),
            Some(text) => parse_store(text, std::env::var("PGPASSWORD").ok())
                .map_err(|err| ConfigError::Invalid(format!("store: {err}")))?,
        };
        Ok(Self {
            data_dir: pick(args.data_dir.clone(), file.data_dir.clone(), d.data_dir),
            url,
            embedded,
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
            None => match &self.embedded {
                Embedded::File => StoreLocation::File(self.data_dir.clone()),
                Embedded::Sqlite(path) => StoreLocation::Sqlite(
                    path.clone().unwrap_or_else(|| self.data_dir.join(DB_FILE)),
                ),
            },
        }
    }
}
