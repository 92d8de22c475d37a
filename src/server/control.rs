//! buttervolume's own endpoints for local data: snapshot, list, remove,
//! restore, clone, purge and inspect. JSON shapes follow buttervolume 3.13
//! (what the CLI and the cluster's deploy handler read).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, decode, AppState, Reply};
use crate::labels;
use crate::names;
use crate::snapshots;

#[derive(Deserialize)]
struct NameRequest {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
struct RestoreRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Target", default)]
    target: Option<String>,
    #[serde(rename = "Force", default)]
    force: bool,
}

#[derive(Deserialize)]
struct CloneRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Target", default)]
    target: Option<String>,
}

#[derive(Deserialize)]
struct PurgeRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Pattern")]
    pattern: String,
    #[serde(rename = "Dryrun", default)]
    dry_run: bool,
}

pub async fn route(state: &Arc<AppState>, path: &str, body: Value) -> Option<Reply> {
    let store = state.store.clone();
    if let Some(volume) = path.strip_prefix("/VolumeDriver.Snapshot.List/") {
        let volume = volume.to_string();
        return Some(
            blocking(move || snapshots::list(&store, Some(&volume)).map_err(|e| e.to_string()))
                .await
                .map(|list| json!({ "Snapshots": list })),
        );
    }
    let reply = match path {
        "/VolumeDriver.Snapshot" => match decode::<NameRequest>(&body) {
            Ok(req) => {
                blocking(move || snapshots::snapshot(&store, &req.name).map_err(|e| e.to_string()))
                    .await
                    .map(|name| json!({ "Snapshot": name }))
            }
            Err(e) => Err(e),
        },
        // 3.13 sends GET (every volume's) or uses the path suffix above;
        // the 3.4 CLI POSTs `{"Name": V}` (or `null`) and expects only V's.
        "/VolumeDriver.Snapshot.List" => match body.get("Name") {
            None | Some(Value::Null) => {
                blocking(move || snapshots::list(&store, None).map_err(|e| e.to_string()))
                    .await
                    .map(|list| json!({ "Snapshots": list }))
            }
            Some(_) => match decode::<NameRequest>(&body) {
                Ok(req) => blocking(move || {
                    names::check_volume(&req.name).map_err(|e| e.to_string())?;
                    snapshots::list(&store, Some(&req.name)).map_err(|e| e.to_string())
                })
                .await
                .map(|list| json!({ "Snapshots": list })),
                Err(e) => Err(e),
            },
        },
        "/VolumeDriver.Snapshot.Remove" => match decode::<NameRequest>(&body) {
            Ok(req) => {
                blocking(move || snapshots::remove(&store, &req.name).map_err(|e| e.to_string()))
                    .await
                    .map(|()| json!({}))
            }
            Err(e) => Err(e),
        },
        "/VolumeDriver.Snapshot.Restore" => match decode::<RestoreRequest>(&body) {
            Ok(req) => blocking(move || {
                snapshots::restore(&store, &req.name, req.target.as_deref(), req.force)
                    .map_err(|e| e.to_string())
            })
            .await
            .map(|backup| match backup {
                Some(b) => json!({ "VolumeBackup": b }),
                None => json!({}),
            }),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Clone" => match decode::<CloneRequest>(&body) {
            Ok(CloneRequest { target: None, .. }) => {
                Err("Clone needs a Target volume name".to_string())
            }
            Ok(CloneRequest {
                name,
                target: Some(target),
            }) => blocking(move || {
                snapshots::clone(&store, &name, &target).map_err(|e| e.to_string())
            })
            .await
            .map(|cloned| json!({ "VolumeCloned": cloned })),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Snapshots.Purge" => match decode::<PurgeRequest>(&body) {
            Ok(req) => blocking(move || {
                snapshots::purge(&store, &req.name, &req.pattern, req.dry_run)
                    .map_err(|e| e.to_string())
            })
            .await
            .map(|purged| json!({ "Purged": purged })),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Inspect" => match decode::<NameRequest>(&body) {
            Ok(req) => inspect(state, req.name).await,
            Err(e) => Err(e),
        },
        _ => return None,
    };
    Some(reply)
}

/// Everything about one volume, labels refreshed from Docker when it answers.
async fn inspect(state: &Arc<AppState>, name: String) -> Reply {
    state.store.existing(&name).map_err(|e| e.to_string())?;
    labels::refresh(state, &name).await;
    let store = state.store.clone();
    blocking(move || {
        let info = store.get(&name).map_err(|e| e.to_string())?;
        // Creation order: the last one is the newest, whatever the names say.
        let placed = snapshots::by_creation(&store.config.snapshots_path, &name, true);
        let (plain, markers): (Vec<String>, Vec<String>) = placed
            .into_iter()
            .map(|p| p.name)
            .partition(|s| !names::is_marker(s));
        Ok(json!({ "Volume": {
            "Name": info.name,
            "Mountpoint": info.mountpoint,
            "CreatedAt": info.created_at,
            "NonMigrable": info.status["NonMigrable"],
            "Options": info.status["Options"],
            "Labels": info.status["Labels"],
            "Mounts": info.status["Mounts"],
            "Snapshots": plain.len(),
            "LatestSnapshot": plain.last(),
            "SentMarkers": markers,
        }}))
    })
    .await
}
