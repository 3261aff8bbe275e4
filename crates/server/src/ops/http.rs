//! The operator's HTTP port (`--metrics-addr`): `GET /metrics` in the
//! Prometheus (OpenMetrics) text format, `GET /healthz` for load balancers.
//! HTTP/1.1 is hyper's; this file routes, and bounds what a client of this
//! port may take, so that `/healthz` is answered within a second whatever
//! other clients hold (docs/RELIABILITY.md, "Hardening III"):
//! - request heads of at most 8 KiB;
//! - `metrics_idle_timeout` (default 5 s) to send each request head,
//!   counted from the connect or the previous answer: an idle keep-alive
//!   connection is closed then, and so is a head sent a byte at a time;
//! - one deadline per request, `metrics_idle_timeout` + 5 s from that same
//!   moment to its answer written, whatever the client does;
//! - 256 connections at once; when all are taken, a new one takes the slot
//!   of the connection that has gone longest without a request ([`slots`]).
//!
//! It runs in tasks of its own and shares nothing with the main port but
//! the counters, so it cannot slow clients down.

mod slots;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Frame, Incoming, SizeHint},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::slots::{Connection, Slot, Slots};
use crate::ops::metrics::Metrics;

/// Largest request head read (hyper's smallest buffer); more gets 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time to write an answer, on top of the time to send the request.
const ANSWER_TIME: Duration = Duration::from_secs(5);
/// Connections to this port at once; past them, the one longest without a
/// request is closed for the new one. Kept out of the main port's share of
/// the open-file limit (`main.rs`).
pub const MAX_CONNECTIONS: usize = 256;
/// `Content-Type` of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `/healthz` reports.
#[derive(Clone)]
pub(crate) struct Health {
    /// Cancelled when the server starts draining at shutdown.
    pub draining: CancellationToken,
    /// Whether the store is known to be unreachable (a database that is
    /// down): new clients could not log in here.
    pub store_unreachable: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// Serves the operator's port until `stop`; `idle_timeout` is
/// `metrics_idle_timeout`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    idle_timeout: Duration,
    stop: CancellationToken,
) {
    let local = listener.local_addr().ok();
    info!(addr = ?local, "metrics and health checks served");
    if let Some(addr) = local.filter(|addr| !addr.ip().is_loopback()) {
        warn!(
            %addr,
            "the metrics port is not on a loopback address: whoever reaches it reads the metrics, unauthenticated; keep it on loopback or a private network"
        );
    }
    let slots = Slots::new(MAX_CONNECTIONS);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "metrics port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (slot, evicted) = slots.take(idle_timeout + ANSWER_TIME);
        if evicted {
            debug!(%peer, "metrics port: every slot taken; the connection longest without a request closed");
        }
        let (metrics, health) = (Arc::clone(&metrics), health.clone());
        tokio::spawn(serve_connection(
            stream,
            peer,
            slot,
            (metrics, health),
            idle_timeout,
        ));
    }
}

/// Serves one connection until it closes, its request's deadline passes or
/// another connection takes its slot.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    (metrics, health): (Arc<Metrics>, Health),
    idle_timeout: Duration,
) {
    let state = Arc::clone(slot.connection());
    let service = service_fn(move |request| {
        state.requested();
        let response = respond(&request, &metrics, &health);
        let answered = Arc::clone(&state);
        async move { Ok::<_, Infallible>(response.map(|body| Answer { body, answered })) }
    });
    let connection = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let state = slot.connection();
    loop {
        let deadline = state.deadline();
        tokio::select! {
            done = &mut connection => {
                if let Err(err) = done {
                    debug!(%peer, error = %err, "metrics port: connection ended");
                }
                return;
            }
            () = state.evicted() => {
                debug!(%peer, "metrics port: connection closed for a newer one");
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if state.deadline() <= deadline {
                    debug!(%peer, "metrics port: request deadline passed");
                    return;
                }
            }
        }
    }
}

/// An answer's body; once hyper has taken all of it (dropped it), the
/// connection's next request has its time.
struct Answer {
    body: Full<Bytes>,
    answered: Arc<Connection>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.answered.answered();
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The answer to one request.
fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        // A client asking for a tunnel would send its tunnel's bytes next:
        // the connection ends with the refusal.
        if method == Method::CONNECT {
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        return response;
    }
    let mut response = match request.uri().path() {
        "/metrics" => {
            // The store's state as /healthz would say it now.
            metrics
                .store_up
                .set(i64::from(!(health.store_unreachable)()));
            let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(OPENMETRICS),
            );
            response
        }
        "/healthz" if health.draining.is_cancelled() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining")
        }
        "/healthz" if (health.store_unreachable)() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
        "/healthz" => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
