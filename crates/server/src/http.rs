//! The operator's HTTP port (`--metrics-addr`): `GET /metrics` in the
//! Prometheus (OpenMetrics) text format, `GET /healthz` for load balancers.
//! HTTP/1.1 is hyper's; this file only routes, and bounds what a client of
//! this port may take: request heads of at most 8 KiB, 5 s to send one,
//! 16 connections at once. It runs in tasks of its own and shares nothing
//! with the main port but the counters, so it cannot slow clients down.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore, time::timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Largest request head read (hyper's smallest buffer); more gets 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection to this port.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections to this port at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;
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

/// Serves the operator's port until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    stop: CancellationToken,
) {
    let local = listener.local_addr().ok();
    info!(addr = ?local, "metrics and health checks served");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(%peer, "metrics port: too many connections; closed");
            continue;
        };
        let (metrics, health) = (Arc::clone(&metrics), health.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &metrics, &health);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .max_buf_size(MAX_HEAD_BYTES)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Err(err)) => debug!(%peer, error = %err, "metrics port: connection failed"),
                Err(_) => debug!(%peer, "metrics port: connection timed out"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
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
        return response;
    }
    let mut response = match request.uri().path() {
        "/metrics" => {
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
