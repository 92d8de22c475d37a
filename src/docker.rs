//! The few Docker engine API calls the plugin makes: finding the managed
//! plugin's socket (CLI) and reading a volume's labels, which Docker never
//! passes to drivers (daemon).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::client::{self, ClientError};

const API_TIMEOUT: Duration = Duration::from_secs(5);

async fn get(docker: &Path, path: &str) -> Result<Option<Value>, ClientError> {
    let (status, body) = client::request(docker, Method::GET, path, None, API_TIMEOUT).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(ClientError::Status {
            status,
            path: path.into(),
            body: body.to_string(),
        });
    }
    Ok(Some(body))
}

/// The ID of the managed plugin called `name`, if Docker has one.
pub async fn plugin_id(docker: &Path, name: &str) -> Result<Option<String>, ClientError> {
    Ok(get(docker, &format!("/plugins/{name}/json"))
        .await?
        .and_then(|p| p.get("Id").and_then(Value::as_str).map(str::to_string)))
}

/// The labels Docker holds for volume `name` (`None`: Docker has no such
/// volume).
pub async fn volume_labels(
    docker: &Path,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, ClientError> {
    let Some(volume) = get(docker, &format!("/volumes/{name}")).await? else {
        return Ok(None);
    };
    let labels = volume
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(labels))
}

/// Docker's `local` volumes: (name, mountpoint). Filtering by driver makes
/// Docker ask only that driver, so a slow or dead plugin cannot stall it.
pub async fn local_volumes(docker: &Path) -> Result<Vec<(String, String)>, ClientError> {
    // filters={"driver":["local"]}, URL-encoded.
    let path = "/volumes?filters=%7B%22driver%22%3A%5B%22local%22%5D%7D";
    let body = get(docker, path).await?.unwrap_or_default();
    Ok(body
        .get("Volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("Driver").and_then(Value::as_str) == Some("local"))
                .filter_map(|v| {
                    Some((
                        v.get("Name")?.as_str()?.to_string(),
                        v.get("Mountpoint")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}
