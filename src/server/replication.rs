//! Replication endpoints: `Snapshot.Send` (btrfs send to a peer over SSH)
//! and `Volume.Sync` (rsync pull), as in buttervolume 3.13, and
//! `Snapshot.Receive` (pull a volume's newest snapshot from a peer) and
//! `Replicate` (snapshot now and send), as in upstream's post-3.13 master.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{blocking, decode, to_json, ApiError, AppState, Reply};
use crate::api::endpoint::Replication;
use crate::api::{
    HandoverReply, PeerVolumeRequest, SendRequest, SnapshotReply, SummaryReply, SyncRequest,
    TransferStatus, TransfersReply,
};
use crate::replication::{self, SendOptions};
use crate::{names, snapshots};

pub async fn route(state: &Arc<AppState>, endpoint: Replication, body: &Value) -> Reply {
    match endpoint {
        Replication::Send => send(state, body).await,
        Replication::Receive => receive(state, body).await,
        Replication::Replicate => replicate(state, body).await,
        Replication::Handover => handover(state, body).await,
        Replication::Sync => sync(state, body).await,
        Replication::Transfers => transfers(state).await,
    }
}

async fn send(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: SendRequest = decode(body)?;
    let detail = req.detail;
    let store = state.store.clone();
    let summary = blocking(move || {
        // The send ends by recording `<snapshot>@<host>`: refuse a host too
        // long for that before anything is sent.
        names::check_marker_host(&req.host)?;
        let defaults = SendOptions::from_config(store.config());
        let options = SendOptions {
            compress: req.compress.unwrap_or(defaults.compress),
            bwlimit_mib: req.bwlimit.unwrap_or(defaults.bwlimit_mib),
            ..defaults
        };
        let report = replication::send_with(&store, &req.name, &req.host, req.test, options)?;
        crate::metrics::record_send(&req.host, report.bytes);
        Ok::<_, ApiError>(report.summary(&req.name, &req.host))
    })
    .await?;
    tracing::info!("{summary}");
    // The reference's request gets the reference's reply, `{"Err": ""}`.
    if detail {
        Ok(to_json(SummaryReply { summary }))
    } else {
        Ok(json!({}))
    }
}

async fn receive(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: PeerVolumeRequest = decode(body)?;
    let store = state.store.clone();
    let report = blocking(move || {
        replication::pull::receive(&store, &req.host, &req.name).map(|r| (r, req))
    })
    .await;
    let (report, req) = report?;
    crate::metrics::record_pull(&req.host, report.bytes);
    let summary = report.summary(&req.host);
    tracing::info!("{summary}");
    Ok(to_json(SnapshotReply {
        snapshot: report.snapshot,
        summary: Some(summary),
        created: None,
    }))
}

/// Snapshot now and send it (upstream's `replicate <host> <volume>`).
async fn replicate(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: PeerVolumeRequest = decode(body)?;
    let store = state.store.clone();
    let (snapshot, summary) = blocking(move || {
        names::check_marker_host(&req.host)?;
        let snapshot = snapshots::snapshot(&store, &req.name)?;
        match replication::send(&store, &snapshot, &req.host, false) {
            Ok(report) => {
                crate::metrics::record_send(&req.host, report.bytes);
                Ok::<_, ApiError>((snapshot.clone(), report.summary(&snapshot, &req.host)))
            }
            Err(e) => {
                // A failed replication leaves no fresh snapshot behind
                // (upstream #95): the next one starts over.
                let _ = snapshots::remove(&store, &snapshot);
                Err(e.into())
            }
        }
    })
    .await?;
    tracing::info!("{summary}");
    Ok(to_json(SnapshotReply {
        snapshot,
        summary: Some(summary),
        created: None,
    }))
}

/// One half of a handover ([`crate::handover`]).
async fn handover(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: PeerVolumeRequest = decode(body)?;
    let store = state.store.clone();
    let report = blocking(move || crate::handover::handover(&store, &req.name, &req.host)).await?;
    tracing::info!(phase = report.phase.as_str(), snapshot = %report.snapshot, bytes = report.bytes, "handover");
    Ok(to_json(HandoverReply {
        phase: report.phase.as_str().into(),
        snapshot: report.snapshot,
        rounds: report.rounds,
        bytes: report.bytes,
        critical_seconds: report.critical_seconds,
    }))
}

async fn sync(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: SyncRequest = decode(body)?;
    let store = state.store.clone();
    blocking(move || replication::sync(&store, &req.volumes, &req.hosts, req.test)).await?;
    Ok(json!({}))
}

/// The sends running now ([`Transfers`]), a full send with its estimated
/// size: the volume's last size measurement (the one `status` shows),
/// asked for in the background when there is none or it is out of date.
async fn transfers(state: &Arc<AppState>) -> Reply {
    let running = state.store.transfers().list();
    if running.is_empty() {
        return Ok(to_json(TransfersReply::default()));
    }
    let state = state.clone();
    let reply = blocking(move || {
        let transfers = running
            .into_iter()
            .map(|t| {
                let estimated_bytes = (t.full == Some(true))
                    .then(|| estimate(&state, names::volume_of(&t.snapshot)))
                    .flatten();
                TransferStatus {
                    started_at: t
                        .started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    snapshot: t.snapshot,
                    host: t.host,
                    elapsed_seconds: t.elapsed_seconds,
                    full: t.full,
                    bytes: t.stream_bytes,
                    wire_bytes: t.wire_bytes,
                    estimated_bytes,
                }
            })
            .collect();
        state.sizes.measure_in_background(state.store.clone());
        Ok::<_, ApiError>(TransfersReply { transfers })
    })
    .await?;
    Ok(to_json(reply))
}

/// The last size measurement of `volume` (queued when missing or stale).
fn estimate(state: &AppState, volume: &str) -> Option<u64> {
    let path = state.store.existing(volume).ok()?;
    let generation = state.store.fs().identity(&path).ok()?.generation;
    state
        .sizes
        .lookup(volume, generation)
        .map(|seen| seen.bytes)
}
