//! `--store postgres://USER[:PASSWORD]@HOST:PORT/DB?sslmode=...`: the URL
//! parsed into a connection configuration, shown everywhere without its
//! password, and the TLS connector `sslmode` asks for.
//!
//! Several hosts, as libpq and tokio-postgres take them
//! (`postgres://u@h1:5432,h2:5433/echo`, or the key-value form
//! `host=h1,h2 port=5432,5433 user=u dbname=echo`), are tried in order on
//! every new connection. The store writes, so it always asks for
//! `target_session_attrs=read-write`: a host that is a standby (or
//! otherwise read-only) is passed over for the next, and after a failover
//! the promoted standby is found by the same search.

use std::{fmt, path::PathBuf, str::FromStr};

use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A PostgreSQL URL. `Debug` and `Display` show it without its password,
/// so it may be logged; the password (from the URL or `PGPASSWORD`) lives
/// only in the parsed [`tokio_postgres::Config`].
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
    /// `sslrootcert=FILE`: a CA to trust for the database's certificate
    /// besides the system's roots.
    root_cert: Option<PathBuf>,
    shown: String,
}

/// Our own query parameter (libpq's name), taken out before the rest goes
/// to tokio-postgres.
const ROOT_CERT_PARAM: &str = "sslrootcert";

impl PgUrl {
    /// Parses `url` (a `postgres://` URL or libpq's `key=value` form); a
    /// missing password is taken from `pg_password` (the caller passes
    /// `PGPASSWORD`). The error never repeats the URL.
    pub fn parse(url: &str, pg_password: Option<String>) -> Result<Self, String> {
        let (url, root_cert) = if url.starts_with("postgres://") || url.starts_with("postgresql://")
        {
            without_root_cert_param(url)
        } else if is_key_value(url) {
            without_root_cert_key(url)
        } else {
            return Err(
                "a PostgreSQL store is a URL starting postgres:// or postgresql:// \
                 (or libpq's key=value form: host=H1,H2 port=P1,P2 user=U dbname=DB)"
                    .into(),
            );
        };
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|err| format!("invalid PostgreSQL URL: {err}"))?;
        // The store writes: a read-only host (a standby) is never used.
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        if config.get_password().is_none()
            && let Some(password) = pg_password.filter(|p| !p.is_empty())
        {
            config.password(password);
        }
        if config.get_user().is_none() {
            return Err(
                "the PostgreSQL URL names no user (postgres://USER@HOST/DB, or user=USER)".into(),
            );
        }
        let shown = show(&config);
        Ok(Self {
            config,
            root_cert,
            shown,
        })
    }

    /// The connection configuration, password included.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector for `sslmode` other than `disable`: the system's
    /// roots and `sslrootcert`, with the host name checked. Unlike libpq's
    /// `require`, the certificate is always verified.
    pub fn tls(&self) -> Result<Option<MakeRustlsConnect>, String> {
        if self.config.get_ssl_mode() == SslMode::Disable {
            return Ok(None);
        }
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(file) = &self.root_cert {
            let pem = std::fs::read(file)
                .map_err(|err| format!("cannot read sslrootcert {}: {err}", file.display()))?;
            let shown = file.display().to_string();
            for cert in echo_tls::chain_from_pem(&pem, &shown).map_err(|err| err.to_string())? {
                roots
                    .add(cert)
                    .map_err(|err| format!("sslrootcert {}: {err}", file.display()))?;
            }
        }
        let config = ClientConfig::builder_with_provider(echo_tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS to the database: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// A URL's query without our `sslrootcert`, and that file.
fn without_root_cert_param(url: &str) -> (String, Option<PathBuf>) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root_cert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some((ROOT_CERT_PARAM, file)) => root_cert = Some(PathBuf::from(file)),
            _ => rest.push(pair),
        }
    }
    match rest.is_empty() {
        true => (base.to_owned(), root_cert),
        false => (format!("{base}?{}", rest.join("&")), root_cert),
    }
}

/// Whether `text` is libpq's `key=value ...` form: it starts with a key.
fn is_key_value(text: &str) -> bool {
    text.split_once('=').is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// The key-value form without our `sslrootcert=FILE` (a file without
/// spaces), and that file.
fn without_root_cert_key(text: &str) -> (String, Option<PathBuf>) {
    let prefix = format!("{ROOT_CERT_PARAM}=");
    let mut root_cert = None;
    let mut rest = Vec::new();
    for word in text.split_ascii_whitespace() {
        match word.strip_prefix(&prefix) {
            Some(file) => root_cert = Some(PathBuf::from(file)),
            None => rest.push(word),
        }
    }
    match root_cert {
        Some(_) => (rest.join(" "), root_cert),
        None => (text.to_owned(), None),
    }
}

/// `postgres://USER@HOST:PORT,HOST:PORT/DB`, never the password. One port
/// given for several hosts is every host's, as libpq has it.
fn show(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port_of = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| (host, port_of(i)))
        .map(|(host, port)| match host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let mode = match config.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    };
    format!(
        "postgres://{}@{}/{}?sslmode={mode}",
        config.get_user().unwrap_or_default(),
        hosts.join(","),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default(),
    )
}

