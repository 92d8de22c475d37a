//! Follow the container: a replicated volume's state moves with its app
//! between the two nodes of a pair, so the app can start on either node and
//! find the state it stopped with.
//!
//! It applies to a volume with an active `replicate:<peer>` line, unless
//! the setting FOLLOW is `false` or the volume was created with
//! `-o follow=false`. Three moments:
//!
//! - **first Mount** on this node ([`before_first_mount`]): ask the peer
//!   for its snapshots; when the peer holds a newer state than the volume
//!   here, bring it here (pull when needed) and restore it before Docker
//!   gets the mountpoint. A peer that cannot answer refuses the Mount (the
//!   app must not start on a stale copy), saying how to mount anyway.
//! - **last Unmount** ([`after_last_unmount`]): snapshot the state the app
//!   stopped with (none if unchanged) and send it to the peer.
//! - **idle rounds** (the scheduled replicate while no container uses the
//!   volume here, [`prefetch`]): pull what appeared on the peer, restore
//!   nothing, send nothing.
//!
//! What "newer" means ([`decide`]): the state a volume holds is the
//! snapshot it is unchanged since ([`snapshots::current_state`]). The
//! peer's newest snapshot (its creation order) is newer than ours when the
//! peer also holds ours: it was made after ours reached it. When the peer
//! lacks our state and holds one we never saw, both moved on: the Mount
//! is refused and nothing is restored over either (split brain). With
//! follow on, snapshots of an idle volume are not taken by the schedule,
//! so a snapshot made on a node is always a state a container left there.

use std::time::{Duration, Instant};

use crate::names;
use crate::replication::protocol::ListedSnapshot;
use crate::replication::{self, pull, ReplicationError};
use crate::snapshots::{self, Placed, RestoreOptions, SnapshotError};
use crate::volumes::{VolumeError, VolumeStore};

/// How long a Mount or Unmount waits for a scheduled transfer of the same
/// volume still running (it holds the volume) before giving up: well
/// inside Docker's timeout for a volume plugin call.
const BUSY_WAIT: Duration = Duration::from_secs(20);

