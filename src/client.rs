//! JSON-over-HTTP on a unix socket: how the CLI talks to the daemon and how
//! the daemon and the CLI talk to the Docker engine API.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("no answer from {socket} within {0:?}", socket = .1)]
    Timeout(Duration, String),
    #[error("HTTP {status} from {path}: {body}")]
    Status {
        status: StatusCode,
        path: String,
        body: String,
    },
    #[error("invalid JSON from {path}: {message}")]
    Json { path: String, message: String },
}

/// Sends one request with an optional JSON body and decodes the JSON reply.
/// Non-2xx answers are errors unless they carry a JSON body (the daemon's
/// own errors are 200s with `Err`, Docker's are 4xx with `message`).
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(StatusCode, Value), ClientError> {
    let client: Client<UnixConnector, Full<Bytes>> = Client::unix();
    let uri: hyper::Uri = Uri::new(socket, path).into();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("Content-Type", "application/json")
        .header("Host", "localhost")
        .body(Full::new(Bytes::from(payload)))
        .expect("request parts are valid");
    let socket_name = socket.display().to_string();
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                socket: socket_name.clone(),
                message: connect_message(&e),
            })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connect {
                socket: socket_name.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        Ok::<_, ClientError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout, socket_name.clone()))??;
    if bytes.is_empty() {
        return Ok((status, Value::Null));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => Ok((status, value)),
        Err(_) if !status.is_success() => Err(ClientError::Status {
            status,
            path: path.into(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }),
        Err(e) => Err(ClientError::Json {
            path: path.into(),
            message: e.to_string(),
        }),
    }
}

fn connect_message(e: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
