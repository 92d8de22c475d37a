//! Docker's side of the socket: `/Plugin.Activate` and the `/VolumeDriver.*`
//! calls the Docker daemon makes (Create, Remove, Mount, Unmount, Path, Get,
//! List, Capabilities). Shapes and error texts follow buttervolume 3.13.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{blocking, decode, ApiError, AppState, Reply};
use crate::api::endpoint::Docker;
use crate::api::{CreateRequest, MountRequest, NameRequest};
use crate::cluster;
use crate::follow;
use crate::labels;
use crate::schedule::volume_options;
use crate::schedule::Scheduler;
use crate::volumes::{VolumeInfo, VolumeStore};

/// Docker records a new volume's labels only after our Create returns.
const LABEL_DELAY: Duration = Duration::from_secs(1);

/// Activate and Capabilities cannot fail, and answer without `Err`
/// (see [`crate::api::endpoint::Route::carries_err`]).
pub async fn route(state: &Arc<AppState>, endpoint: Docker, body: &Value) -> Reply {
    match endpoint {
        Docker::Activate => Ok(json!({ "Implements": ["VolumeDriver"] })),
        Docker::Capabilities => Ok(json!({ "Capabilities": { "Scope": "local" } })),
        Docker::Create => create(state, body).await,
        Docker::Remove => remove(state, body).await,
        Docker::Mount => mount(state, body).await,
        Docker::Unmount => unmount(state, body).await,
        Docker::Path => volume_path(state, body).await,
        Docker::Get => get(state, body).await,
        Docker::List => list(state).await,
    }
}

/// Creates the volume, then writes the schedule lines its options ask for
/// ([`volume_options`]), each only if absent. Everything is validated
/// first; options that schedule are refused while the schedule is paused.
async fn create(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: CreateRequest = decode(body)?;
    let (opts, jobs) = volume_options::split(&req.opts.unwrap_or_default())?;
    if !jobs.is_empty() && state.scheduler.is_paused() {
        return Err(volume_options::VolumeOptionError::Paused {
            volume: req.name.clone(),
        }
        .into());
    }
    let store = state.store.clone();
    let scheduler = state.scheduler.clone();
    let name = req.name.clone();
    blocking(move || {
        store.create(&req.name, &opts)?;
        for job in jobs {
            scheduler.schedule_if_absent(&req.name, &job.action, &job.timer)?;
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    labels::refresh_later(&state.store, &name, LABEL_DELAY);
    Ok(json!({}))
}

async fn remove(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: NameRequest = decode(body)?;
    let store = state.store.clone();
    blocking(move || store.remove(&req.name)).await?;
    Ok(json!({}))
}

/// The first Mount of a volume that follows its container brings the
/// peer's newer state first ([`follow::before_first_mount`]). A Mount
/// without an ID (not Docker: a raw-API client) only answers the
/// mountpoint, as the reference does: it is not counted, so it neither
/// holds the volume against Remove nor starts a follow.
async fn mount(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: MountRequest = decode(body)?;
    labels::refresh_later(&state.store, &req.name, Duration::ZERO);
    let store = state.store.clone();
    let scheduler = state.scheduler.clone();
    let path = blocking(move || {
        let Some(id) = req.docker_id() else {
            return Ok(store.existing(&req.name)?);
        };
        if let Some(cluster) = store.cluster().filter(|_| store.mount_count(&req.name) > 0) {
            // Another container here: only while this node still owns it.
            cluster.still_owner(&req.name)?;
        }
        if store.mount_count(&req.name) == 0 {
            if let Some((cluster, peers)) = owned_volume(&store, &scheduler, &req.name) {
                let follows = follow::enabled(&store, &req.name);
                cluster::mount::before_first_mount(&cluster, &store, &req.name, &peers, follows)?;
            } else if let Some(peer) = follow_peer(&store, &scheduler, &req.name) {
                let followed = follow::before_first_mount(&store, &peer, &req.name);
                follow::record(&store, &req.name, followed.as_ref().map(|_| ()));
                followed?;
            }
        }
        Ok::<_, ApiError>(store.mount(&req.name, id)?)
    })
    .await?;
    Ok(json!({ "Mountpoint": path }))
}

/// The last Unmount of a volume that follows its container sends the
/// state the app stopped with ([`follow::after_last_unmount`]); the
/// unmount itself is recorded first, whatever the send does. An Unmount
/// without an ID matches no counted Mount: success, nothing else.
async fn unmount(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: MountRequest = decode(body)?;
    let store = state.store.clone();
    let scheduler = state.scheduler.clone();
    blocking(move || {
        let Some(id) = req.docker_id() else {
            return Ok(());
        };
        store.unmount(&req.name, id)?;
        if store.mount_count(&req.name) == 0 && store.existing(&req.name).is_ok() {
            if let Some((cluster, peers)) = owned_volume(&store, &scheduler, &req.name) {
                let follows = follow::enabled(&store, &req.name);
                let peer = peers.first().map(String::as_str);
                let sent =
                    cluster::mount::after_last_unmount(&cluster, &store, &req.name, peer, follows)?;
                if let Some(sent) = sent {
                    tracing::info!(volume = %req.name, "followed: {sent}");
                }
            } else if let Some(peer) = follow_peer(&store, &scheduler, &req.name) {
                let sent = follow::after_last_unmount(&store, &peer, &req.name);
                follow::record(&store, &req.name, sent.as_ref().map(|_| ()));
                tracing::info!(volume = %req.name, "followed: {}", sent?);
            }
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(json!({}))
}

/// In cluster mode every volume has an owner ([`cluster::mount`]): the
/// cluster, and the hosts of its active `replicate:` lines (the first is
/// its pair peer).
fn owned_volume(
    store: &VolumeStore,
    scheduler: &Scheduler,
    volume: &str,
) -> Option<(std::sync::Arc<cluster::Cluster>, Vec<String>)> {
    let cluster = store.cluster()?.clone();
    Some((cluster, scheduler.replicate_peers(volume)))
}

/// The peer `volume` follows its container to: the host of its active
/// `replicate:` line, when follow is on for it.
fn follow_peer(store: &VolumeStore, scheduler: &Scheduler, volume: &str) -> Option<String> {
    let peer = scheduler.replicate_peer(volume)?;
    follow::enabled(store, volume).then_some(peer)
}

async fn volume_path(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: NameRequest = decode(body)?;
    let store = state.store.clone();
    let path = blocking(move || store.existing(&req.name)).await?;
    Ok(json!({ "Mountpoint": path }))
}

async fn get(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: NameRequest = decode(body)?;
    let store = state.store.clone();
    let info = blocking(move || store.get(&req.name)).await?;
    Ok(json!({ "Volume": docker_volume(info) }))
}

/// A volume as Docker's `Get` shows it (`Status` is what `docker volume
/// inspect` prints).
fn docker_volume(info: VolumeInfo) -> Value {
    let mut volume = json!({
        "Name": info.name,
        "Mountpoint": info.mountpoint,
        "Status": {
            "Options": info.options,
            "Labels": info.labels,
            "NonMigrable": info.nonmigrable,
            "Mounts": info.mounts,
        },
    });
    if let Some(created) = info.created_at {
        volume["CreatedAt"] = json!(created);
    }
    volume
}

async fn list(state: &Arc<AppState>) -> Reply {
    let store = state.store.clone();
    let names = blocking(move || store.list()).await?;
    let volumes: Vec<Value> = names.into_iter().map(|n| json!({ "Name": n })).collect();
    Ok(json!({ "Volumes": volumes }))
}
