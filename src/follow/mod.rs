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

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lineage::{built_on, State};
use crate::names;
use crate::replication::newest::{self, Newest};
use crate::replication::protocol::{by_peer_creation, ListedSnapshot};
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
    #[error("{volume} moved on both here ({ours}) and on {peer} ({theirs}, which this node never saw): the mount is refused and nothing is restored over either; take {peer}'s state here with buttervolume receive {peer} {volume} and buttervolume restore {theirs} {volume}, or keep this node's by restoring {ours} on {peer} after sending it there (or pause the line: buttervolume schedule replicate:{peer} pause {volume})")]
    SplitBrain {
        volume: String,
        peer: String,
        ours: String,
        theirs: String,
    },
    #[error("{peer} lists its newest state of {volume} ({theirs}) as {claimed}, a snapshot made on this node, and as newer than {volume}'s state here ({ours}): that contradicts what is here, so the mount is refused and nothing is restored; to take {claimed} anyway: buttervolume restore {claimed} {volume}; to mount as it is, pause the line: buttervolume schedule replicate:{peer} pause {volume}")]
    Contradiction {
        volume: String,
        peer: String,
        ours: String,
        theirs: String,
        claimed: String,
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

/// The last follow failure of each volume (one per store, for `status`
/// and the metrics); cleared by the next follow step that succeeds.
#[derive(Default)]
pub struct Failures(Mutex<BTreeMap<String, String>>);

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Records the outcome of a follow step of `volume`.
pub fn record(store: &VolumeStore, volume: &str, outcome: Result<(), &FollowError>) {
    let mut failures = store.follow_failures().lock();
    match outcome {
        Ok(()) => failures.remove(volume),
        Err(e) => failures.insert(volume.to_string(), e.to_string()),
    };
}

/// The last follow failure of `volume`, if the last step failed.
pub fn last_failure(store: &VolumeStore, volume: &str) -> Option<String> {
    store.follow_failures().lock().get(volume).cloned()
}

/// A local snapshot with the lineage its metadata records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub placed: Placed,
    /// [`crate::metadata::VolumeMetadata::lineage`].
    pub lineage: Vec<String>,
}

impl Known {
    /// This state as [`lineage::built_on`] sees it.
    fn state(&self) -> State<'_> {
        State::local(&self.placed.identity, &self.lineage)
    }
}

/// The state the volume holds, as [`decide`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Empty and never snapshotted: Docker just created it here.
    Fresh,
    /// Unchanged since this snapshot.
    At(Known),
}

/// What the first Mount must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The volume holds the peer's newest state, or was built on it.
    Stay,
    /// Restore this local snapshot (the peer's newest, already here).
    Restore { snapshot: String },
    /// Pull the peer's newest, then restore it.
    Fetch { theirs: String },
    /// Both moved on: neither state was built on the other.
    SplitBrain { ours: String, theirs: String },
    /// The peer's newest claims the identity of `claimed`, a snapshot made
    /// here, yet is to be taken over `ours`: a claim that contradicts what
    /// is here. Nothing is restored.
    Contradiction {
        ours: Option<String>,
        theirs: String,
        claimed: String,
    },
}