/// Runs `op` again while the volume is busy with another transfer, up to
/// [`BUSY_WAIT`].
fn when_free<T>(
    mut op: impl FnMut() -> Result<T, ReplicationError>,
) -> Result<T, ReplicationError> {
    let started = Instant::now();
    loop {
        match op() {
            Err(ReplicationError::Busy(_)) if started.elapsed() < BUSY_WAIT => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot ask {peer} for a newer state of {volume} ({source}): the mount is refused so the app does not start on a stale copy; to mount anyway, pause the line: buttervolume schedule replicate:{peer} pause {volume}")]
    Unreachable {
        peer: String,
        volume: String,
        source: Box<ReplicationError>,
    },
    #[error("{volume} moved on both here ({ours}) and on {peer} ({theirs}, which this node never saw): the mount is refused and nothing is restored over either; keep this node's state by deleting {theirs} on {peer} (or pause the line: buttervolume schedule replicate:{peer} pause {volume}), or take {peer}'s with buttervolume receive {peer} {volume} and buttervolume restore {theirs} {volume}")]
    SplitBrain {
        volume: String,
        peer: String,
        ours: String,
        theirs: String,
    },
    #[error("bringing {volume}'s newer state from {peer}: {source}")]
    Pull {
        volume: String,
        peer: String,
        source: Box<ReplicationError>,
    },
    #[error("the final state of {volume} was kept as {snapshot} but not sent to {peer} (the schedule retries): {source}")]
    FinalSend {
        volume: String,
        peer: String,
        snapshot: String,
        source: Box<ReplicationError>,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// The state the volume holds, as [`decide`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Empty and never snapshotted: Docker just created it here.
    Fresh,
    /// Unchanged since this snapshot.
    At(Placed),
}

/// What the first Mount must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The volume holds the peer's newest state, or is ahead of it.
    Stay,
    /// Restore this local snapshot (the peer's newest, already here).
    Restore { snapshot: String },
    /// Pull the peer's newest, then restore it.
    Fetch { theirs: String },
    /// Both moved on.
    SplitBrain { ours: String, theirs: String },
}

/// The follow rule (see the module doc). `remote` is the peer's listing,
/// `local` this node's snapshots of the volume (creation order).
pub fn decide(
    volume: &str,
    remote: &[ListedSnapshot],
    local: &[Placed],
    current: &Current,
) -> Decision {
    let mut theirs: Vec<&ListedSnapshot> = remote
        .iter()
        .filter(|r| r.read_only && !names::is_marker(&r.name))
        .filter(|r| names::volume_of(&r.name) == volume && r.created.is_some())
        .collect();
    theirs.sort_by_key(|r| r.created);
    let Some(newest) = theirs.last() else {
        return Decision::Stay;
    };
    let here = local.iter().find(|p| newest.same_as(&p.identity));
    let take = || match here {
        Some(p) => Decision::Restore {
            snapshot: p.name.clone(),
        },
        None => Decision::Fetch {
            theirs: newest.name.clone(),
        },
    };
    let ours = match current {
        Current::Fresh => return take(),
        Current::At(ours) => ours,
    };
    if here.is_some_and(|p| p.identity.uuid == ours.identity.uuid) {
        return Decision::Stay;
    }
    if remote.iter().any(|r| r.same_as(&ours.identity)) {
        // The peer had our state and made a newer one since.
        return take();
    }
    match here {
        // Its newest is a state we know and passed.
        Some(p) if p.order() < ours.order() => Decision::Stay,
        _ => Decision::SplitBrain {
            ours: ours.name.clone(),
            theirs: newest.name.clone(),
        },
    }
}

/// True when the volume has follow turned on (setting and volume option).
pub fn enabled(store: &VolumeStore, volume: &str) -> bool {
    if !store.config().follow {
        return false;
    }
    let Ok(path) = store.existing(volume) else {
        return false;
    };
    let metadata = store.read_metadata(&path).unwrap_or_default();
    metadata.options.get("follow").map(String::as_str) != Some("false")
}

/// What the first Mount did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    Stayed,
    /// Restored this snapshot (pulled first when `pulled`).
    Restored {
        snapshot: String,
        pulled: bool,
    },
}

/// The first Mount of `volume` on this node (see the module doc). Blocking.
pub fn before_first_mount(
    store: &VolumeStore,
    peer: &str,
    volume: &str,
) -> Result<Followed, FollowError> {
    let remote =
        pull::list_peer(store, peer, volume).map_err(|source| FollowError::Unreachable {
            peer: peer.into(),
            volume: volume.into(),
            source: Box::new(source),
        })?;
    let current = current(store, volume)?;
    let local = snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, false);
    let (snapshot, pulled) = match decide(volume, &remote, &local, &current) {
        Decision::Stay => return Ok(Followed::Stayed),
        Decision::SplitBrain { ours, theirs } => {
            return Err(FollowError::SplitBrain {
                volume: volume.into(),
                peer: peer.into(),
                ours,
                theirs,
            })
        }
        Decision::Restore { snapshot } => (snapshot, false),
        Decision::Fetch { .. } => {
            let report = when_free(|| pull::receive(store, peer, volume)).map_err(|source| {
                FollowError::Pull {
                    volume: volume.into(),
                    peer: peer.into(),
                    source: Box::new(source),
                }
            })?;
            (report.snapshot, true)
        }
    };
    // No backup: what the volume holds is kept in the snapshot it is
    // unchanged since (or it is empty and new).
    let options = RestoreOptions {
        force: false,
        backup: false,
    };
    snapshots::restore_with(store, &snapshot, Some(volume), options)?;
    tracing::info!(
        volume,
        peer,
        snapshot,
        pulled,
        "followed: restored the peer's newer state before the mount"
    );
    Ok(Followed::Restored { snapshot, pulled })
}

/// The volume's state for [`decide`]: the snapshot it is unchanged since;
/// a changed volume is snapshotted first (what it holds is never lost).
fn current(store: &VolumeStore, volume: &str) -> Result<Current, FollowError> {
    if let Some(at) = snapshots::current_state(store, volume)? {
        return Ok(Current::At(at));
    }
    if snapshots::is_fresh(store, volume)? {
        return Ok(Current::Fresh);
    }
    let taken = snapshots::snapshot_if_changed(store, volume)?;
    let placed = snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, false)
        .into_iter()
        .find(|p| p.name == taken.name)
        .ok_or_else(|| SnapshotError::NoSuchSnapshot(taken.name.clone()))?;
    Ok(Current::At(placed))
}

