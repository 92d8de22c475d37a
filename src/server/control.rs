//! buttervolume's own endpoints for local data: snapshot, list, remove,
//! restore, clone, purge and inspect. JSON shapes follow buttervolume 3.13
//! (what the CLI and the cluster's deploy handler read).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{blocking, decode, to_json, ApiError, AppState, Reply};
use crate::api::endpoint::Control;
use crate::api::{
    CloneReply, CloneRequest, NameRequest, PurgeReply, PurgeRequest, RestoreReply, RestoreRequest,
    SnapshotReply, SnapshotRequest, SnapshotsReply,
};
use crate::labels;
use crate::names;
use crate::purge::Pattern;
use crate::snapshots;
use crate::takeover;

/// `volume`: the `<volume>` of a `Snapshot.List/<volume>` request.
pub async fn route(
    state: &Arc<AppState>,
    endpoint: Control,
    volume: Option<&str>,
    body: Value,
) -> Reply {
    if let (Control::SnapshotList, Some(volume)) = (endpoint, volume) {
        return list(state, Some(volume.to_string())).await;
    }
    match endpoint {
        Control::Snapshot => snapshot(state, &body).await,
        // 3.13 sends GET (every volume's) or uses the path suffix above;
        // the 3.4 CLI POSTs `{"Name": V}` (or `null`) and expects only V's.
        Control::SnapshotList => match body.get("Name") {
            None | Some(Value::Null) => list(state, None).await,
            Some(_) => match decode::<NameRequest>(&body) {
                Ok(req) => match names::check_volume(&req.name) {
                    Ok(()) => list(state, Some(req.name)).await,
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e),
            },
        },
        Control::SnapshotRemove => remove(state, &body).await,
        Control::SnapshotRestore => restore(state, &body).await,
        Control::Clone => clone(state, &body).await,
        Control::Purge => purge(state, &body).await,
        Control::Inspect => match decode::<NameRequest>(&body) {
            Ok(req) => inspect(state, req.name).await,
            Err(e) => Err(e),
        },
    }
}

async fn snapshot(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: SnapshotRequest = decode(body)?;
    let store = state.store.clone();
    let taken = blocking(move || {
        if req.if_changed {
            snapshots::snapshot_if_changed(&store, &req.name)
        } else {
            snapshots::snapshot(&store, &req.name).map(|name| snapshots::Taken {
                name,
                created: true,
            })
        }
    })
    .await?;
    Ok(to_json(SnapshotReply {
        snapshot: taken.name,
        summary: None,
        created: Some(taken.created),
    }))
}

async fn list(state: &Arc<AppState>, volume: Option<String>) -> Reply {
    let store = state.store.clone();
    let snapshots = blocking(move || snapshots::list(&store, volume.as_deref())).await?;
    Ok(to_json(SnapshotsReply { snapshots }))
}

async fn remove(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: NameRequest = decode(body)?;
    let store = state.store.clone();
    blocking(move || snapshots::remove(&store, &req.name)).await?;
    Ok(json!({}))
}

async fn restore(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: RestoreRequest = decode(body)?;
    let store = state.store.clone();
    let volume_backup = blocking(move || {
        // `restore <volume>`: its newest state, unless a peer holds a
        // newer one (the cluster contract, crate::takeover).
        if !req.force && !req.name.contains('@') {
            takeover::check(&store, &req.name)?;
        }
        snapshots::restore(&store, &req.name, req.target.as_deref(), req.force)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(to_json(RestoreReply { volume_backup }))
}

async fn clone(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: CloneRequest = decode(body)?;
    let target = req
        .target
        .ok_or(ApiError::Incomplete("Clone needs a Target volume name"))?;
    let store = state.store.clone();
    let volume_cloned = blocking(move || snapshots::clone(&store, &req.name, &target)).await?;
    Ok(to_json(CloneReply { volume_cloned }))
}

/// 3.13's reply: `{"Err": ""}`, `Purged` for a dry run, `Explain` when
/// asked; an invalid pattern answers 3.13's exact text (the log says why).
async fn purge(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: PurgeRequest = decode(body)?;
    let pattern = Pattern::parse(&req.pattern).map_err(|e| {
        tracing::error!(volume = %req.name, error = %e, "purge refused");
        ApiError::InvalidPurgePattern
    })?;
    let store = state.store.clone();
    let options = snapshots::PurgeOptions {
        dry_run: req.dry_run,
        at: req.at.clone(),
    };
    let volume = req.name.clone();
    let decisions = blocking(move || snapshots::purge(&store, &volume, &pattern, &options)).await?;
    let purged = req.dry_run.then(|| {
        decisions
            .iter()
            .filter(|d| !d.keep())
            .map(|d| d.name.clone())
            .collect()
    });
    let explain = req
        .explain
        .then(|| decisions.iter().map(|d| d.explained()).collect());
    Ok(to_json(PurgeReply { purged, explain }))
}

/// Everything about one volume, labels refreshed from Docker when it answers.
async fn inspect(state: &Arc<AppState>, name: String) -> Reply {
    let store = state.store.clone();
    let checked = name.clone();
    blocking(move || store.existing(&checked)).await?;
    labels::refresh(&state.store, &name).await;
    let store = state.store.clone();
    blocking(move || {
        let info = store.get(&name)?;
        // Creation order: the last one is the newest, whatever the names say.
        let placed =
            snapshots::by_creation(store.fs(), &store.config().snapshots_path, &name, true);
        let (plain, markers): (Vec<String>, Vec<String>) = placed
            .into_iter()
            .map(|p| p.name)
            .partition(|s| !names::is_marker(s));
        Ok::<_, ApiError>(json!({ "Volume": {
            "Name": info.name,
            "Mountpoint": info.mountpoint,
            "CreatedAt": info.created_at,
            "NonMigrable": info.nonmigrable,
            "Options": info.options,
            "Labels": info.labels,
            "Mounts": info.mounts,
            "Snapshots": plain.len(),
            "LatestSnapshot": plain.last(),
            "SentMarkers": markers,
        }}))
    })
    .await
}
