//! Running one job: the [`JobActions`] seam between the scheduler and the
//! code that touches volumes and peers.
//!
//! The scheduler only decides *when*; what a job does goes through this
//! trait, so tests drive the scheduler with a fake that records calls, fails
//! on demand or blocks, and the daemon plugs in [`StoreActions`], which calls
//! the same functions as the HTTP endpoints. Every method blocks for as
//! long as its work takes; which threads call them is said in `pool.rs`.

use std::sync::Arc;

use super::Action;
pub use crate::snapshots::Taken;
use crate::volumes::VolumeStore;

/// Why one action failed: the error of the code it called, kept whole (its
/// message is what the log and the job's last result show).
pub type ActionFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job failed. The texts are those of the job's last result
/// (`error: <this>`) in the history and the listing.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("snapshot failed: {0}")]
    Snapshot(#[source] ActionFailure),
    #[error("snapshot {snapshot} taken, but sending it to {host} failed: {source}")]
    Send {
        snapshot: String,
        host: String,
        source: ActionFailure,
    },
    #[error("pulling from the peer failed: {0}")]
    Prefetch(#[source] ActionFailure),
    #[error("purge failed: {0}")]
    Purge(#[source] ActionFailure),
    #[error("snapshot {snapshot} taken, but synchronizing from {hosts} failed: {source}")]
    Sync {
        snapshot: String,
        hosts: String,
        source: ActionFailure,
    },
    #[error("backup failed: {0}")]
    Backup(#[source] ActionFailure),
    #[error("check of the backups failed: {0}")]
    CheckBackups(#[source] ActionFailure),
    /// The job could not run to its end: it panicked, or no worker thread
    /// could be started.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// What jobs can do. Blocking.
pub trait JobActions: Send + Sync + 'static {
    /// Snapshots a volume unless it is unchanged since its newest snapshot;
    /// returns the snapshot that holds its state and whether it is new, or
    /// `None` for a volume with nothing to keep (empty, never snapshotted).
    fn snapshot(&self, volume: &str) -> Result<Option<Taken>, ActionFailure>;
    /// True when the volume follows its container and no container uses it
    /// here: its replicate rounds pull instead of push ([`crate::follow`]).
    fn idle_follower(&self, volume: &str) -> bool;
    /// An idle round: pulls what appeared on `host`, restores nothing.
    fn prefetch(&self, volume: &str, host: &str) -> Result<String, ActionFailure>;
    /// Deletes a snapshot a failed replication took.
    fn remove_snapshot(&self, snapshot: &str) -> Result<(), ActionFailure>;
    /// Sends a snapshot to a host.
    fn send(&self, snapshot: &str, host: &str) -> Result<(), ActionFailure>;
    /// True when `host` confirmed it received `snapshot` (its sent marker
    /// is here): a round of a volume unchanged since then has nothing to
    /// do, not even asking the peer.
    fn already_sent(&self, snapshot: &str, host: &str) -> bool;
    /// Purges a volume's snapshots, returns the deleted names.
    fn purge(&self, volume: &str, pattern: &str) -> Result<Vec<String>, ActionFailure>;
    /// Pulls a volume's content from hosts.
    fn sync(&self, volume: &str, hosts: &[String]) -> Result<(), ActionFailure>;
    /// Backs a volume up to a restic target, then thins its backups there
    /// by the target's `KEEP`; returns a one-line summary.
    fn backup(&self, volume: &str, target: &str) -> Result<String, ActionFailure>;
    /// Runs restic's check on a target; returns its summary.
    fn check_backups(&self, target: &str) -> Result<String, ActionFailure>;
}

/// The result of a job on a volume Docker created and nothing wrote yet.
const NOTHING_TO_KEEP: &str = "nothing to keep: the volume is empty and was never snapshotted";

/// Runs one job to completion; returns a one-line summary.
///
/// A replicate round of a volume that follows its container and is not in
/// use here pulls instead ([`JobActions::idle_follower`]): a node never
/// pushes a state no container wrote there. Otherwise
/// `replicate` and `synchronize` snapshot first, as the reference does,
/// except that a volume unchanged since its newest snapshot is not
/// snapshotted again (that snapshot holds its state), and not sent again
/// when the peer confirmed it has that snapshot: a round of an unchanged,
/// replicated volume costs two ioctls and no SSH at all. A failed send removes the snapshot it
/// took (upstream #95), so the next round starts from a state the peer
/// may hold. Unlike the reference, `synchronize` does not pull into a
/// volume it could not snapshot: the snapshot is the only way back if the
/// pull goes wrong.
pub fn run(actions: &dyn JobActions, volume: &str, action: &Action) -> Result<String, JobError> {
    match action {
        Action::Snapshot => Ok(
            match actions.snapshot(volume).map_err(JobError::Snapshot)? {
                Some(taken) if taken.created => format!("snapshot {}", taken.name),
                Some(taken) => format!("unchanged since {}", taken.name),
                None => NOTHING_TO_KEEP.to_string(),
            },
        ),
        Action::Replicate { host } if actions.idle_follower(volume) => actions
            .prefetch(volume, host)
            .map(|summary| format!("idle, pulled: {summary}"))
            .map_err(JobError::Prefetch),
        Action::Replicate { host } => {
            let Some(taken) = actions.snapshot(volume).map_err(JobError::Snapshot)? else {
                return Ok(NOTHING_TO_KEEP.to_string());
            };
            let snapshot = taken.name;
            if !taken.created && actions.already_sent(&snapshot, host) {
                return Ok(format!("unchanged since {snapshot}, already on {host}"));
            }
            if let Err(source) = actions.send(&snapshot, host) {
                if taken.created {
                    if let Err(e) = actions.remove_snapshot(&snapshot) {
                        tracing::warn!(snapshot, error = %e, "cannot remove the snapshot of a failed replication");
                    }
                }
                return Err(JobError::Send {
                    snapshot,
                    host: host.clone(),
                    source,
                });
            }
            Ok(format!("sent {snapshot} to {host}"))
        }
        Action::Purge { pattern } => {
            let purged = actions.purge(volume, pattern).map_err(JobError::Purge)?;
            Ok(format!("purged {} snapshot(s)", purged.len()))
        }
        Action::Backup { target } => actions.backup(volume, target).map_err(JobError::Backup),
        Action::CheckBackups { target } => actions
            .check_backups(target)
            .map_err(JobError::CheckBackups),
        Action::Synchronize { hosts } => {
            let snapshot = actions
                .snapshot(volume)
                .map_err(JobError::Snapshot)?
                .map_or_else(|| "(none: empty volume)".to_string(), |t| t.name);
            actions
                .sync(volume, hosts)
                .map_err(|source| JobError::Sync {
                    snapshot: snapshot.clone(),
                    hosts: hosts.join(","),
                    source,
                })?;
            Ok(format!(
                "snapshot {snapshot}, synchronized from {}",
                hosts.join(",")
            ))
        }
    }
}

/// The daemon's actions: the same functions the HTTP endpoints call.
pub struct StoreActions {
    store: Arc<VolumeStore>,
}

impl StoreActions {
    pub fn new(store: Arc<VolumeStore>) -> StoreActions {
        StoreActions { store }
    }
}

impl JobActions for StoreActions {
    fn snapshot(&self, volume: &str) -> Result<Option<Taken>, ActionFailure> {
        if crate::snapshots::is_fresh(&self.store, volume)? {
            return Ok(None);
        }
        Ok(Some(crate::snapshots::snapshot_if_changed(
            &self.store,
            volume,
        )?))
    }

    fn idle_follower(&self, volume: &str) -> bool {
        self.store.mount_count(volume) == 0 && crate::follow::enabled(&self.store, volume)
    }

    fn prefetch(&self, volume: &str, host: &str) -> Result<String, ActionFailure> {
        Ok(crate::follow::prefetch(&self.store, host, volume)?)
    }

    fn remove_snapshot(&self, snapshot: &str) -> Result<(), ActionFailure> {
        Ok(crate::snapshots::remove(&self.store, snapshot)?)
    }

    fn send(&self, snapshot: &str, host: &str) -> Result<(), ActionFailure> {
        let report = crate::replication::send(&self.store, snapshot, host, false)?;
        crate::metrics::record_send(host, report.bytes);
        Ok(())
    }

    fn already_sent(&self, snapshot: &str, host: &str) -> bool {
        let marker = format!("{snapshot}@{host}");
        self.store.config().snapshots_path.join(marker).exists()
    }

    fn purge(&self, volume: &str, pattern: &str) -> Result<Vec<String>, ActionFailure> {
        let pattern = crate::purge::Pattern::parse(pattern)?;
        let options = crate::snapshots::PurgeOptions::default();
        Ok(
            crate::snapshots::purge(&self.store, volume, &pattern, &options)?
                .into_iter()
                .filter(|d| !d.keep())
                .map(|d| d.name)
                .collect(),
        )
    }

    fn backup(&self, volume: &str, target: &str) -> Result<String, ActionFailure> {
        let done = crate::backup::backup(&self.store, target, volume)?;
        let forgotten = crate::backup::keep::thin(&self.store, target, volume)?;
        let what = if done.created {
            format!(
                "backed up {} to {target} as {}",
                done.snapshot,
                short(&done.id)
            )
        } else {
            format!("{} already in {target}", done.snapshot)
        };
        Ok(if forgotten.is_empty() {
            what
        } else {
            format!("{what}, forgot {} old backup(s)", forgotten.len())
        })
    }

    fn check_backups(&self, target: &str) -> Result<String, ActionFailure> {
        Ok(crate::backup::check(&self.store, target, None)?)
    }

    fn sync(&self, volume: &str, hosts: &[String]) -> Result<(), ActionFailure> {
        Ok(crate::replication::sync(
            &self.store,
            &[volume.to_string()],
            hosts,
            false,
        )?)
    }
}

/// A restic id as restic prints it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
