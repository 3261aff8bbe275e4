//! `--store URL` (or `--store sqlite`): the same work on SQLite and on
//! PostgreSQL, with one and with two servers on the SQLite file or the
//! database, in one run: resumes (connect +
//! `resume` + one `say`), logins and registrations per second, each from
//! closed-loop workers. Each PostgreSQL configuration gets a scratch
//! database at the URL's server, created here and dropped after.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use anyhow::Context;
use echo_server::store::{PgUrl, StoreLocation};
use serde::Serialize;
use tokio::{net::TcpStream, time::Instant};

use crate::{
    load::{Conn, Handshake, Load, Target, connect_many, handshake_on, ping_pong},
    procs::Proc,
    progress::progress,
    scenarios::{PASSWORD, Plan, login_workers, populate_store, resume_round, token_of},
    spread::{Spread, spread},
};

/// One configuration's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRow {
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Servers sharing the store.
    pub servers: usize,
    pub resumes_per_sec: Spread,
    /// Logins a second from the storm's connections.
    pub logins_per_sec: Spread,
    /// The established sessions' p99 round trip, quiet and during the storm.
    pub p99_quiet_us: Spread,
    pub p99_storm_us: Spread,
    pub registrations_per_sec: Spread,
}

/// Every configuration, and the load that measured them.
#[derive(Debug, Clone, Serialize)]
pub struct StoreTable {
    pub workers: usize,
    pub rows: Vec<StoreRow>,
}

/// Runs the comparison: SQLite with one and two servers on one file, and,
/// when `store` is a PostgreSQL URL, PostgreSQL at its server with one and
/// two servers (`--store sqlite` leaves PostgreSQL out).
pub async fn compare(plan: &Plan, store: &str) -> anyhow::Result<StoreTable> {
    let url = (store != "sqlite" && store != "file").then_some(store);
    let mut configurations = vec![("sqlite", 1), ("sqlite", 2)];
    if url.is_some() {
        configurations.extend([("postgres", 1), ("postgres", 2)]);
    }
    let mut rows = Vec::new();
    for (store, servers) in configurations {
        let scratch = match (store, url) {
            ("postgres", Some(url)) => Some(Scratch::create(url, rows.len()).await?),
            _ => None,
        };
        let dirs: Vec<tempfile::TempDir> = (0..servers)
            .map(|_| tempfile::tempdir())
            .collect::<Result<_, _>>()?;
        let shared = dirs[0].path().join("data");
        let (location, flag) = match &scratch {
            Some(scratch) => (
                StoreLocation::Postgres {
                    url: Box::new(PgUrl::parse(&scratch.url, None).map_err(anyhow::Error::msg)?),
                    options: echo_server::store::PgOptions::default(),
                },
                scratch.url.clone(),
            ),
            None => {
                let file = shared.join(echo_server::store::sqlite::DB_FILE);
                let flag = format!("sqlite:{}", file.display());
                (StoreLocation::Sqlite(file), flag)
            }
        };
        rows.push(measure(plan, store, &dirs, &location, &flag).await?);
        if let Some(scratch) = scratch {
            scratch.drop_database().await?;
        }
    }
    Ok(StoreTable {
        workers: plan.resume_workers,
        rows,
    })
}

async fn measure(
    plan: &Plan,
    store: &str,
    dirs: &[tempfile::TempDir],
    location: &StoreLocation,
    flag: &str,
) -> anyhow::Result<StoreRow> {
    let workers = plan.resume_workers;
    let label = format!("{store} x{}", dirs.len());
    progress(&format!("stores: {label}: creating users"));
    let resumers: Vec<String> = (0..workers).map(|i| format!("r{i}")).collect();
    populate_store(location, &resumers, true).await?;
    let loggers: Vec<String> = (0..plan.storm.max(1))
        .map(|i| format!("s{i}"))
        .chain((0..ESTABLISHED).map(|i| format!("e{i}")))
        .collect();
    populate_store(location, &loggers, false).await?;
    let servers: Vec<Proc> = dirs
        .iter()
        .map(|dir| Proc::spawn(&["serve", "--mode", "auth", "--store", flag], dir.path()))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let mut tokens: Vec<String> = resumers.iter().map(|u| token_of(u)).collect();
    let (mut resumes, mut logins, mut registrations) = (Vec::new(), Vec::new(), Vec::new());
    let (mut quiet, mut stormy) = (Vec::new(), Vec::new());
    for rep in 0..plan.reps {
        progress(&format!("stores: {label}: rep {}/{}", rep + 1, plan.reps));
        // Resumes, workers spread over the servers.
        resumes.push(resume_round(plan, &addrs, &mut tokens).await?);
        let (quiet_p99, storm_p99, logins_per_sec) = storm_round(plan, &addrs).await?;
        quiet.push(quiet_p99);
        stormy.push(storm_p99);
        logins.push(logins_per_sec);
        // Registrations: closed loops for the measured time.
        registrations.push(
            closed_loop(plan, &addrs, |addr, stop, count| {
                register_workers(addr, workers / addrs.len().max(1), rep, stop, count)
            })
            .await?,
        );
    }
    Ok(StoreRow {
        store: store.to_owned(),
        servers: dirs.len(),
        resumes_per_sec: Spread::of(resumes),
        logins_per_sec: Spread::of(logins),
        p99_quiet_us: Spread::of(quiet),
        p99_storm_us: Spread::of(stormy),
        registrations_per_sec: Spread::of(registrations),
    })
}

