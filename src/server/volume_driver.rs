//! Docker's side of the socket: `/Plugin.Activate` and the `/VolumeDriver.*`
//! calls the Docker daemon makes (Create, Remove, Mount, Unmount, Path, Get,
//! List, Capabilities). Shapes and error texts follow buttervolume 3.13.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, decode, AppState, Reply};
use crate::labels;

/// Docker records a new volume's labels only after our Create returns.
const LABEL_DELAY: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct NameRequest {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Opts", default)]
    opts: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct MountRequest {
    #[serde(rename = "Name")]
    name: String,
    /// Docker's mount ID; older daemons may omit it.
    #[serde(rename = "ID", default)]
    id: Option<String>,
}

pub async fn route(state: &Arc<AppState>, path: &str, body: &Value) -> Option<Reply> {
    let store = state.store.clone();
    let reply = match path {
        "/Plugin.Activate" => Ok(json!({ "Implements": ["VolumeDriver"] })),
        "/VolumeDriver.Capabilities" => Ok(json!({ "Capabilities": { "Scope": "local" } })),
        "/VolumeDriver.Create" => {
            let req: CreateRequest = match decode(body) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let name = req.name.clone();
            let created = blocking(move || {
                store
                    .create(&req.name, &req.opts.unwrap_or_default())
                    .map_err(|e| e.to_string())
            })
            .await;
            if created.is_ok() {
                labels::refresh_later(state, &name, LABEL_DELAY);
            }
            created.map(|()| json!({}))
        }
        "/VolumeDriver.Remove" => match decode::<NameRequest>(body) {
            Ok(req) => blocking(move || store.remove(&req.name).map_err(|e| e.to_string()))
                .await
                .map(|()| json!({})),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Mount" => match decode::<MountRequest>(body) {
            Ok(req) => blocking({
                labels::refresh_later(state, &req.name, Duration::ZERO);
                move || {
                    let id = req.id.unwrap_or_default();
                    store.mount(&req.name, &id).map_err(|e| e.to_string())
                }
            })
            .await
            .map(|path| json!({ "Mountpoint": path })),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Unmount" => match decode::<MountRequest>(body) {
            Ok(req) => blocking(move || {
                let id = req.id.unwrap_or_default();
                store.unmount(&req.name, &id).map_err(|e| e.to_string())
            })
            .await
            .map(|()| json!({})),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Path" => match decode::<NameRequest>(body) {
            Ok(req) => store
                .existing(&req.name)
                .map(|path| json!({ "Mountpoint": path }))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        "/VolumeDriver.Get" => match decode::<NameRequest>(body) {
            Ok(req) => store
                .get(&req.name)
                .map(|info| {
                    let mut volume = json!({
                        "Name": info.name,
                        "Mountpoint": info.mountpoint,
                        "Status": info.status,
                    });
                    if let Some(created) = info.created_at {
                        volume["CreatedAt"] = json!(created);
                    }
                    json!({ "Volume": volume })
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        "/VolumeDriver.List" => blocking(move || store.list().map_err(|e| e.to_string()))
            .await
            .map(|names| {
                let volumes: Vec<Value> = names.into_iter().map(|n| json!({ "Name": n })).collect();
                json!({ "Volumes": volumes })
            }),
        _ => return None,
    };
    Some(reply)
}
