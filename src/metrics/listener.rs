//! The metrics listener: `GET /metrics` on `METRICS_ADDR` (TCP), the
//! Prometheus text format; anything else is 404 (405 for another method
//! on `/metrics`). Off unless `METRICS_ADDR` is set.
//!
//! It only reads: the page is [`crate::status::gather`] plus the counters,
//! made on tokio's blocking pool; the status scan is shared by the scrapes
//! of a second ([`ScanCache`]). A port open to a network cannot hold it:
//! at most [`MAX_CONNECTIONS`] connections at once (more wait in the
//! listen backlog); each must send its request header within
//! [`READ_TIMEOUT`], gets one answer and is closed (requests pipelined
//! after the first are never read), and is cut [`CONNECTION_TIMEOUT`]
//! after it was accepted whatever it is doing (a client that does not
//! read its answer included). It never holds up the plugin socket: a
//! listener that cannot bind is logged and the daemon serves on without
//! it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::server::AppState;
use crate::status::ScanCache;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a connection may take to send its request header.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may live, from its accept to its close: its
/// request, the page and the writing of the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What bounds the listener's connections (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub header: Duration,
    pub lifetime: Duration,
}

/// The listener's limits.
pub const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    header: READ_TIMEOUT,
    lifetime: CONNECTION_TIMEOUT,
};

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

/// The metrics page now: the status from `scans` (scanned at most once a
/// second), the counters as they are. Blocking.
pub fn page(state: &AppState, scans: &ScanCache) -> Result<String, crate::status::StatusError> {
    let status = scans.get(Instant::now(), || {
        tracing::debug!("metrics: scanning the status");
        crate::status::gather(&state.store, &state.scheduler, &state.sizes)
    })?;
    let log = state.config.state_path.join(super::peer_log::LOG_FILE);
    Ok(super::render(&status, &log))
}

/// Serves `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, stop: watch::Receiver<bool>) {
    let scans = ScanCache::default();
    let page = move || page(&state, &scans).map_err(|e| e.to_string());
    serve_pages(listener, LIMITS, stop, page).await;
}

/// Serves `page` (made on the blocking pool) on `listener` within
/// `limits` until `stop` turns true.
async fn serve_pages<P>(
    listener: TcpListener,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    page: P,
) where
    P: Fn() -> Result<String, String> + Send + Sync + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listener started");
    }
    let page = Arc::new(page);
    let permits = Arc::new(Semaphore::new(limits.connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        // One request per connection: a client pipelining requests and
        // never reading the answers cannot keep its connection.
        .keep_alive(false);
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
        let page = page.clone();
        let service = hyper::service::service_fn(move |req| {
            let page = page.clone();
            async move { Ok::<_, Infallible>(answer(page, req).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limits.lifetime, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection ended with an error"),
                // Dropping it closes the socket.
                Err(_) => tracing::debug!(
                    seconds = limits.lifetime.as_secs(),
                    "metrics connection cut: it outlived its time"
                ),
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

async fn answer<B, P>(page: Arc<P>, req: Request<B>) -> Response<Full<Bytes>>
where
    P: Fn() -> Result<String, String> + Send + Sync + 'static,
{
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    match tokio::task::spawn_blocking(move || page()).await {
        Ok(Ok(body)) => text(StatusCode::OK, body),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// Serves `page` on a free port of 127.0.0.1 within `limits`; returns
    /// the address, and the sender that stops it.
    async fn start(limits: Limits, page: String) -> (SocketAddr, watch::Sender<bool>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve_pages(listener, limits, stopped, move || {
            Ok(page.clone())
        }));
        (addr, stop)
    }

    /// Sends `requests` GET /metrics on one connection, reads until the
    /// server closes it (at most 30 s); returns what came back.
    fn scrape(addr: SocketAddr, requests: usize) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(requests);
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .expect("the answer, then the connection closed");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_requests_get_one_answer_then_the_connection_closes() {
        let (addr, _stop) = start(LIMITS, "page\n".into()).await;
        let answer = tokio::task::spawn_blocking(move || scrape(addr, 3))
            .await
            .unwrap();
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 1, "{answer}");
        assert!(answer.ends_with("\r\n\r\npage\n"), "{answer}");
    }

    /// A client that asks for a page bigger than the sockets' buffers and
    /// never reads it holds the only connection allowed: it is cut after
    /// its lifetime, and the next scrape is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_does_not_read_is_cut_after_its_lifetime() {
        let limits = Limits {
            connections: 1,
            header: READ_TIMEOUT,
            lifetime: Duration::from_secs(1),
        };
        let big = "x".repeat(64 << 20);
        let (addr, _stop) = start(limits, big).await;
        let answer = tokio::task::spawn_blocking(move || {
            let mut hog = TcpStream::connect(addr).unwrap();
            hog.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let answer = scrape(addr, 1);
            drop(hog);
            answer
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{}", &answer[..80]);
        assert_eq!(
            answer.len() - answer.find("\r\n\r\n").unwrap() - 4,
            64 << 20
        );
    }
}
