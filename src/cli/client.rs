//! How client verbs reach the daemon: its socket, found like the reference
//! finds it (SOCKET if it exists, else the managed plugin DRIVERNAME
//! through the Docker API), and one typed HTTP call ([`Daemon::post`],
//! [`Daemon::get`]) with the [`crate::api`] types the server uses.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::Failure;
use crate::api;
use crate::client::{self, ClientError};
use crate::config::Config;

/// How long the CLI waits for the daemon: sends of big volumes take long.
const CLI_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Plugin names tried after DRIVERNAME when looking for a managed plugin.
const KNOWN_PLUGIN_NAMES: [&str; 2] = ["anybox/buttervolume:latest", "ccomb/buttervolume:latest"];

/// Finds the daemon's socket like the reference: SOCKET when it exists,
/// otherwise the managed plugin's socket found through the Docker API.
pub async fn discover_socket(config: &Config) -> PathBuf {
    if config.socket.exists() {
        return config.socket.clone();
    }
    let mut names = vec![config.drivername.as_str()];
    names.extend(
        KNOWN_PLUGIN_NAMES
            .iter()
            .filter(|n| **n != config.drivername),
    );
    for name in names {
        if let Ok(Some(id)) = crate::docker::plugin_id(&config.docker_socket, name).await {
            let socket = config
                .runpath
                .join("plugins")
                .join(id)
                .join(crate::config::SOCKET_FILE);
            if socket.exists() {
                return socket;
            }
        }
    }
    config.socket.clone()
}

/// The daemon's socket, and how to call it.
pub struct Daemon {
    socket: PathBuf,
}

fn connect_failure(e: ClientError) -> Failure {
    match e {
        ClientError::Connect { .. } => Failure(format!(
            "Failed to connect to Buttervolume ({e}). You can start it with: buttervolume run"
        )),
        other => Failure(other.to_string()),
    }
}

impl Daemon {
    /// The daemon this node's configuration points at.
    pub async fn find(config: &Config) -> Daemon {
        Daemon {
            socket: discover_socket(config).await,
        }
    }

    /// Calls the daemon; a non-empty `Err` becomes a failure.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let (_, reply) = client::request(&self.socket, method, path, body.as_ref(), CLI_TIMEOUT)
            .await
            .map_err(connect_failure)?;
        match reply.get("Err").and_then(Value::as_str) {
            Some(err) if !err.is_empty() => Err(Failure(err.to_string())),
            _ => Ok(reply),
        }
    }

    /// POSTs a typed request and decodes the typed reply.
    pub async fn post<R: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Serialize,
    ) -> Result<R, Failure> {
        let body = serde_json::to_value(body).expect("requests serialize");
        let reply = self.call(Method::POST, path, Some(body)).await?;
        decode(path, reply)
    }

    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, Failure> {
        let reply = self.call(Method::GET, path, None).await?;
        decode(path, reply)
    }

    /// GETs with a JSON body: what the reference's GET endpoints accept
    /// (they read a body and ignore it), for the fields only ours reads.
    pub async fn get_with<R: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Serialize,
    ) -> Result<R, Failure> {
        let body = serde_json::to_value(body).expect("requests serialize");
        let reply = self.call(Method::GET, path, Some(body)).await?;
        decode(path, reply)
    }
}

fn decode<R: DeserializeOwned>(path: &str, reply: Value) -> Result<R, Failure> {
    R::deserialize(reply).map_err(|e| Failure(format!("unexpected reply from {path}: {e}")))
}

pub fn name(name: String) -> api::NameRequest {
    api::NameRequest { name }
}
