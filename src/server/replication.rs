//! Replication endpoints: `Snapshot.Send` (btrfs send to a peer over SSH)
//! and `Volume.Sync` (rsync pull), as in buttervolume 3.13, and
//! `Snapshot.Receive` (pull a volume's newest snapshot from a peer), as in
//! upstream's post-3.13 master.

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
    /// zstd on the wire (default: SEND_COMPRESSION).
    #[serde(rename = "Compress", default)]
    compress: Option<bool>,
    /// MiB/s (default: SEND_BWLIMIT; 0: none).
    #[serde(rename = "BwLimit", default)]
    bwlimit: Option<u64>,
}

/// `Snapshot.Receive` and `Replicate`: upstream's request shape (`Name` is
/// the volume).
#[derive(Deserialize)]
struct ReceiveRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Host")]
    host: String,
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
                // The send ends by recording `<snapshot>@<host>`: refuse a
                // host too long for that before anything is sent.
                crate::names::check_marker_host(&req.host).map_err(|e| e.to_string())?;
                let defaults = replication::SendOptions::from_config(&store.config);
                let options = replication::SendOptions {
                    compress: req.compress.unwrap_or(defaults.compress),
                    bwlimit_mib: req.bwlimit.unwrap_or(defaults.bwlimit_mib),
                };
                replication::send_with(&store, &req.name, &req.host, req.test, options)
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
        "/VolumeDriver.Snapshot.Receive" => match decode::<ReceiveRequest>(body) {
            Ok(req) => blocking(move || {
                replication::pull::receive(&store, &req.host, &req.name)
                    .map(|report| (report.summary(&req.host), report.snapshot))
                    .map_err(|e| e.to_string())
            })
            .await
            .map(|(summary, snapshot)| {
                tracing::info!("{summary}");
                json!({ "Snapshot": snapshot, "Summary": summary })
            }),
            Err(e) => Err(e),
        },
        // Snapshot now and send it (upstream's `replicate <host> <volume>`).
        "/VolumeDriver.Replicate" => match decode::<ReceiveRequest>(body) {
            Ok(req) => blocking(move || {
                crate::names::check_marker_host(&req.host).map_err(|e| e.to_string())?;
                let snapshot =
                    crate::snapshots::snapshot(&store, &req.name).map_err(|e| e.to_string())?;
                match replication::send(&store, &snapshot, &req.host, false) {
                    Ok(report) => Ok((report.summary(&snapshot, &req.host), snapshot)),
                    Err(e) => {
                        // A failed replication leaves no fresh snapshot
                        // behind (upstream #95): the next one starts over.
                        let _ = crate::snapshots::remove(&store, &snapshot);
                        Err(e.to_string())
                    }
                }
            })
            .await
            .map(|(summary, snapshot)| {
                tracing::info!("{summary}");
                json!({ "Snapshot": snapshot, "Summary": summary })
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
