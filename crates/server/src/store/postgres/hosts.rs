//! The hosts of a URL tried one at a time, each within a limit of its own.
//! tokio-postgres tries several hosts itself, but bounds only each one's
//! TCP connect: a host that accepts the connection and then never answers
//! (a primary frozen or half cut off, a stalled relay) holds the whole
//! attempt past any deadline, and the promoted standby after it is never
//! reached. Here the whole handshake with one host, the
//! `target_session_attrs=read-write` check included, has its own limit.
//!
//! Each attempt starts from the host that answered last (shared by the
//! pool and the listener): once any connection has found the new primary,
//! the others go straight to it, even when their callers' deadlines are
//! too short to wait out a hung host first; and a server does not go back
//! to an old primary that comes back writable while the new one answers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::{
    Client, Config, Connection, Socket,
    config::Host,
    tls::{MakeTlsConnect, TlsConnect},
};

/// A host gets at least this long, however many there are.
const MIN_PER_HOST: Duration = Duration::from_secs(1);

/// The hosts of one URL, one configuration each, in the URL's order, and
/// which answered last; clones share it.
#[derive(Clone)]
pub(super) struct Hosts {
    each: Arc<[Config]>,
    last: Arc<AtomicUsize>,
}

impl Hosts {
    /// The hosts of `all`.
    pub(super) fn of(all: &Config) -> Self {
        Self {
            each: each_host(all).into(),
            last: Arc::default(),
        }
    }

    /// How many.
    pub(super) fn len(&self) -> usize {
        self.each.len()
    }

    /// The order to try them in: from the one that answered last, round.
    fn order(&self) -> impl Iterator<Item = usize> {
        let count = self.each.len();
        let first = self
            .last
            .load(Ordering::Relaxed)
            .min(count.saturating_sub(1));
        (first..count).chain(0..first)
    }

    /// A connection to the first host, from the one that answered last,
    /// that completes its handshake (and, with read-write asked for, is
    /// writable) within `per_host`, named `application_name` if given;
    /// else the last host's error.
    pub(super) async fn connect<T>(
        &self,
        tls: &T,
        per_host: Duration,
        application_name: Option<&str>,
    ) -> Result<(Client, Connection<Socket, T::Stream>), tokio_postgres::Error>
    where
        T: MakeTlsConnect<Socket> + Clone,
    {
        let mut last = None;
        for i in self.order() {
            let mut config = self.each[i].clone();
            if let Some(name) = application_name {
                config.application_name(name);
            }
            match tokio::time::timeout(per_host, config.connect(tls.clone())).await {
                Ok(Ok(connected)) => {
                    self.last.store(i, Ordering::Relaxed);
                    return Ok(connected);
                }
                Ok(Err(err)) => last = Some(err),
                // tokio-postgres's own error for a host that did not
                // answer in time (what its `connect_timeout` gives): the
                // pool's `Connect` can return no other kind.
                Err(_) => last = Some(tokio_postgres::Error::__private_api_timeout()),
            }
        }
        Err(last.unwrap_or_else(tokio_postgres::Error::__private_api_timeout))
    }
}

/// One configuration per host of `all` (the same user, database and
/// settings), in order; one port for several hosts is each host's. With
/// no host at all, `all` itself, for tokio-postgres to say what is missing.
fn each_host(all: &Config) -> Vec<Config> {
    let count = all.get_hosts().len().max(all.get_hostaddrs().len());
    match count {
        0 => vec![all.clone()],
        _ => (0..count).map(|i| single_host(all, i)).collect(),
    }
}

