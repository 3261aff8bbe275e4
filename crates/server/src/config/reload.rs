//! What a reload changes, decided without touching anything: the file read
//! again and resolved with the flags the server started with (a flag given
//! at start still wins over the file, as it did then), then compared with
//! the settings in force. The settings a running server can take are
//! carried into the next snapshot ([`Plan::next`]); the others are named
//! and left as they are.

use std::{fmt, path::PathBuf, time::Duration};

use ipnet::IpNet;

use super::{ConfigError, FileConfig, RunArgs, ServerConfig};

/// One setting that differs between the settings in force and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The config key.
    pub name: &'static str,
    /// Its value in force, as the file would spell it.
    pub old: String,
    /// Its value in the file (or from a flag).
    pub new: String,
}

/// What a reload would do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The settings in force after it: the live settings taken from the
    /// file, everything else as it is.
    pub next: ServerConfig,
    /// The settings that change now.
    pub applied: Vec<Change>,
    /// The settings that differ but need a restart: left as they are.
    pub left: Vec<Change>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.name, self.old, self.new)
    }
}

/// The settings the flags of the start and the config file name now (none:
/// the flags and the defaults). The port, when neither names it, stays the
/// one in force (it was asked at a terminal, or is the default).
pub fn reread(args: &RunArgs, current: &ServerConfig) -> Result<ServerConfig, ConfigError> {
    let file = match &args.config {
        Some(path) => FileConfig::load_settled(path)?,
        None => FileConfig::default(),
    };
    ServerConfig::resolve(args, file, |_| Ok(Some(current.listen.port)))
}

