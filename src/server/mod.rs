//! The daemon's HTTP server: Docker's VolumeDriver protocol and buttervolume's
//! control API on one unix socket.
//!
//! Life of a request: the accept loop hands each connection to hyper; every
//! request body is read with a 1 MiB cap and decoded as JSON (an empty body
//! is `{}`, any content type is accepted, as Docker sends its own); the path
//! picks a handler in one of the submodules (one file per family of
//! endpoints); handlers that touch the disk run on tokio's blocking pool.
//! Every reply is JSON carrying `Err` (empty on success; Activate and
//! Capabilities carry none, as in the reference), HTTP 200 as the
//! reference does, except unknown paths (404, which Docker reads as "not
//! implemented") and oversized bodies (413). One log line per request.
//!
//! Connections are admitted as [`connections`] describes: a cap, eviction
//! of the longest idle connection at the cap, and a read timeout on headers
//! and bodies, so idle or half-sent connections cannot starve Docker.
//!
//! Shutdown: on SIGTERM/SIGINT the listener closes, the socket file is
//! removed, in-flight requests finish (bounded wait), then the process exits.

mod backup;
mod cluster;
mod connections;
mod control;
mod replication;
mod schedule;
mod status;
#[cfg(test)]
mod tests;
mod volume_driver;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use connections::Connections;
pub use connections::{raise_fd_limit, ServerLimits};

use crate::api::endpoint::{self, Endpoint};
use crate::config::Config;
use crate::volumes::VolumeStore;

/// Largest request body accepted; Docker's own requests are tiny.
pub const MAX_BODY: usize = 1 << 20;

/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another buttervolume is already serving {0}")]
    AlreadyRunning(String),
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
}

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<VolumeStore>,
    /// The job scheduler behind the `Schedule*` endpoints.
    pub scheduler: crate::schedule::Scheduler,
    /// Volume sizes, measured in the background (`buttervolume status`).
    pub sizes: Arc<crate::status::SizeCache>,
}

/// Why a request failed: the failed operation's own error, carried intact
/// up to here and turned into the reply's `Err` text in one place
/// ([`handle`]), its `Display` (byte-identical to the reference's message
/// where the contract says so).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body does not decode as this endpoint's request.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A request that decodes but lacks what the operation needs.
    #[error("{0}")]
    Incomplete(&'static str),
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshots::SnapshotError),
    #[error(transparent)]
    Replication(#[from] crate::replication::ReplicationError),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error(transparent)]
    Follow(#[from] crate::follow::FollowError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    ClusterMount(#[from] crate::cluster::mount::MountError),
    #[error(transparent)]
    Handover(#[from] crate::handover::HandoverError),
    #[error(transparent)]
    Takeover(#[from] crate::takeover::TakeoverError),
    #[error(transparent)]
    VolumeOption(#[from] crate::schedule::volume_options::VolumeOptionError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// 3.13's exact answer to a purge pattern it cannot read (the reason
    /// goes to the log and the CLI).
    #[error("Invalid purge pattern")]
    InvalidPurgePattern,
    /// A handler thread panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The outcome of one handler: a JSON reply, or the error whose text ends
/// up in `Err`.
pub type Reply = Result<Value, ApiError>;

/// A typed reply as JSON (every reply type serializes).
pub fn to_json(reply: impl serde::Serialize) -> Value {
    serde_json::to_value(reply).expect("reply types serialize")
}

/// Binds the socket, replacing a stale file left by a crashed run but never
/// stealing the socket of a live daemon.
pub async fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Bind {
            path: path.display().to_string(),
            source,
        })?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::AlreadyRunning(path.display().to_string()));
        }
        tracing::info!(socket = %path.display(), "removing stale socket");
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.display().to_string(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
        ServerError::Bind {
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(listener)
}

/// Serves requests on `listener` until `shutdown` resolves, then drains.
///
/// Admission (see [`connections`]): at most `limits.max_connections` open
/// connections; at the cap, the connection idle the longest is closed to
/// make room, and when every connection is busy the next one waits in the
/// listen backlog. Every connection must send its request header within
/// `limits.read_timeout` (also the idle bound between keep-alive requests).
pub async fn serve(
    listener: UnixListener,
    state: Arc<AppState>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Arc::new(Connections::default());
    tracing::info!(
        max_connections = limits.max_connections,
        read_timeout_s = limits.read_timeout.as_secs(),
        "accepting connections"
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, open = connections.len(), "accept failed");
                        // Out of descriptors: make room rather than wait.
                        connections.evict_oldest_idle();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match permits.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        connections.evict_oldest_idle();
                        tokio::select! {
                            permit = permits.clone().acquire_owned() => {
                                permit.expect("the connection semaphore is never closed")
                            }
                            () = &mut shutdown => break,
                        }
                    }
                };
                let registration = connections.register();
                let slot = registration.slot.clone();
                let state = state.clone();
                let read_timeout = limits.read_timeout;
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let slot = slot.clone();
                    async move { Ok::<_, Infallible>(handle(state, req, &slot, read_timeout).await) }
                });
                let conn = http.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    let slot = registration.slot.clone();
                    tokio::pin!(conn);
                    let ended = tokio::select! {
                        ended = &mut conn => Some(ended),
                        () = slot.evicted() => None,
                    };
                    let ended = match ended {
                        Some(ended) => Some(ended),
                        // Chosen while idle, but a request started since:
                        // it is answered (the read timeout closes the
                        // connection after it); a handler is never cut.
                        None if slot.is_busy() => Some(conn.await),
                        None => {
                            tracing::debug!("closed an idle connection to make room");
                            None
                        }
                    };
                    if let Some(Err(e)) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(registration);
                });
            }
            () = &mut shutdown => break,
        }
    }
    let socket = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    drop(listener);
    if let Some(path) = socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!(in_flight = graceful.count(), "shutting down");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some requests were still running after {DRAIN_TIMEOUT:?}");
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

