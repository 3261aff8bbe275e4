//! The database schema: versioned SQL files (`crates/server/migrations/postgres/`),
//! applied at start in one transaction under an advisory lock, so that of
//! several servers starting at once exactly one applies each version; what
//! was applied is in `schema_migrations`.

use std::fmt::Write as _;

use tokio_postgres::Client;

use super::{
    PgUrl,
    connect::{CONNECT_TIMEOUT, connect, describe},
    db_error,
};
use crate::store::StoreError;

/// Every version this binary knows, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "sweep",
        sql: include_str!("../../../migrations/postgres/0002_sweep.sql"),
    },
    Migration {
        version: 3,
        name: "sources",
        sql: include_str!("../../../migrations/postgres/0003_sources.sql"),
    },
    Migration {
        version: 4,
        name: "end_causes",
        sql: include_str!("../../../migrations/postgres/0004_end_causes.sql"),
    },
];

/// Held (for the transaction) by whoever applies migrations.
const MIGRATION_LOCK: i64 = 0x6563_686f_2d73_7276; // "echo-srv"

struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// One row of `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The version.
    pub version: i32,
    /// Its name (the SQL file's).
    pub name: String,
    /// When it was applied, as PostgreSQL prints it.
    pub applied_at: String,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())";

/// The newest version this binary knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the schema up to date; refuses a database newer than this binary.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    tx.batch_execute(CREATE_TABLE).await.map_err(db_error)?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    check_not_newer(&applied)?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await.map_err(|err| {
            StoreError::Database(format!(
                "schema version {} ({}) failed: {}",
                migration.version,
                migration.name,
                describe(&err)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(db_error)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "database schema applied"
        );
    }
    tx.commit().await.map_err(db_error)
}

fn check_not_newer(applied: &[i32]) -> Result<(), StoreError> {
    match applied.iter().max() {
        Some(&found) if found > latest() => Err(StoreError::SchemaTooNew {
            found,
            known: latest(),
        }),
        _ => Ok(()),
    }
}

/// The versions applied to the database at `url`, without changing it.
pub async fn applied(url: &PgUrl) -> Result<Vec<Applied>, StoreError> {
    let (client, _notes) = connect(url, CONNECT_TIMEOUT, None).await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(db_error)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, applied_at::text FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(db_error)?;
    Ok(rows
        .iter()
        .map(|row| Applied {
            version: row.get(0),
            name: row.get(1),
            applied_at: row.get(2),
        })
        .collect())
}

/// `echo-server db status`: what is applied, what this binary would apply.
pub fn report(url: &PgUrl, applied: &[Applied]) -> String {
    let mut out = format!("database {url}\n");
    if applied.is_empty() {
        out.push_str("no schema yet: the first server to start applies it\n");
    } else {
        let _ = writeln!(out, "{:<8} {:<20} applied", "version", "name");
        for row in applied {
            let _ = writeln!(
                out,
                "{:<8} {:<20} {}",
                row.version, row.name, row.applied_at
            );
        }
    }
    let versions: Vec<i32> = applied.iter().map(|a| a.version).collect();
    match check_not_newer(&versions) {
        Err(err) => {
            let _ = writeln!(out, "{err}");
        }
        Ok(()) => {
            let pending: Vec<String> = MIGRATIONS
                .iter()
                .filter(|m| !versions.contains(&m.version))
                .map(|m| format!("{} ({})", m.version, m.name))
                .collect();
            if pending.is_empty() {
                let _ = writeln!(out, "up to date (version {})", latest());
            } else {
                let _ = writeln!(
                    out,
                    "pending, applied at the next server start: {}",
                    pending.join(", ")
                );
            }
        }
    }
    out
}
