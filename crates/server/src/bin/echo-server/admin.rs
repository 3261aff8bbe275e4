//! `echo-server user …`, `session …`, `ident …`, `clients`, `kick`, `reload`, `upgrade` (and `tls
//! fingerprint`, which only reads the certificate, and `db status`): the request built
//! from the command line, carried out on the store directly when no server
//! holds it, or sent to the running server's control socket.

use std::io::{self, IsTerminal};

use anyhow::Context;
use clap::Subcommand;
use echo_proto::Secret;
use echo_server::{
    ServerConfig, ServerTls,
    clock::{Clock, SystemClock},
    config::RunArgs,
    control::{self, ControlRequest},
    store::{
        SqliteStore, StoreLocation,
        postgres::{replication, schema},
    },
};

/// Administration: on the store directly, or through a running server.
#[derive(Debug, Subcommand)]
pub(crate) enum Admin {
    /// Manage users (passwords are read from a hidden prompt, or from the
    /// first line of standard input when it is not a terminal)
    #[command(subcommand)]
    User(UserCommand),
    /// Manage session tokens
    #[command(subcommand)]
    Session(SessionCommand),
    /// Names known by address (identification mode; in auth mode, the user
    /// offered to an address)
    #[command(subcommand)]
    Ident(IdentCommand),
    /// List the live connections of the running server (id, peer, user,
    /// state, connected since, messages served)
    Clients {
        /// One JSON array, for scripts
        #[arg(long)]
        json: bool,
    },
    /// End live connections of the running server with `bye {kicked}`
    Kick {
        /// The connection id (as in `clients` and the log)
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        /// Every connection of this user
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Replace the running server (the one --port names, when several run)
    /// by a new process of the binary at its path, without closing the
    /// port: its clients are told `bye {restart}` and resume on the new one
    Upgrade,
    /// Make the running server read its config file again and apply it
    /// without dropping anyone (as SIGHUP does): limits, timeouts, the log
    /// level, the PROXY balancers, the TLS pair. Prints what changed and
    /// what needs a restart; a file with an error changes nothing and the
    /// command fails
    Reload,
    /// The server's TLS key
    #[command(subcommand)]
    Tls(TlsCommand),
    /// The store's schema: SQLite's file, or PostgreSQL's database (with
    /// --store postgres://...)
    #[command(subcommand)]
    Db(DbCommand),
    /// The store's data
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Import the journal store of an older release (users, password
    /// hashes, sessions, identities) into the SQLite store, then rename it
    /// FILE.imported; a server does this by itself at its first start when
    /// it finds DATA_DIR/store.journal and no data in its database
    ImportJournal { file: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Show the schema versions applied to the database, and any this
    /// binary would apply at its next start; for PostgreSQL, also its
    /// replication (whether a failover could lose an acknowledged change)
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Print the fingerprint of the server's TLS key (SHA256:..., as
    /// OpenSSH prints host keys), to check the one a client shows
    Fingerprint,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user
    Add { name: String },
    /// List the users
    List,
    /// Remove a user and their sessions
    Remove { name: String },
    /// Change a user's password (revokes their sessions)
    Passwd { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List a user's live sessions (id, started, last used, expires)
    List { user: String },
    /// Revoke a user's sessions: all of them, or the one --id names
    Revoke {
        user: String,
        /// Only this session (its id as `session list` shows it)
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IdentCommand {
    /// List the addresses with a known name (address, name, last seen)
    List,
    /// Forget an address's name: its next visit is greeted as new
    Forget { address: String },
}

pub(crate) fn administer(args: &RunArgs, command: Admin) -> anyhow::Result<()> {
    let config = crate::setup::load_config(args, |_| Ok(None))?;
    let request = match command {
        Admin::Tls(TlsCommand::Fingerprint) => {
            let tls = ServerTls::open(&config).context(
                "cannot read the TLS certificate and key (without --tls-cert, a server started with --tls makes them in DATA_DIR/tls/)",
            )?;
            println!("{}", tls.fingerprint());
            return Ok(());
        }
        Admin::Db(DbCommand::Status) => return database_status(&config),
        Admin::Store(StoreCommand::ImportJournal { file }) => {
            return import_journal(&config, &file);
        }
        Admin::User(UserCommand::Add { name }) => ControlRequest::UserAdd {
            name,
            password: read_password(true)?,
        },
        Admin::User(UserCommand::List) => ControlRequest::UserList,
        Admin::User(UserCommand::Remove { name }) => ControlRequest::UserRemove { name },
        Admin::User(UserCommand::Passwd { name }) => ControlRequest::UserPasswd {
            name,
            password: read_password(true)?,
        },
        Admin::Session(SessionCommand::List { user }) => ControlRequest::SessionList { user },
        Admin::Session(SessionCommand::Revoke { user, id }) => {
            ControlRequest::SessionRevoke { user, id }
        }
        Admin::Ident(IdentCommand::List) => ControlRequest::IdentList,
        Admin::Ident(IdentCommand::Forget { address }) => ControlRequest::IdentForget { address },
        Admin::Clients { json } => ControlRequest::Clients { json },
        Admin::Kick { id, user } => ControlRequest::Kick { id, user },
        Admin::Upgrade => ControlRequest::Upgrade,
        Admin::Reload => ControlRequest::Reload,
    };
    let output = carry_out(&config, args.port, request)?;
    print!("{output}");
    if !output.is_empty() && !output.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// Carries `request` out: `clients` and `kick` through the control sockets
/// of the live servers of the data directory (every one, or the one on
/// `port`), whatever their store, without opening it; the store's commands
/// on the store directly when no server holds it, else through the control
/// socket of the server that does. What to print.
fn carry_out(
    config: &ServerConfig,
    port: Option<u16>,
    request: ControlRequest,
) -> anyhow::Result<String> {
    let dir = &config.store.data_dir;
    // `upgrade` is a running server's business only.
    if request.reaches_every_server() || matches!(request, ControlRequest::Upgrade) {
        return control::request(dir, port, &request).map_err(anyhow::Error::msg);
    }
    let runtime = crate::setup::small_runtime()?;
    match runtime.block_on(crate::setup::open_store(config)) {
        // SQLite's file or PostgreSQL's database, which any number of
        // servers use while this changes it (they hear of ended sessions
        // from the store, and end their connections).
        Ok(store) => {
            let now = SystemClock.now();
            let min = config.auth.min_password_length;
            runtime.block_on(control::run(&store, request, min, now, None))
        }
        Err(err) => return Err(err.into()),
    }
    .map_err(anyhow::Error::msg)
}

/// `db status`: the schema of SQLite's file or of PostgreSQL's database
/// (and, for PostgreSQL, its replication: could a failover lose an
/// acknowledged change?).
fn database_status(config: &ServerConfig) -> anyhow::Result<()> {
    match config.store_location() {
        StoreLocation::Sqlite(path) => print!("{}", echo_server::store::sqlite::status(&path)?),
        StoreLocation::Postgres { url, .. } => {
            let runtime = crate::setup::small_runtime()?;
            let applied = runtime.block_on(schema::applied(&url))?;
            print!("{}", schema::report(&url, &applied));
            let replication = runtime.block_on(replication::status(&url))?;
            print!("{}", replication.report());
        }
    }
    Ok(())
}

/// `store import-journal FILE`: into the SQLite store, with the counts.
fn import_journal(config: &ServerConfig, journal: &std::path::Path) -> anyhow::Result<()> {
    let StoreLocation::Sqlite(path) = config.store_location() else {
        anyhow::bail!(
            "store import-journal imports into the SQLite store: leave out --store, or give --store sqlite:PATH"
        );
    };
    let imported = crate::setup::small_runtime()?.block_on(async {
        let store = SqliteStore::open(&path, config.lifetimes()).await?;
        store.import_journal(journal).await
    })?;
    println!(
        "imported {}: {} users, {} sessions ({} tokens), {} identities, {} familiar sources; renamed it {}",
        journal.display(),
        imported.users,
        imported.sessions,
        imported.tokens,
        imported.identities,
        imported.familiar,
        echo_server::store::sqlite::imported_name(journal).display()
    );
    Ok(())
}

/// A password from a hidden prompt (asked twice when `confirm`), or the
/// first line of standard input when it is not a terminal. Never a flag:
/// flags show up in `ps` and shell history.
fn read_password(confirm: bool) -> Result<Secret, echo_server::AdminError> {
    let refused = |err: io::Error| {
        echo_server::AdminError::Refused(format!("cannot read the password: {err}"))
    };
    if io::stdin().is_terminal() {
        return echo_prompt::hidden("Password", confirm)
            .map(Secret::new)
            .map_err(refused);
    }
    let mut line = String::new();
    io::stdin().read_line(&mut line).map_err(refused)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(echo_server::AdminError::Refused(
            "no password on standard input".into(),
        ));
    }
    Ok(Secret::new(password))
}