async fn read_body(req: Request<Incoming>) -> Result<Value, (StatusCode, String)> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_BODY} bytes"),
                )
            } else {
                (StatusCode::BAD_REQUEST, format!("cannot read request: {e}"))
            }
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| (StatusCode::OK, format!("invalid JSON in request: {e}")))
}

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    slot: &Arc<connections::Slot>,
    read_timeout: Duration,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match tokio::time::timeout(read_timeout, read_body(req)).await {
        Ok(body) => body,
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {read_timeout:?}"),
        )),
    };
    let answer = match body {
        Err((status, message)) => Answer {
            status,
            reply: json!({ "Err": message }),
            label: endpoint::label(&path),
            volume: None,
        },
        Ok(body) => {
            // A running handler is never evicted to make room.
            let _busy = slot.busy();
            answer(&state, &method, &path, body).await
        }
    };
    log_request(&path, &answer, started);
    json_response(answer.status, &answer.reply)
}

/// What a request gets, and what its log line and metrics say.
struct Answer {
    status: StatusCode,
    reply: Value,
    /// The metrics `endpoint` label ([`endpoint::label`]).
    label: &'static str,
    volume: Option<String>,
}

/// Answers a request whose body was read: the endpoint's handler, or 404
/// for a path that names none ([`endpoint::find`]).
async fn answer(state: &Arc<AppState>, method: &hyper::Method, path: &str, body: Value) -> Answer {
    let Some((route, volume_suffix)) = endpoint::find(path) else {
        return Answer {
            status: StatusCode::NOT_FOUND,
            reply: json!({ "Err": format!("unknown endpoint {method} {path}") }),
            label: endpoint::OTHER,
            volume: None,
        };
    };
    let volume = body.get("Name").and_then(Value::as_str).map(str::to_string);
    let reply = match dispatch(state, route.endpoint, volume_suffix, body).await {
        Ok(value) if !route.carries_err => value,
        Ok(value) => with_empty_err(value),
        Err(error) => json!({ "Err": error.to_string() }),
    };
    Answer {
        status: StatusCode::OK,
        reply,
        label: route.label(),
        volume,
    }
}

fn with_empty_err(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.entry("Err").or_insert_with(|| json!(""));
    }
    value
}

fn log_request(path: &str, answer: &Answer, started: Instant) {
    let elapsed = started.elapsed();
    let micros = elapsed.as_micros() as u64;
    let err = answer
        .reply
        .get("Err")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty());
    crate::metrics::record_request(answer.label, err.is_none(), elapsed);
    let volume = answer.volume.as_deref();
    match err {
        None => tracing::info!(endpoint = path, volume, outcome = "ok", micros, "request"),
        Some(err) => {
            tracing::warn!(
                endpoint = path,
                volume,
                outcome = "error",
                err,
                micros,
                "request"
            )
        }
    }
}

/// The endpoint's handler, in its family's module. The method is not
/// checked: Docker POSTs everything, the reference CLI GETs the lists,
/// and both must work.
async fn dispatch(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    volume_suffix: Option<&str>,
    body: Value,
) -> Reply {
    match endpoint {
        Endpoint::Docker(e) => volume_driver::route(state, e, &body).await,
        Endpoint::Control(e) => control::route(state, e, volume_suffix, body).await,
        Endpoint::Replication(e) => replication::route(state, e, &body).await,
        Endpoint::Schedule(e) => schedule::route(state, e, &body).await,
        Endpoint::Status => status::route(state).await,
        Endpoint::Backup(e) => backup::route(state, e, &body).await,
        Endpoint::Owner => cluster::route(state, &body).await,
    }
}

/// Runs blocking filesystem work off the async threads.
pub async fn blocking<T, E, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(Into::into)
}

/// Decodes a typed request, turning type errors into a clear message.
pub fn decode<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}
