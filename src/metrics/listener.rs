//! The metrics listener: `GET /metrics` on `METRICS_ADDR` (TCP), the
//! Prometheus text format; anything else is 404 (405 for another method
//! on `/metrics`). Off unless `METRICS_ADDR` is set.
//!
//! It only reads: the page is [`crate::status::gather`] plus the counters,
//! made on tokio's blocking pool. At most [`MAX_CONNECTIONS`] connections
//! at once (more wait in the listen backlog) and each must send its
//! request header within [`READ_TIMEOUT`], so a port open to a network
//! cannot pile up connections. It never holds up the plugin socket: a
//! listener that cannot bind is logged and the daemon serves on without
//! it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::server::AppState;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a connection may take to send its request header.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr} (METRICS_ADDR): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

/// The metrics page now. Blocking.
pub fn page(state: &AppState) -> Result<String, crate::status::StatusError> {
    let status = crate::status::gather(&state.store, &state.scheduler, &state.sizes)?;
    let log = state.config.state_path.join(super::peer_log::LOG_FILE);
    Ok(super::render(&status, &log))
}

/// Serves `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listener started");
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            _ = stop.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(answer(&state, req).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
    tracing::info!("metrics listener stopped");
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn answer<B>(state: &Arc<AppState>, req: Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    let state = state.clone();
    match tokio::task::spawn_blocking(move || page(&state)).await {
        Ok(Ok(body)) => text(StatusCode::OK, body),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
