//! Docker labels of volumes, learned from the Docker engine API.
//!
//! Docker never passes labels to a volume driver (Create gets only `Opts`),
//! and it records them only after our Create returns. So the daemon asks
//! Docker (`GET /volumes/<name>` on DOCKER_SOCKET) in the background a moment
//! after a Create and at each Mount, and on `inspect`, and copies the labels
//! into the volume's own metadata, where they survive restores, sends and a
//! Docker that has forgotten the volume. When Docker is not reachable (plain
//! CLI use, tests without Docker) nothing changes.

use std::sync::Arc;
use std::time::Duration;

use crate::volumes::VolumeStore;

/// Asks Docker for `name`'s labels and stores them if they changed.
pub async fn refresh(store: &Arc<VolumeStore>, name: &str) {
    let docker = store.config().docker_socket.clone();
    if !docker.exists() {
        return;
    }
    let labels = match crate::docker::volume_labels(&docker, name).await {
        Ok(Some(labels)) => labels,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(volume = name, error = %e, "cannot read labels from Docker");
            return;
        }
    };
    let store = store.clone();
    let name = name.to_string();
    let _ = tokio::task::spawn_blocking(move || match store.record_labels(&name, labels) {
        Ok(true) => tracing::info!(volume = %name, "labels recorded"),
        Ok(false) => {}
        Err(e) => tracing::warn!(volume = %name, error = %e, "cannot record labels"),
    })
    .await;
}

/// Refreshes labels in the background after `delay` (Docker stores them
/// only once our Create has returned).
pub fn refresh_later(store: &Arc<VolumeStore>, name: &str, delay: Duration) {
    let store = store.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        refresh(&store, &name).await;
    });
}
