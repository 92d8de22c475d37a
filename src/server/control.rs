//! buttervolume's own endpoints (snapshots, restore, clone, purge, schedule,
//! send, sync): what the `buttervolume` CLI and the deploy handler call.

use std::sync::Arc;

use serde_json::Value;

use super::{AppState, Reply};

pub async fn route(_state: &Arc<AppState>, _path: &str, _body: Value) -> Option<Reply> {
    None
}
