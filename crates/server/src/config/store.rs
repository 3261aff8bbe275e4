//! Where users and sessions live: [`Storage`].

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, FileConfig, RunArgs, at_least_1, pick, secs};
use crate::store::{
    PgUrl, StoreLocation,
    postgres::{DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, PgOptions},
};

/// The store: the file store in `data_dir`, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Directory of the file store (and the TLS pair, the control socket).
    pub data_dir: PathBuf,
    /// The PostgreSQL store (`--store URL`); `None`: the file store in
    /// `data_dir`.
    pub url: Option<PgUrl>,
    /// Connections at most in the PostgreSQL store's pool
    /// (`store_pool_size`).
    pub pool_size: usize,
    /// Longest one call to the PostgreSQL store may take; past it the call
    /// fails as `unavailable` and the store counts as down
    /// (`store_timeout`).
    pub timeout: Duration,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            url: None,
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
        let url = match args.store.as_deref().or(file.store.as_deref()) {
            None | Some("file") => None,
            Some(url) => Some(
                PgUrl::parse(url, std::env::var("PGPASSWORD").ok())
                    .map_err(|err| ConfigError::Invalid(format!("store: {err}")))?,
            ),
        };
        Ok(Self {
            data_dir: pick(args.data_dir.clone(), file.data_dir.clone(), d.data_dir),
            url,
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
            None => StoreLocation::File(self.data_dir.clone()),
        }
    }
}