/// The last Unmount of `volume` on this node: snapshot what the app left
/// (none if unchanged) and send it to the peer, after any scheduled send
/// of the volume still running (bounded wait). Returns the summary.
pub fn after_last_unmount(
    store: &VolumeStore,
    peer: &str,
    volume: &str,
) -> Result<String, FollowError> {
    let taken = snapshots::snapshot_if_changed(store, volume)?;
    match when_free(|| replication::send(store, &taken.name, peer, false)) {
        Ok(report) => Ok(report.summary(&taken.name, peer)),
        Err(source) => Err(FollowError::FinalSend {
            volume: volume.into(),
            peer: peer.into(),
            snapshot: taken.name,
            source: Box::new(source),
        }),
    }
}

/// An idle round: pull what appeared on the peer, restore nothing, send
/// nothing. A peer with no snapshot of the volume is not an error.
pub fn prefetch(store: &VolumeStore, peer: &str, volume: &str) -> Result<String, ReplicationError> {
    match pull::receive(store, peer, volume) {
        Ok(report) => Ok(report.summary(peer)),
        Err(ReplicationError::Receive { message, .. })
            if message.starts_with("it has no snapshot") =>
        {
            Ok(format!("{peer} has no snapshot of {volume} yet"))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btrfs::SubvolumeIdentity;

    fn listed(name: &str, uuid: &str, received: Option<&str>, created: u64) -> ListedSnapshot {
        ListedSnapshot {
            name: name.into(),
            uuid: uuid.into(),
            received_uuid: received.map(String::from),
            read_only: true,
            created: Some((created, 256 + created)),
        }
    }

    fn here(name: &str, uuid: &str, received: Option<&str>, order: u64) -> Placed {
        Placed {
            name: name.into(),
            identity: SubvolumeIdentity {
                uuid: uuid.into(),
                parent_uuid: None,
                received_uuid: received.map(String::from),
                read_only: true,
                otime: 0,
                id: 256 + order,
                otransid: order,
                generation: order,
            },
        }
    }

    #[test]
    fn the_peers_newer_state_is_taken_only_when_it_had_ours() {
        // a made s1 and sent it; b made s2 on top of it.
        let s1 = here("db@1", "a1", None, 1);
        let remote = [
            listed("db@1", "b1", Some("a1"), 1),
            listed("db@2", "b2", None, 2),
        ];
        let at_s1 = Current::At(s1.clone());
        assert_eq!(
            decide("db", &remote, std::slice::from_ref(&s1), &at_s1),
            Decision::Fetch {
                theirs: "db@2".into()
            }
        );
        // s2 already pushed here (by b's unmount): restore it.
        let s2_here = here("db@2", "a2", Some("b2"), 2);
        let local = [s1.clone(), s2_here.clone()];
        assert_eq!(
            decide("db", &remote, &local, &at_s1),
            Decision::Restore {
                snapshot: "db@2".into()
            }
        );
        // Already at it.
        assert_eq!(
            decide("db", &remote, &local, &Current::At(s2_here)),
            Decision::Stay
        );
        // A fresh volume takes the peer's newest.
        assert_eq!(
            decide("db", &remote, &[], &Current::Fresh),
            Decision::Fetch {
                theirs: "db@2".into()
            }
        );
        // Nothing there: stay.
        assert_eq!(
            decide("db", &[], std::slice::from_ref(&s1), &at_s1),
            Decision::Stay
        );
    }

    #[test]
    fn both_moved_on_is_refused_and_being_ahead_is_fine() {
        let s1 = here("db@1", "a1", None, 1);
        // We moved on to s3 (never sent); b made s2 on s1.
        let s3 = here("db@3", "a3", None, 3);
        let remote = [
            listed("db@1", "b1", Some("a1"), 1),
            listed("db@2", "b2", None, 2),
        ];
        assert_eq!(
            decide(
                "db",
                &remote,
                &[s1.clone(), s3.clone()],
                &Current::At(s3.clone())
            ),
            Decision::SplitBrain {
                ours: "db@3".into(),
                theirs: "db@2".into()
            }
        );
        // b holds only s1, which we passed: we are ahead.
        let remote = [listed("db@1", "b1", Some("a1"), 1)];
        assert_eq!(
            decide("db", &remote, &[s1, s3.clone()], &Current::At(s3)),
            Decision::Stay
        );
    }
}
