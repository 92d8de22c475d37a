//! `VolumeDriver.Owner`: a volume's owner record ([`crate::cluster`]).

use std::sync::Arc;

use serde_json::Value;

use super::{blocking, decode, to_json, ApiError, AppState, Reply};
use crate::api::NameRequest;

pub async fn route(state: &Arc<AppState>, body: &Value) -> Reply {
    let req: NameRequest = decode(body)?;
    crate::names::check_volume(&req.name)?;
    let Some(cluster) = state.store.cluster().cloned() else {
        return Err(ApiError::Incomplete(
            "cluster mode is off on this node (ETCD_ENDPOINTS is empty)",
        ));
    };
    let reply =
        blocking(move || Ok::<_, ApiError>(crate::cluster::report::owner(&cluster, &req.name)))
            .await?;
    Ok(to_json(reply))
}