/// The login storm: established sessions' p99, quiet, then while the
/// storm's connections log in in closed loops on every server; and the
/// storm's logins per second.
async fn storm_round(
    plan: &Plan,
    addrs: &[std::net::SocketAddr],
) -> anyhow::Result<(f64, f64, f64)> {
    let load = Load {
        connections: ESTABLISHED,
        payload: 64,
        depth: 1,
        warmup: plan.warmup,
        duration: plan.duration,
        interval: None,
    };
    let p99 = |m: crate::load::Measured| m.quantile_us(0.99);
    let quiet = p99(ping_pong(established(addrs).await?, Target::Real, load).await?);
    let streams = established(addrs).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let per_server = (plan.storm.max(1) / addrs.len().max(1)).max(1);
    let storm: Vec<_> = addrs
        .iter()
        .flat_map(|addr| login_workers(*addr, per_server, &stop, &count))
        .collect();
    let started = Instant::now();
    let measured = ping_pong(streams, Target::Real, load).await?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in storm {
        worker.await??;
    }
    let logins = count.load(Ordering::Relaxed) as f64 / elapsed;
    Ok((quiet, p99(measured), logins))
}

/// Established sessions ping-ponging during the login storm.
const ESTABLISHED: usize = 16;

/// The established sessions, logged in as `e0`, `e1`, ..., spread over the
/// servers.
async fn established(addrs: &[std::net::SocketAddr]) -> anyhow::Result<Vec<Conn>> {
    let mut streams = Vec::new();
    for (n, addr) in addrs.iter().enumerate() {
        let logins = (0..ESTABLISHED)
            .filter(|i| i % addrs.len() == n)
            .map(|i| Handshake::Login {
                user: format!("e{i}"),
                password: PASSWORD.into(),
            })
            .collect();
        streams.extend(connect_many(*addr, Target::Real, logins, 16, None).await?);
    }
    Ok(streams)
}

type Workers = Vec<tokio::task::JoinHandle<anyhow::Result<()>>>;

/// Starts `start`'s workers on every server, counts what they finish in the
/// measured time, and returns it per second.
async fn closed_loop(
    plan: &Plan,
    addrs: &[std::net::SocketAddr],
    start: impl Fn(std::net::SocketAddr, &Arc<AtomicBool>, &Arc<AtomicU64>) -> Workers,
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = addrs
        .iter()
        .flat_map(|addr| start(*addr, &stop, &count))
        .collect();
    tokio::time::sleep(plan.warmup).await;
    let before = count.load(Ordering::Relaxed);
    tokio::time::sleep(plan.duration).await;
    let done = count.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await??;
    }
    Ok(done as f64 / plan.duration.as_secs_f64())
}

/// `workers` connections registering new users in a closed loop.
fn register_workers(
    addr: std::net::SocketAddr,
    workers: usize,
    rep: usize,
    stop: &Arc<AtomicBool>,
    count: &Arc<AtomicU64>,
) -> Workers {
    (0..workers.max(1))
        .map(|w| {
            let (stop, count) = (Arc::clone(stop), Arc::clone(count));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let user = format!("g{}x{rep}x{w}x{n}", addr.port());
                    let handshake = Handshake::Account {
                        user,
                        password: PASSWORD.into(),
                    };
                    let mut stream = TcpStream::connect(addr).await?;
                    handshake_on(&mut stream, &handshake).await?;
                    count.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect()
}

/// A database made for one configuration and dropped after it.
struct Scratch {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl Scratch {
    async fn create(url: &str, n: usize) -> anyhow::Result<Self> {
        let parsed =
            PgUrl::parse(url, std::env::var("PGPASSWORD").ok()).map_err(anyhow::Error::msg)?;
        let (admin, connection) = parsed
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {parsed}"))?;
        tokio::spawn(connection);
        let name = format!("echo_bench_{}_{n}", std::process::id());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("cannot create a scratch database (the URL's user needs CREATEDB)")?;
        Ok(Self {
            admin,
            url: with_database(url, &name),
            name,
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .context("cannot drop the scratch database")
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Prints the comparison.
pub fn print(table: &StoreTable) {
    println!(
        "\nStores: closed loops of {} workers (resume: connect + resume + one say; register: connect + hello + register); login storm: {ESTABLISHED} established sessions' p99 quiet and while the storm's connections log in; median (min-max)",
        table.workers
    );
    println!(
        "{:<9} {:>7} | {:>20} | {:>20} {:>20} {:>20} | {:>20}",
        "store",
        "servers",
        "resumes/s",
        "storm logins/s",
        "p99 quiet us",
        "p99 storm us",
        "registrations/s"
    );
    for row in &table.rows {
        println!(
            "{:<9} {:>7} | {:>20} | {:>20} {:>20} {:>20} | {:>20}",
            row.store,
            row.servers,
            spread(&row.resumes_per_sec, 0),
            spread(&row.logins_per_sec, 0),
            spread(&row.p99_quiet_us, 0),
            spread(&row.p99_storm_us, 0),
            spread(&row.registrations_per_sec, 0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_scratch_database_replaces_the_urls_own() {
        assert_eq!(
            with_database("postgres://a:b@h:1/echo?sslmode=disable", "x"),
            "postgres://a:b@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://a@h", "x"), "postgres://a@h/x");
    }
}
