//! `VolumeDriver.Status`: what `buttervolume status` shows
//! ([`crate::status`]); no request body.

use std::sync::Arc;

use super::{blocking, to_json, AppState, Reply};

pub async fn route(state: &Arc<AppState>) -> Reply {
    let state = state.clone();
    let status =
        blocking(move || crate::status::gather(&state.store, &state.scheduler, &state.sizes)).await;
    status.map(to_json)
}
