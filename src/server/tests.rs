//! Routing against the endpoint table: every endpoint reaches its handler
//! and is labelled by its own name, on a store over the fake.

use std::collections::HashMap;

use super::*;
use crate::api::endpoint::ENDPOINTS;
use crate::schedule::{Scheduler, SchedulerOptions, StoreActions, SystemClock};
use crate::subvolumes::fake::FakeSubvolumes;

/// A server state whose every path (schedule and its pause file included)
/// is in `dir`.
fn state(dir: &Path) -> Arc<AppState> {
    let env: HashMap<String, String> = [
        ("VOLUMES_PATH", "volumes"),
        ("SNAPSHOTS_PATH", "snapshots"),
        ("TEST_REMOTE_PATH", "received"),
        ("STATE_PATH", "state"),
        ("SCHEDULE", "schedule.csv"),
        ("SSH_DIR", "ssh"),
        ("BACKUP_TARGETS_PATH", "backup"),
        ("DOCKER_SOCKET", "docker.sock"),
        ("RUNPATH", "run"),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            format!("BUTTERVOLUME_{k}"),
            dir.join(v).display().to_string(),
        )
    })
    .collect();
    let config = Arc::new(Config::resolve(&env, &HashMap::new()).unwrap());
    config.create_dirs().unwrap();
    let fs = Arc::new(FakeSubvolumes::default());
    let store = Arc::new(VolumeStore::open_with(config.clone(), fs).unwrap());
    let scheduler = Scheduler::new(
        SchedulerOptions::from_config(&config),
        Arc::new(StoreActions::new(store.clone())),
        Arc::new(SystemClock),
    );
    Arc::new(AppState {
        config,
        store,
        scheduler,
        sizes: Arc::default(),
    })
}

/// Every endpoint of the table is answered by a handler (200, not the
/// 404 of unknown paths) and counted under its own path, never `other`;
/// its reply carries `Err` exactly when the table says so. An empty body
/// is a bad request to every endpoint that needs one, so nothing is done.
#[tokio::test]
async fn every_endpoint_is_routed_and_labelled_by_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    for route in &ENDPOINTS {
        let answer = answer(&state, &hyper::Method::POST, route.path, json!({})).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {}",
            route.path,
            answer.reply
        );
        assert_eq!(answer.label, route.path);
        assert_eq!(
            answer.reply.get("Err").is_some(),
            route.carries_err,
            "{}: {}",
            route.path,
            answer.reply
        );
    }
    let handover = answer(
        &state,
        &hyper::Method::POST,
        "/VolumeDriver.Handover",
        json!({}),
    )
    .await;
    assert_eq!(handover.label, "/VolumeDriver.Handover");
    let transfers = answer(
        &state,
        &hyper::Method::GET,
        "/VolumeDriver.Transfers",
        json!({}),
    )
    .await;
    assert_eq!(transfers.label, "/VolumeDriver.Transfers");
    assert_eq!(transfers.reply["Err"], "");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    for path in ["/", "/VolumeDriver.Nope", "/VolumeDriver.Mount/x"] {
        let answer = answer(&state, &hyper::Method::POST, path, json!({})).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.label, endpoint::OTHER, "{path}");
    }
    let listed = answer(
        &state,
        &hyper::Method::GET,
        "/VolumeDriver.Snapshot.List/db",
        json!({}),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.label, crate::api::path::SNAPSHOT_LIST);
}