/// A setting as the file would spell it, read from a snapshot.
type Field = (&'static str, fn(&ServerConfig) -> String);

/// The settings a running server takes: [`plan`] carries these.
const LIVE: &[Field] = &[
    ("max_connections", |c| c.limits.max_connections.to_string()),
    ("max_connections_per_ip", |c| {
        c.limits.max_connections_per_ip.to_string()
    }),
    ("max_handshakes_per_ip", |c| {
        c.limits.max_handshakes_per_ip.to_string()
    }),
    ("max_repeat", |c| c.limits.max_repeat.to_string()),
    ("max_output_buffer", |c| {
        c.limits.max_output_buffer.to_string()
    }),
    ("handshake_timeout", |c| secs(c.timeouts.handshake)),
    ("tls_handshake_timeout", |c| secs(c.timeouts.tls_handshake)),
    ("idle_timeout", |c| secs(c.timeouts.idle)),
    ("write_timeout", |c| secs(c.timeouts.write)),
    ("drain_timeout", |c| secs(c.timeouts.drain)),
    ("auth_attempts_per_minute", |c| {
        c.auth.attempts_per_minute.to_string()
    }),
    ("suggest_user", |c| c.auth.suggest_user.to_string()),
    ("log_level", |c| c.log.level.clone()),
    ("proxy_protocol_from", |c| {
        cidrs(&c.listen.proxy_protocol_from)
    }),
    ("tls_cert, tls_key", |c| pair(c.tls.files.as_ref())),
];

/// The settings taken only at a start: named, and left as they are.
const RESTART: &[Field] = &[
    ("mode", |c| c.mode.to_string()),
    ("host", |c| c.listen.host.clone()),
    ("port", |c| c.listen.port.to_string()),
    ("port_search", |c| c.listen.port_search.to_string()),
    ("tls", |c| c.tls.enabled.to_string()),
    ("data_dir", |c| c.store.data_dir.display().to_string()),
    // As `--store` shows it: a PostgreSQL password never.
    ("store", |c| c.store_location().to_string()),
    ("store_pool_size", |c| c.store.pool_size.to_string()),
    ("store_timeout", |c| secs(c.store.timeout)),
    ("log_dir", |c| c.log.dir.display().to_string()),
    ("log_keep", |c| c.log.keep.to_string()),
    ("log_format", |c| {
        format!("{:?}", c.log.format).to_lowercase()
    }),
    ("max_frame_handshake", |c| {
        c.limits.max_frame_handshake.to_string()
    }),
    ("max_frame", |c| c.limits.max_frame.to_string()),
    ("session_idle_days", |c| {
        c.auth.session_idle_days.to_string()
    }),
    ("session_max_days", |c| c.auth.session_max_days.to_string()),
    ("identity_days", |c| c.auth.identity_days.to_string()),
    ("min_password_length", |c| {
        c.auth.min_password_length.to_string()
    }),
    ("password_workers", |c| c.auth.password_workers.to_string()),
    ("allow_plaintext_auth", |c| {
        c.auth.allow_plaintext_auth.to_string()
    }),
    ("metrics_addr", |c| {
        c.metrics.addr.clone().unwrap_or_else(|| "none".into())
    }),
    ("metrics_idle_timeout", |c| secs(c.metrics.idle_timeout)),
    ("pid_file", |c| {
        c.process
            .pid_file
            .as_ref()
            .map_or_else(|| "none".into(), |p| p.display().to_string())
    }),
];

/// Compares `fresh` (from [`reread`]) with `current`.
pub fn plan(current: &ServerConfig, fresh: &ServerConfig) -> Plan {
    let mut left = differences(RESTART, current, fresh);
    // Only the password differs: the same text, said so.
    if current.store.url != fresh.store.url && !left.iter().any(|c| c.name == "store") {
        let shown = current.store_location().to_string();
        left.push(Change {
            name: "store",
            new: format!("{shown} (another password)"),
            old: shown,
        });
    }
    Plan {
        next: carry_live(current, fresh),
        applied: differences(LIVE, current, fresh),
        left,
    }
}

/// `current`, with the settings of [`LIVE`] taken from `fresh`.
fn carry_live(current: &ServerConfig, fresh: &ServerConfig) -> ServerConfig {
    let mut next = current.clone();
    let (limits, was) = (&fresh.limits, &current.limits);
    next.limits = super::Limits {
        max_frame_handshake: was.max_frame_handshake,
        max_frame: was.max_frame,
        ..limits.clone()
    };
    next.timeouts = fresh.timeouts.clone();
    next.auth.attempts_per_minute = fresh.auth.attempts_per_minute;
    next.auth.suggest_user = fresh.auth.suggest_user;
    next.log.level.clone_from(&fresh.log.level);
    next.listen
        .proxy_protocol_from
        .clone_from(&fresh.listen.proxy_protocol_from);
    next.tls.files.clone_from(&fresh.tls.files);
    next
}

/// The `fields` that read differently in `old` and `new`.
fn differences(fields: &[Field], old: &ServerConfig, new: &ServerConfig) -> Vec<Change> {
    fields
        .iter()
        .filter_map(|(name, read)| {
            let (old, new) = (read(old), read(new));
            (old != new).then_some(Change { name, old, new })
        })
        .collect()
}

fn secs(value: Duration) -> String {
    format!("{}s", value.as_secs())
}

fn cidrs(value: &[IpNet]) -> String {
    match value.is_empty() {
        true => "none".to_owned(),
        false => value
            .iter()
            .map(IpNet::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn pair(value: Option<&(PathBuf, PathBuf)>) -> String {
    match value {
        Some((cert, key)) => format!("{}, {}", cert.display(), key.display()),
        None => "DATA_DIR/tls/cert.pem, key.pem".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_settings_are_carried_and_restart_ones_named_and_left() {
        let current = ServerConfig::default();
        let mut fresh = current.clone();
        fresh.limits.max_repeat = 3;
        fresh.timeouts.idle = Duration::from_secs(9);
        fresh.listen.port = 4000;
        fresh.limits.max_frame = 1000;
        let plan = plan(&current, &fresh);
        assert_eq!(plan.next.limits.max_repeat, 3);
        assert_eq!(plan.next.timeouts.idle, Duration::from_secs(9));
        assert_eq!(plan.next.listen.port, current.listen.port);
        assert_eq!(plan.next.limits.max_frame, current.limits.max_frame);
        let applied: Vec<String> = plan.applied.iter().map(Change::to_string).collect();
        assert_eq!(
            applied,
            ["max_repeat: 100 -> 3", "idle_timeout: 300s -> 9s"]
        );
        let left: Vec<&str> = plan.left.iter().map(|c| c.name).collect();
        assert_eq!(left, ["port", "max_frame"]);
    }

    #[test]
    fn nothing_changed_plans_nothing() {
        let current = ServerConfig::default();
        let plan = plan(&current, &current.clone());
        assert!(plan.applied.is_empty() && plan.left.is_empty());
        assert_eq!(plan.next, current);
    }

    /// A config where every setting differs from the default.
    fn all_different() -> ServerConfig {
        use crate::config::{Listen, Logging, MetricsPort, Process, Storage, Timeouts, Tls};
        let one = Duration::from_secs(1);
        ServerConfig {
            mode: echo_proto::Mode::Ident,
            listen: Listen {
                host: "::".into(),
                port: 1,
                port_search: 1,
                proxy_protocol_from: vec!["10.0.0.0/8".parse().unwrap()],
            },
            tls: Tls {
                enabled: true,
                files: Some(("c.pem".into(), "k.pem".into())),
            },
            limits: different_limits(),
            timeouts: Timeouts {
                handshake: one,
                tls_handshake: one,
                idle: one,
                write: one,
                drain: one,
            },
            store: Storage {
                data_dir: "elsewhere".into(),
                pool_size: 1,
                timeout: one,
                ..Storage::default()
            },
            log: Logging {
                dir: "l".into(),
                keep: 1,
                level: "debug".into(),
                format: crate::ops::logging::LogFormat::Json,
            },
            auth: different_auth(),
            metrics: MetricsPort {
                addr: Some("127.0.0.1:1".into()),
                idle_timeout: one,
            },
            process: Process {
                daemon: false,
                pid_file: Some("p".into()),
            },
        }
    }

    fn different_limits() -> crate::config::Limits {
        crate::config::Limits {
            max_connections: 1,
            max_connections_per_ip: 1,
            max_handshakes_per_ip: 1,
            max_frame_handshake: 1,
            max_frame: 1,
            max_repeat: 1,
            max_output_buffer: 1,
        }
    }

    fn different_auth() -> crate::config::Auth {
        crate::config::Auth {
            session_idle_days: 1,
            session_max_days: 2,
            identity_days: 3,
            min_password_length: 20,
            attempts_per_minute: 1,
            suggest_user: false,
            password_workers: 99,
            allow_plaintext_auth: true,
        }
    }

    #[test]
    fn every_setting_is_either_live_or_left_and_named() {
        let current = ServerConfig::default();
        let fresh = all_different();
        let plan = plan(&current, &fresh);
        let named = plan.applied.len() + plan.left.len();
        assert_eq!(named, LIVE.len() + RESTART.len(), "a setting nobody names");
        for (name, read) in LIVE {
            assert_eq!(read(&plan.next), read(&fresh), "{name} not carried");
        }
        for (name, read) in RESTART {
            assert_eq!(read(&plan.next), read(&current), "{name} changed");
        }
        // Every field of the snapshot is in one of the two lists: the next
        // snapshot is the fresh one with the restart-only settings put back.
        let mut back = fresh.clone();
        (back.mode, back.listen.host, back.listen.port) = (
            current.mode,
            current.listen.host.clone(),
            current.listen.port,
        );
        back.listen.port_search = current.listen.port_search;
        back.tls.enabled = current.tls.enabled;
        back.store = current.store.clone();
        (back.log.dir, back.log.keep, back.log.format) = (
            current.log.dir.clone(),
            current.log.keep,
            current.log.format,
        );
        back.limits.max_frame_handshake = current.limits.max_frame_handshake;
        back.limits.max_frame = current.limits.max_frame;
        back.auth = crate::config::Auth {
            attempts_per_minute: fresh.auth.attempts_per_minute,
            suggest_user: fresh.auth.suggest_user,
            ..current.auth.clone()
        };
        back.metrics = current.metrics.clone();
        back.process = current.process.clone();
        assert_eq!(plan.next, back);
    }
}
