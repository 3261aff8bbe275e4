//! Upgrades on the serving side: `echo-server upgrade` (through the
//! control socket) and SIGUSR2 start the binary at this process's path as
//! its successor ([`Successor`]), one at a time. Once the new process is
//! ready, the server is told to hand over (stop accepting, drain with
//! `bye {restart}`); a failed one leaves it serving, and says why.

use anyhow::Context;
use echo_server::{control::UpgradeRequests, daemon, upgrade::Successor};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Starts the task that carries out upgrades, asked for by the control
/// socket (the requests' sender) or by SIGUSR2; the token is cancelled
/// once a new process serves `port`. Call it before saying ready: SIGUSR2
/// would end the process until it is handled.
pub(crate) fn serve_upgrades(
    successor: Successor,
    port: u16,
) -> anyhow::Result<(UpgradeRequests, CancellationToken)> {
    let (requests, mut asked) = mpsc::channel::<oneshot::Sender<Result<String, String>>>(4);
    let mut usr2 = signal(SignalKind::user_defined2()).context("cannot watch SIGUSR2")?;
    let handover = CancellationToken::new();
    let handed = handover.clone();
    tokio::spawn(async move {
        loop {
            let answer = tokio::select! {
                asked = asked.recv() => match asked {
                    Some(answer) => Some(answer),
                    None => return,
                },
                _ = usr2.recv() => None,
            };
            let by = answer.as_ref().map_or("SIGUSR2", |_| "echo-server upgrade");
            info!(by, "upgrade requested: starting the new process");
            let result = match successor.start().await {
                Ok(pid) => Ok(hand_over(pid, port, &handed)),
                Err(err) => {
                    error!(error = %err, "upgrade failed; still serving");
                    Err(err.to_string())
                }
            };
            let done = result.is_ok();
            if let Some(answer) = answer {
                let _ = answer.send(result);
            }
            if done {
                // Requests still queued are answered "handing over already".
                return;
            }
        }
    });
    Ok((requests, handover))
}

/// The new process `pid` is ready: systemd is told it is the main process
/// now, and the server stops accepting. What `upgrade` prints.
fn hand_over(pid: u32, port: u16, handover: &CancellationToken) -> String {
    let me = std::process::id();
    info!(
        new_pid = pid,
        "the new process is ready and serves the port; draining"
    );
    if let Err(err) = daemon::notify(&format!("MAINPID={pid}")) {
        warn!(error = %err, "cannot notify systemd");
    }
    handover.cancel();
    format!("upgraded: pid {pid} serves port {port}; pid {me} is draining")
}