/// The follow rule (see the module doc). `remote` is the peer's listing,
/// `local` this node's snapshots of the volume (creation order) with their
/// lineage. The peer's newest state is taken when it was built on ours
/// ([`built_on`], the one rule, shared with [`crate::takeover`]: its
/// lineage holds our state, the peer restored ours, or a descendant, and
/// wrote on it) or when the volume here is fresh; kept out when ours was
/// built on it; anything else is a split brain.
pub fn decide(
    volume: &str,
    remote: &[ListedSnapshot],
    local: &[Known],
    current: &Current,
) -> Decision {
    let theirs = by_peer_creation(remote, volume).unwrap_or_default();
    let Some(newest) = theirs.last() else {
        return Decision::Stay;
    };
    // The snapshot here the peer's newest claims to be. Only a copy this
    // node received (read-only, with a received UUID) may be restored on
    // that claim: a snapshot made here is never taken back because a
    // peer's line names its identity.
    let claimed = local.iter().find(|k| newest.same_as(&k.placed.identity));
    let here = claimed
        .filter(|k| k.placed.identity.read_only && k.placed.identity.received_uuid.is_some());
    let take = |ours: Option<&Known>| match (claimed, here) {
        (_, Some(k)) => Decision::Restore {
            snapshot: k.placed.name.clone(),
        },
        (Some(made_here), None) => Decision::Contradiction {
            ours: ours.map(|o| o.placed.name.clone()),
            theirs: newest.name.clone(),
            claimed: made_here.placed.name.clone(),
        },
        (None, None) => Decision::Fetch {
            theirs: newest.name.clone(),
        },
    };
    let ours = match current {
        Current::Fresh => return take(None),
        Current::At(ours) => ours,
    };
    if newest.same_as(&ours.placed.identity) {
        return Decision::Stay;
    }
    // Ours as the peer lists it (when it has it): the peer went on from it
    // when its newest is a later snapshot of the same subvolume there.
    let ours_there = theirs.iter().find(|r| r.same_as(&ours.placed.identity));
    let went_on_from_ours =
        ours_there.is_some_and(|o| built_on(&State::listed(newest), &State::listed(o)));
    if went_on_from_ours || built_on(&State::listed(newest), &ours.state()) {
        return take(Some(ours));
    }
    // Staying is always safe: any snapshot here with that identity tells.
    let ours_built_on_theirs = match claimed {
        Some(theirs_here) => built_on(&ours.state(), &theirs_here.state()),
        None => built_on(&ours.state(), &State::listed(newest)),
    };
    if ours_built_on_theirs {
        return Decision::Stay;
    }
    Decision::SplitBrain {
        ours: ours.placed.name.clone(),
        theirs: newest.name.clone(),
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
    metadata.options.follow()
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
    let local = known(store, volume);
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
        Decision::Contradiction {
            ours,
            theirs,
            claimed,
        } => {
            return Err(FollowError::Contradiction {
                volume: volume.into(),
                peer: peer.into(),
                ours: ours.unwrap_or_else(|| "its empty state".into()),
                theirs,
                claimed,
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

/// This node's snapshots of `volume` with their lineage.
fn known(store: &VolumeStore, volume: &str) -> Vec<Known> {
    let dir = &store.config().snapshots_path;
    snapshots::by_creation(store.fs(), dir, volume, false)
        .into_iter()
        .map(|placed| {
            let lineage = store
                .read_metadata(&dir.join(&placed.name))
                .map(|m| m.lineage)
                .unwrap_or_default();
            Known { placed, lineage }
        })
        .collect()
}

/// The volume's state for [`decide`]: the snapshot it is unchanged since;
/// a changed volume is snapshotted first (what it holds is never lost).
fn current(store: &VolumeStore, volume: &str) -> Result<Current, FollowError> {
    let with_lineage = |placed: Placed| {
        let lineage = known(store, volume)
            .into_iter()
            .find(|k| k.placed.name == placed.name)
            .map(|k| k.lineage)
            .unwrap_or_default();
        Current::At(Known { placed, lineage })
    };
    if let Some(at) = snapshots::current_state(store, volume)? {
        return Ok(with_lineage(at));
    }
    if snapshots::is_fresh(store, volume)? {
        return Ok(Current::Fresh);
    }
    let taken = snapshots::snapshot_if_changed(store, volume)?;
    let placed = snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, false)
        .into_iter()
        .find(|p| p.name == taken.name)
        .ok_or_else(|| SnapshotError::NoSuchSnapshot(taken.name.clone()))?;
    Ok(with_lineage(placed))
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
/// nothing. A peer with no snapshot of the volume is not an error. The
/// round's one listing of the peer ([`newest`]) answers "nothing new"
/// without a command per volume.
pub fn prefetch(store: &VolumeStore, peer: &str, volume: &str) -> Result<String, ReplicationError> {
    match newest::of(store, peer, volume)? {
        Newest::Nothing => return Ok(format!("{peer} has no snapshot of {volume} yet")),
        Newest::Is(listed) if is_here(store, &listed) => {
            return Ok(format!("{} from {peer} is already here", listed.name))
        }
        Newest::Is(_) | Newest::Unknown => {}
    }
    match pull::receive(store, peer, volume) {
        Ok(report) => Ok(report.summary(peer)),
        Err(ReplicationError::NothingToPull { .. }) => {
            Ok(format!("{peer} has no snapshot of {volume} yet"))
        }
        Err(e) => Err(e),
    }
}

/// True when a snapshot here is the peer's `listed` one: same name, same
/// identity ([`ListedSnapshot::same_as`]). One ioctl, no directory scan.
fn is_here(store: &VolumeStore, listed: &ListedSnapshot) -> bool {
    names::check_snapshot(&listed.name).is_ok()
        && store
            .fs()
            .identity(&store.config().snapshots_path.join(&listed.name))
            .is_ok_and(|here| listed.same_as(&here))
}

#[cfg(test)]
mod tests;