/// `text` with the password of any `scheme://user:password@` in it replaced
/// by `***` (for messages that may quote a URL, such as a config file's line).
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '/')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({:?})", self.shown)
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown
            && self.root_cert == other.root_cert
            && self.config.get_password() == other.config.get_password()
    }
}

impl Eq for PgUrl {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url = PgUrl::parse(
            "postgresql://ann:hunter2-secret@db.example:6543/echo?sslmode=require",
            None,
        )
        .unwrap();
        let shown = format!("{url} {url:?} {:?}", url.config());
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert_eq!(
            url.to_string(),
            "postgres://ann@db.example:6543/echo?sslmode=require"
        );
        assert_eq!(url.config().get_password(), Some(&b"hunter2-secret"[..]));
    }

    #[test]
    fn passwords_in_quoted_urls_are_redacted() {
        let text = "line 3: store = \"postgres://ann:s3cret@db:5432/echo\" oops; http://h/x";
        let redacted = redact_passwords(text);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(
            redacted.contains("postgres://ann:***@db:5432/echo"),
            "{redacted}"
        );
        assert!(redacted.ends_with("http://h/x"));
    }

    #[test]
    fn pgpassword_fills_a_missing_password_only() {
        let url = PgUrl::parse("postgres://ann@localhost/echo", Some("from-env".into())).unwrap();
        assert_eq!(url.config().get_password(), Some(&b"from-env"[..]));
        let url = PgUrl::parse("postgres://ann:inline@localhost/echo", Some("x".into())).unwrap();
        assert_eq!(url.config().get_password(), Some(&b"inline"[..]));
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "mysql://ann:pw-secret@h/db",
            "postgres://ann:pw-secret@h/db?sslmode=sometimes",
            "postgres://ann:pw-secret@h/db?colour=blue",
        ] {
            let err = PgUrl::parse(url, None).unwrap_err();
            assert!(!err.contains("pw-secret"), "{err}");
        }
        assert!(PgUrl::parse("postgres://h/db", None).is_err());
    }

    #[test]
    fn sslrootcert_is_ours_and_sslmode_picks_the_connector() {
        let url = PgUrl::parse("postgres://ann@h/db?sslmode=disable", None).unwrap();
        assert!(url.tls().unwrap().is_none());
        let url = PgUrl::parse(
            "postgres://ann@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem",
            None,
        )
        .unwrap();
        let Err(err) = url.tls() else {
            panic!("a missing sslrootcert was accepted")
        };
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn several_hosts_are_kept_in_order_and_every_connection_asks_for_read_write() {
        let forms = [
            "postgres://ann@h1:5432,h2:5433/echo?target_session_attrs=read-write&sslmode=disable",
            "postgres://ann@h1:5432,h2:5433/echo?sslmode=disable",
            "host=h1,h2 port=5432,5433 user=ann dbname=echo sslmode=disable",
            "host=h1,h2 port=5432,5433 user=ann dbname=echo sslmode=disable target_session_attrs=any",
        ];
        for form in forms {
            let url = PgUrl::parse(form, None).unwrap();
            let hosts = url.config().get_hosts();
            assert_eq!(
                hosts,
                [Host::Tcp("h1".into()), Host::Tcp("h2".into())],
                "{form}"
            );
            assert_eq!(url.config().get_ports(), [5432, 5433], "{form}");
            assert_eq!(
                url.config().get_target_session_attrs(),
                TargetSessionAttrs::ReadWrite,
                "{form}"
            );
            assert_eq!(
                url.to_string(),
                "postgres://ann@h1:5432,h2:5433/echo?sslmode=disable"
            );
        }
    }

    #[test]
    fn one_port_for_several_hosts_is_every_hosts_port() {
        let url = PgUrl::parse("host=h1,h2,h3 port=6000 user=ann dbname=echo", None).unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://ann@h1:6000,h2:6000,h3:6000/echo?sslmode=prefer"
        );
    }

    #[test]
    fn the_key_value_form_hides_its_password_and_takes_sslrootcert() {
        let url = PgUrl::parse(
            "host=h1,h2 user=ann password=kv-secret-pw dbname=echo sslrootcert=/nonexistent/ca.pem",
            None,
        )
        .unwrap();
        let shown = format!("{url} {url:?} {:?}", url.config());
        assert!(!shown.contains("kv-secret-pw"), "{shown}");
        assert_eq!(url.config().get_password(), Some(&b"kv-secret-pw"[..]));
        let Err(err) = url.tls() else {
            panic!("a missing sslrootcert was accepted")
        };
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        for bad in [
            "host=h1 user=ann password=kv-secret-pw colour=blue",
            "host=h1 port=x user=ann password=kv-secret-pw",
            "Host=h1 password=kv-secret-pw",
        ] {
            let err = PgUrl::parse(bad, None).unwrap_err();
            assert!(!err.contains("kv-secret-pw"), "{err}");
        }
    }
}
