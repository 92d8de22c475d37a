//! Replication endpoints: `Snapshot.Send` (btrfs send to a peer over SSH)
//! and `Volume.Sync` (rsync pull), as in buttervolume 3.13.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, decode, AppState, Reply};
use crate::replication;

#[derive(Deserialize)]
struct SendRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Host")]
    host: String,
    #[serde(rename = "Test", default)]
    test: bool,
}

#[derive(Deserialize)]
struct SyncRequest {
    #[serde(rename = "Volumes")]
    volumes: Vec<String>,
    #[serde(rename = "Hosts")]
    hosts: Vec<String>,
    #[serde(rename = "Test", default)]
    test: bool,
}

pub async fn route(state: &Arc<AppState>, path: &str, body: &Value) -> Option<Reply> {
    let store = state.store.clone();
    let reply = match path {
        "/VolumeDriver.Snapshot.Send" => match decode::<SendRequest>(body) {
            Ok(req) => blocking(move || {
                replication::send(&store, &req.name, &req.host, req.test)
                    .map(|report| report.summary(&req.name, &req.host))
                    .map_err(|e| e.to_string())
            })
            .await
            .map(|summary| {
                tracing::info!("{summary}");
                json!({ "Summary": summary })
            }),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Volume.Sync" => match decode::<SyncRequest>(body) {
            Ok(req) => blocking(move || {
                replication::sync(&store, &req.volumes, &req.hosts, req.test)
                    .map_err(|e| e.to_string())
            })
            .await
            .map(|()| json!({})),
            Err(e) => Err(e),
        },
        _ => return None,
    };
    Some(reply)
}
