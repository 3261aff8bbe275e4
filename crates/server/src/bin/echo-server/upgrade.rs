//! Upgrades on the serving side: `echo-server upgrade` (through the
//! control socket) and SIGUSR2 start the binary at this process's path as
//! its successor ([`Successor`]), one at a time. Once the new process is
//! ready, the server is told to hand over (stop accepting, drain with
//! `bye {restart}`); a failed one leaves it serving, and says why. Once
//! the server is shutting down (SIGTERM, SIGINT) it upgrades no more: its
//! copies of the listening sockets are closed, so that the port refuses
//! connections instead of queueing them for nobody, and a new process
//! that became ready meanwhile is stopped too.

use anyhow::Context;
use echo_server::{control::UpgradeRequests, daemon, upgrade::Successor};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Where an upgrade request's answer goes (none for SIGUSR2).
type Answer = Option<oneshot::Sender<Result<String, String>>>;

/// What `upgrade` says once the server is shutting down.
const SHUTTING_DOWN: &str = "this server is shutting down: not upgraded";

/// Starts the task that carries out upgrades, asked for by the control
/// socket (the requests' sender) or by SIGUSR2, until `shutdown`; the
/// token is cancelled once a new process serves `port`. Call it before
/// saying ready: SIGUSR2 would end the process until it is handled.
pub(crate) fn serve_upgrades(
    successor: Successor,
    port: u16,
    shutdown: CancellationToken,
) -> anyhow::Result<(UpgradeRequests, CancellationToken)> {
    let (requests, mut asked) = mpsc::channel::<oneshot::Sender<Result<String, String>>>(4);
    let mut usr2 = signal(SignalKind::user_defined2()).context("cannot watch SIGUSR2")?;
    let handover = CancellationToken::new();
    let handed = handover.clone();
    tokio::spawn(async move {
        loop {
            let answer: Answer = tokio::select! {
                () = shutdown.cancelled() => break,
                asked = asked.recv() => match asked {
                    Some(answer) => Some(answer),
                    None => return,
                },
                _ = usr2.recv() => None,
            };
            let result = upgrade(&successor, port, &handed, &shutdown, answer.is_none()).await;
            let done = result.is_ok();
            if let Some(answer) = answer {
                let _ = answer.send(result);
            }
            if done {
                // Requests still queued are answered "handing over already".
                return;
            }
        }
        // Shutting down: the port's copies go now; what is asked later is
        // refused (SIGUSR2 is still handled, or it would end the process).
        drop(successor);
        refuse_while_shutting_down(asked, usr2).await;
    });
    Ok((requests, handover))
}

/// One upgrade: the new process started and, once ready, handed the port;
/// what `upgrade` prints, or why not.
async fn upgrade(
    successor: &Successor,
    port: u16,
    handover: &CancellationToken,
    shutdown: &CancellationToken,
    by_signal: bool,
) -> Result<String, String> {
    let by = if by_signal {
        "SIGUSR2"
    } else {
        "echo-server upgrade"
    };
    info!(by, "upgrade requested: starting the new process");
    match successor.start().await {
        Ok(pid) if shutdown.is_cancelled() => Err(stop_late_successor(pid)),
        Ok(pid) => Ok(hand_over(pid, port, handover)),
        Err(err) => {
            error!(error = %err, "upgrade failed; still serving");
            Err(err.to_string())
        }
    }
}

/// A new process became ready after shutdown was asked for: the operator
/// wants the server stopped, so it is stopped too (SIGTERM: it drains as
/// this one does). Why the upgrade failed.
fn stop_late_successor(pid: u32) -> String {
    let stopped = i32::try_from(pid)
        .map_err(|_| nix::errno::Errno::ESRCH)
        .and_then(|pid| kill(Pid::from_raw(pid), Signal::SIGTERM));
    if let Err(err) = stopped {
        warn!(new_pid = pid, error = %err, "cannot stop the new process");
    }
    warn!(
        new_pid = pid,
        "shutdown was requested while the new process started: it was stopped too"
    );
    format!("{SHUTTING_DOWN} (the new process, pid {pid}, was stopped)")
}

/// Answers every later request (and SIGUSR2) with [`SHUTTING_DOWN`], until
/// the control socket is gone.
async fn refuse_while_shutting_down(
    mut asked: mpsc::Receiver<oneshot::Sender<Result<String, String>>>,
    mut usr2: tokio::signal::unix::Signal,
) {
    loop {
        tokio::select! {
            asked = asked.recv() => match asked {
                Some(answer) => {
                    let _ = answer.send(Err(SHUTTING_DOWN.to_owned()));
                }
                None => return,
            },
            _ = usr2.recv() => {}
        }
        warn!("upgrade refused: the server is shutting down");
    }
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
