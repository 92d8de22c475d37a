//! `VolumeDriver.Status`: what `buttervolume status` shows
//! ([`crate::status`]); no request body.

use std::sync::Arc;

use super::{blocking, to_json, AppState, Reply};
use crate::api::path;

pub async fn route(state: &Arc<AppState>, endpoint: &str) -> Option<Reply> {
    if endpoint != path::STATUS {
        return None;
    }
    let state = state.clone();
    let status =
        blocking(move || crate::status::gather(&state.store, &state.scheduler, &state.sizes)).await;
    Some(status.map(to_json))
}