fn single_host(all: &Config, i: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = all.get_user() {
        one.user(user);
    }
    if let Some(password) = all.get_password() {
        one.password(password);
    }
    if let Some(dbname) = all.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = all.get_options() {
        one.options(options);
    }
    if let Some(name) = all.get_application_name() {
        one.application_name(name);
    }
    if let Some(limit) = all.get_connect_timeout() {
        one.connect_timeout(*limit);
    }
    if let Some(limit) = all.get_tcp_user_timeout() {
        one.tcp_user_timeout(*limit);
    }
    if let Some(interval) = all.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = all.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.ssl_mode(all.get_ssl_mode())
        .ssl_negotiation(all.get_ssl_negotiation())
        .channel_binding(all.get_channel_binding())
        .target_session_attrs(all.get_target_session_attrs())
        .keepalives(all.get_keepalives())
        .keepalives_idle(all.get_keepalives_idle());
    match all.get_hosts().get(i) {
        Some(Host::Tcp(name)) => one.host(name),
        Some(Host::Unix(path)) => one.host_path(path),
        None => &mut one,
    };
    if let Some(addr) = all.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    let ports = all.get_ports();
    if let Some(port) = ports.get(i).or(ports.first()) {
        one.port(*port);
    }
    one
}

/// Each host's share of `limit`, at least [`MIN_PER_HOST`].
pub(super) fn share(hosts: usize, limit: Duration) -> Duration {
    (limit / u32::try_from(hosts.max(1)).unwrap_or(u32::MAX)).max(MIN_PER_HOST)
}

/// The pool's way to connect: [`Hosts::connect`], `per_host` each.
pub(super) struct HostsInTurn<T> {
    pub(super) hosts: Hosts,
    pub(super) tls: T,
    pub(super) per_host: Duration,
}

impl<T> Connect for HostsInTurn<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        _all_hosts: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        Box::pin(async move {
            let connecting = self.hosts.connect(&self.tls, self.per_host, None);
            let (client, connection) = connecting.await?;
            let driving = tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "pooled database connection ended");
                }
            });
            Ok((client, driving))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn each_host_keeps_the_rest_of_the_settings() {
        let all = Config::from_str(
            "host=h1,h2 port=5432,5433 user=ann password=pw-secret dbname=echo \
             target_session_attrs=read-write application_name=probe",
        )
        .unwrap();
        let hosts = each_host(&all);
        assert_eq!(hosts.len(), 2);
        for (one, (name, port)) in hosts.iter().zip([("h1", 5432), ("h2", 5433)]) {
            assert_eq!(one.get_hosts(), [Host::Tcp(name.into())]);
            assert_eq!(one.get_ports(), [port]);
            assert_eq!(one.get_user(), Some("ann"));
            assert_eq!(one.get_password(), Some(&b"pw-secret"[..]));
            assert_eq!(one.get_dbname(), Some("echo"));
            assert_eq!(one.get_application_name(), Some("probe"));
            assert_eq!(
                one.get_target_session_attrs(),
                tokio_postgres::config::TargetSessionAttrs::ReadWrite
            );
        }
        let shared = Config::from_str("host=h1,h2 port=6000 user=ann").unwrap();
        let ports: Vec<_> = each_host(&shared)
            .iter()
            .map(|one| one.get_ports().to_vec())
            .collect();
        assert_eq!(ports, [[6000], [6000]]);
        let none = Config::from_str("user=ann").unwrap();
        assert_eq!(
            each_host(&none).len(),
            1,
            "tokio-postgres says what is missing"
        );
    }

    #[test]
    fn every_host_gets_a_share_of_at_least_a_second() {
        assert_eq!(
            share(2, Duration::from_secs(5)),
            Duration::from_millis(2500)
        );
        assert_eq!(share(10, Duration::from_secs(5)), MIN_PER_HOST);
        assert_eq!(share(0, Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn hosts_are_tried_from_the_one_that_answered_last() {
        let hosts = Hosts::of(&Config::from_str("host=a,b,c user=ann").unwrap());
        assert_eq!(hosts.order().collect::<Vec<_>>(), [0, 1, 2]);
        hosts.clone().last.store(1, Ordering::Relaxed);
        assert_eq!(hosts.order().collect::<Vec<_>>(), [1, 2, 0]);
    }
}
