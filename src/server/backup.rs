//! The backup endpoints ([`crate::backup`]): back up a volume to a restic
//! target, list a target's backups, restore one, check the target.

use std::sync::Arc;

use serde_json::Value;

use super::{blocking, decode, to_json, AppState, Reply};
use crate::api::backup::{
    BackupCheckReply, BackupCheckRequest, BackupEntry, BackupListReply, BackupListRequest,
    BackupReply, BackupRequest, BackupRestoreReply, BackupRestoreRequest,
};
use crate::api::endpoint::Backup;
use crate::backup;

pub async fn route(state: &Arc<AppState>, endpoint: Backup, body: &Value) -> Reply {
    let store = state.store.clone();
    match endpoint {
        Backup::Backup => match decode::<BackupRequest>(body) {
            Ok(req) => blocking(move || backup::backup(&store, &req.target, &req.name))
                .await
                .map(|b| {
                    to_json(BackupReply {
                        snapshot: b.snapshot,
                        id: b.id,
                        created: b.created,
                        files_new: b.files_new,
                        files_changed: b.files_changed,
                        files_unmodified: b.files_unmodified,
                        bytes_added: b.bytes_added,
                        bytes: b.bytes,
                    })
                }),
            Err(e) => Err(e),
        },
        Backup::List => match decode::<BackupListRequest>(body) {
            Ok(req) => blocking(move || backup::list(&store, &req.target, req.name.as_deref()))
                .await
                .map(|list| {
                    to_json(BackupListReply {
                        backups: list
                            .into_iter()
                            .map(|l| BackupEntry {
                                volume: l.volume,
                                snapshot: l.snapshot,
                                id: l.id,
                                time: l.time,
                                bytes: l.bytes,
                            })
                            .collect(),
                    })
                }),
            Err(e) => Err(e),
        },
        Backup::Restore => match decode::<BackupRestoreRequest>(body) {
            Ok(req) => blocking(move || {
                backup::restore::restore(&store, &req.target, &req.name, req.new_name.as_deref())
            })
            .await
            .map(|r| {
                to_json(BackupRestoreReply {
                    volume: r.volume,
                    snapshot: r.snapshot,
                    id: r.id,
                    volume_backup: r.previous,
                })
            }),
            Err(e) => Err(e),
        },
        Backup::Check => match decode::<BackupCheckRequest>(body) {
            Ok(req) => blocking(move || {
                backup::check(&store, &req.target, req.read_data_subset.as_deref())
            })
            .await
            .map(|summary| to_json(BackupCheckReply { summary })),
            Err(e) => Err(e),
        },
    }
}
