//! What a connection, and one address, may hold ([`Limits`]) and how long
//! each step may take ([`Timeouts`]).

use std::time::Duration;

use super::{ConfigError, FileConfig, RunArgs, at_least_1, pick, secs};

/// Smallest `max_output_buffer`: the output a connection writes out in one
/// go (its write buffer's backpressure boundary).
pub const MIN_OUTPUT_BUFFER: usize = 64 * 1024;

/// Connections, frames and output: how much is served at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more get `server_busy`.
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) may hold at once; more get
    /// `too_many_connections`.
    pub max_connections_per_ip: usize,
    /// Connections from one address still in the handshake at once.
    pub max_handshakes_per_ip: usize,
    /// Largest frame accepted before authentication, in bytes.
    pub max_frame_handshake: usize,
    /// Largest frame accepted after authentication, in bytes.
    pub max_frame: usize,
    /// Most replies one `/repeat` may ask for.
    pub max_repeat: u32,
    /// Most bytes of output held for one client; over it the client is
    /// dropped (and logged).
    pub max_output_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_handshakes_per_ip: 32,
            max_frame_handshake: 4 * 1024,
            max_frame: echo_proto::DEFAULT_MAX_FRAME_LENGTH,
            max_repeat: 100,
            max_output_buffer: 1024 * 1024,
        }
    }
}

impl Limits {
    /// From the flags, else the file, else the defaults; each in its range.
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        let limits = Self {
            max_connections: at_least_1(
                "max_connections",
                pick(
                    args.max_connections,
                    file.max_connections,
                    d.max_connections,
                ),
            )?,
            max_connections_per_ip: at_least_1(
                "max_connections_per_ip",
                pick(
                    args.max_connections_per_ip,
                    file.max_connections_per_ip,
                    d.max_connections_per_ip,
                ),
            )?,
            max_handshakes_per_ip: at_least_1(
                "max_handshakes_per_ip",
                pick(
                    args.max_handshakes_per_ip,
                    file.max_handshakes_per_ip,
                    d.max_handshakes_per_ip,
                ),
            )?,
            max_frame_handshake: at_least_1(
                "max_frame_handshake",
                file.max_frame_handshake.unwrap_or(d.max_frame_handshake),
            )?,
            max_frame: at_least_1("max_frame", file.max_frame.unwrap_or(d.max_frame))?,
            max_repeat: at_least_1("max_repeat", file.max_repeat.unwrap_or(d.max_repeat))?,
            max_output_buffer: file.max_output_buffer.unwrap_or(d.max_output_buffer),
        };
        limits.check_sizes()?;
        Ok(limits)
    }

    /// Frames within the protocol's limit, the handshake's within the
    /// session's; room for one write's worth of output.
    fn check_sizes(&self) -> Result<(), ConfigError> {
        if self.max_frame > echo_proto::MAX_FRAME_LENGTH
            || self.max_frame_handshake > self.max_frame
        {
            return Err(ConfigError::Invalid(format!(
                "max_frame_handshake must not exceed max_frame, nor max_frame {} bytes",
                echo_proto::MAX_FRAME_LENGTH
            )));
        }
        if self.max_output_buffer < MIN_OUTPUT_BUFFER {
            return Err(ConfigError::Invalid(format!(
                "max_output_buffer must be at least {MIN_OUTPUT_BUFFER} bytes"
            )));
        }
        Ok(())
    }
}

/// How long a connection may take at each step, and shutdown for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Time a connection has to finish identification or authentication
    /// (`handshake_timeout`).
    pub handshake: Duration,
    /// Time a client on a TLS port has for the TLS handshake, within
    /// `handshake` (`tls_handshake_timeout`).
    pub tls_handshake: Duration,
    /// Time an established session may stay silent (`idle_timeout`).
    pub idle: Duration,
    /// Time a write to a client may take before the client is dropped
    /// (`write_timeout`).
    pub write: Duration,
    /// Time shutdown waits for connections to close (`drain_timeout`).
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(30),
            tls_handshake: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            write: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// From the flags, else the file, else the defaults; each at least 1 s.
    pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            handshake: at_least_1(
                "handshake_timeout",
                secs(args.handshake_timeout, file.handshake_timeout, d.handshake),
            )?,
            tls_handshake: at_least_1(
                "tls_handshake_timeout",
                secs(
                    args.tls_handshake_timeout,
                    file.tls_handshake_timeout,
                    d.tls_handshake,
                ),
            )?,
            idle: at_least_1(
                "idle_timeout",
                secs(args.idle_timeout, file.idle_timeout, d.idle),
            )?,
            write: at_least_1("write_timeout", secs(None, file.write_timeout, d.write))?,
            drain: secs(args.drain_timeout, file.drain_timeout, d.drain),
        })
    }
}
