//! `receive <host> <volume>`: fetch the newest snapshot of a volume that a
//! peer holds (the other direction of a send). Restores nothing.
//!
//! 1. take the volume's activity lock (one receive, send, restore or remove
//!    of a volume at a time);
//! 2. ask the peer for its snapshots of the volume; a peer that cannot
//!    answer is an error, never "the peer has nothing";
//! 3. the peer's newest is the last in *its* btrfs creation order (never
//!    names or clocks); if a local snapshot already has its identity, done;
//! 4. the parent is the newest of the peer's older snapshots whose identity
//!    this node holds too (by UUID / received UUID); none: a full send;
//! 5. the peer streams it through its forced command (`buttervolume send`)
//!    and it lands here exactly like a pushed stream: confined and atomic
//!    ([`super::receive`]); a half-received leftover is never visible;
//! 6. the marker `<snapshot>@<host>` records that the peer has it (the next
//!    send's parent).

use std::time::Instant;

use super::protocol::{by_peer_creation, ListedSnapshot, PeerRequest};
use super::receive;
use super::transport::{self, Peer, SshSettings};
use super::ReplicationError;
use crate::names;
use crate::snapshots::{by_creation, Placed};
use crate::volumes::{Activity, VolumeStore};

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The snapshot now here (the peer's newest).
    pub snapshot: String,
    /// The parent of an incremental pull, `None` for a full one.
    pub parent: Option<String>,
    pub bytes: u64,
    pub seconds: f64,
    /// This node already had it: nothing moved.
    pub already_present: bool,
}

impl PullReport {
    pub fn summary(&self, host: &str) -> String {
        let snapshot = &self.snapshot;
        if self.already_present {
            return format!("{snapshot} from {host} is already here");
        }
        let how = match &self.parent {
            Some(p) => format!("incrementally from {p}"),
            None => "in full".to_string(),
        };
        format!(
            "received {snapshot} from {host} {how}: {:.1} MiB in {:.2} s",
            self.bytes as f64 / (1u64 << 20) as f64,
            self.seconds
        )
    }
}

/// What a pull must do, decided from the peer's listing and this node's
/// snapshots alone ([`plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullPlan {
    /// A local snapshot already is the peer's newest (same identity).
    AlreadyHere { snapshot: String },
    /// Fetch `snapshot`, incrementally from the peer's `parent` when set.
    Fetch {
        snapshot: String,
        parent: Option<PullParent>,
    },
}

/// The parent of an incremental pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullParent {
    /// Its name on the peer (what the peer's send names).
    pub name: String,
    /// What the stream must name as its parent ([`receive::parent_key`]).
    pub key: String,
}

/// Why a listing gives nothing to pull.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("its listing has no creation order")]
    NoCreationOrder,
    #[error("it has no snapshot of {0}")]
    NoSnapshot(String),
    #[error("its newest snapshot {newest} is {here} here under another name")]
    RenamedHere { newest: String, here: String },
    #[error("this node already has a different snapshot named {0}")]
    NameTaken(String),
}

/// The pull rule: the peer's newest complete snapshot of `volume` in *its*
/// creation order; already here when a local snapshot has its identity
/// ([`ListedSnapshot::same_as`]); else fetched on the newest of the peer's
/// older snapshots that this node holds too, or in full. `local` is this
/// node's snapshots of the volume; `name_taken` says whether a name is
/// used here.
pub fn plan(
    volume: &str,
    remote: &[ListedSnapshot],
    local: &[Placed],
    name_taken: impl Fn(&str) -> bool,
) -> Result<PullPlan, PlanError> {
    let mut snapshots = by_peer_creation(remote, volume).ok_or(PlanError::NoCreationOrder)?;
    let newest = snapshots
        .pop()
        .ok_or_else(|| PlanError::NoSnapshot(volume.into()))?;
    if let Some(here) = local.iter().find(|p| newest.same_as(&p.identity)) {
        if here.name != newest.name {
            return Err(PlanError::RenamedHere {
                newest: newest.name.clone(),
                here: here.name.clone(),
            });
        }
        return Ok(PullPlan::AlreadyHere {
            snapshot: newest.name.clone(),
        });
    }
    if name_taken(&newest.name) {
        return Err(PlanError::NameTaken(newest.name.clone()));
    }
    let parent = snapshots.iter().rev().find_map(|r| {
        local
            .iter()
            .find(|p| r.same_as(&p.identity))
            .map(|p| PullParent {
                name: r.name.clone(),
                key: receive::parent_key(&p.identity),
            })
    });
    Ok(PullPlan::Fetch {
        snapshot: newest.name.clone(),
        parent,
    })
}

/// Pulls the newest snapshot of `volume` from `host`. Blocking.
pub fn receive(
    store: &VolumeStore,
    host: &str,
    volume: &str,
) -> Result<PullReport, ReplicationError> {
    names::check_volume(volume)?;
    transport::check_host(host)?;
    names::check_marker_host(host)?;
    let config = store.config();
    let _held = store
        .hold(volume, Activity::Receive)
        .map_err(ReplicationError::Busy)?;
    let started = Instant::now();
    let fail = |message: String| ReplicationError::Receive {
        volume: volume.into(),
        host: host.into(),
        message,
    };

    let peer = store.sessions().open(host, &SshSettings::of(config))?;
    let remote = list_on(&peer, volume, &fail)?;
    let local = by_creation(store.fs(), &config.snapshots_path, volume, false);
    let taken = |name: &str| config.snapshots_path.join(name).exists();
    let (snapshot, parent) = match plan(volume, &remote, &local, taken) {
        Ok(PullPlan::AlreadyHere { snapshot }) => {
            return Ok(PullReport {
                snapshot,
                parent: None,
                bytes: 0,
                seconds: started.elapsed().as_secs_f64(),
                already_present: true,
            })
        }
        Ok(PullPlan::Fetch { snapshot, parent }) => (snapshot, parent),
        Err(PlanError::NoSnapshot(_)) => {
            return Err(ReplicationError::NothingToPull {
                volume: volume.into(),
                host: host.into(),
            })
        }
        Err(PlanError::NameTaken(name)) => {
            return Err(ReplicationError::Conflict {
                host: "this node".into(),
                name,
            })
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let bytes = fetch(store, &peer, &snapshot, parent.as_ref(), &fail)?;
    super::send::record_marker(store, &snapshot, volume, host)?;
    Ok(PullReport {
        snapshot,
        parent: parent.map(|p| p.name),
        bytes: bytes.unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
        already_present: bytes.is_none(),
    })
}

/// The peer's snapshots of `volume` ([`PeerRequest::List`]), for callers
/// that decide before they pull (the mount-time follow), on a pooled
/// session. A peer that cannot answer is an error, never "it has nothing".
pub fn list_peer(
    store: &VolumeStore,
    host: &str,
    volume: &str,
) -> Result<Vec<ListedSnapshot>, ReplicationError> {
    let settings = SshSettings::of(store.config());
    list_with(host, volume, || {
        Ok(store.sessions().open(host, &settings)?)
    })
}

/// [`list_peer`] on a connection of its own (not the pool's: callers
/// list hosts in threads they may leave behind, see
/// [`crate::cluster::failover`]).
pub fn list_at(
    host: &str,
    settings: &SshSettings,
    volume: &str,
) -> Result<Vec<ListedSnapshot>, ReplicationError> {
    list_with(host, volume, || {
        Ok(Box::new(Peer::connect(host, settings)?))
    })
}

/// Checks the names, connects, lists.
fn list_with<P: std::ops::Deref<Target = Peer>>(
    host: &str,
    volume: &str,
    connect: impl FnOnce() -> Result<P, ReplicationError>,
) -> Result<Vec<ListedSnapshot>, ReplicationError> {
    names::check_volume(volume)?;
    transport::check_host(host)?;
    let peer = connect()?;
    let fail = |message: String| ReplicationError::Receive {
        volume: volume.into(),
        host: host.into(),
        message,
    };
    list_on(&peer, volume, &fail)
}

fn list_on(
    peer: &Peer,
    volume: &str,
    fail: &dyn Fn(String) -> ReplicationError,
) -> Result<Vec<ListedSnapshot>, ReplicationError> {
    let list = PeerRequest::List {
        volume: volume.into(),
        test: false,
    };
    let listing = peer.run(&list.to_command())?;
    if listing.status != 0 {
        return Err(fail(format!(
            "it could not list its snapshots ({}): a buttervolume 3.13 peer cannot be received from",
            listing.stderr.trim()
        )));
    }
    ListedSnapshot::parse_listing(&listing.stdout)
        .map_err(|e| fail(format!("unreadable listing: {e}")))
}

/// Has the peer stream `snapshot` (from `parent`) into this node's
/// snapshots; returns the bytes received, `None` when the stream named a
/// snapshot already here.
fn fetch(
    store: &VolumeStore,
    peer: &Peer,
    snapshot: &str,
    parent: Option<&PullParent>,
    fail: &dyn Fn(String) -> ReplicationError,
) -> Result<Option<u64>, ReplicationError> {
    let snapshots_path = &store.config().snapshots_path;
    let request = PeerRequest::Send {
        snapshot: snapshot.into(),
        parent: parent.map(|p| p.name.clone()),
        test: false,
    };
    let expected = parent.map(|p| p.key.as_str());
    let (landed, output) = peer.pull(&request.to_command(), |stream| {
        receive::receive(
            snapshots_path,
            stream,
            expected,
            &|_| Ok(()),
            store.receives(),
        )
    })?;
    let landed = match landed {
        Ok(landed) if output.status == 0 => landed,
        Ok(_) => return Err(fail(format!("its send failed: {}", output.stderr.trim()))),
        Err(e) => return Err(fail(format!("{e} ({})", output.stderr.trim()))),
    };
    if landed.name != snapshot {
        // The stream named another snapshot than the one asked for.
        if !landed.already_present {
            let _ = store.fs().delete(&snapshots_path.join(&landed.name));
        }
        return Err(fail(format!(
            "it sent {} instead of {snapshot}",
            landed.name
        )));
    }
    Ok((!landed.already_present).then_some(landed.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btrfs::SubvolumeIdentity;

    fn listed(name: &str, uuid: &str, received: Option<&str>, created: u64) -> ListedSnapshot {
        ListedSnapshot::example(name, uuid, received, Some(created), &[])
    }

    fn here(name: &str, uuid: &str, received: Option<&str>) -> Placed {
        Placed::example(name, SubvolumeIdentity::example(uuid, 9).received(received))
    }

    #[test]
    fn the_peers_newest_by_its_creation_order_on_a_shared_parent() {
        // Names sort against the peer's creation order: order decides.
        let remote = [
            listed("db@9", "p1", None, 1),
            listed("db@5", "p2", None, 2),
            listed("db@1", "p3", None, 3),
            listed("db@0@h", "p4", None, 4),
            listed("other@7", "p5", None, 5),
        ];
        // db@9 came here earlier (received: its received UUID is p1).
        let local = [here("db@9", "l1", Some("p1"))];
        let plan = plan("db", &remote, &local, |_| false).unwrap();
        assert_eq!(
            plan,
            PullPlan::Fetch {
                snapshot: "db@1".into(),
                parent: Some(PullParent {
                    name: "db@9".into(),
                    key: receive::parent_key(&local[0].identity),
                }),
            }
        );
        // Nothing shared: in full.
        assert!(matches!(
            super::plan("db", &remote, &[], |_| false).unwrap(),
            PullPlan::Fetch { parent: None, .. }
        ));
        // Already here.
        let local = [here("db@1", "l3", Some("p3"))];
        assert_eq!(
            super::plan("db", &remote, &local, |_| false).unwrap(),
            PullPlan::AlreadyHere {
                snapshot: "db@1".into()
            }
        );
    }

    #[test]
    fn nothing_to_pull_is_said_precisely() {
        assert_eq!(
            plan("db", &[], &[], |_| false).unwrap_err(),
            PlanError::NoSnapshot("db".into())
        );
        let mut unordered = listed("db@1", "p1", None, 1);
        unordered.created = None;
        assert_eq!(
            plan("db", &[unordered], &[], |_| false).unwrap_err(),
            PlanError::NoCreationOrder
        );
        let remote = [listed("db@1", "p1", None, 1)];
        assert_eq!(
            plan("db", &remote, &[], |n| n == "db@1").unwrap_err(),
            PlanError::NameTaken("db@1".into())
        );
        let local = [here("db@other", "l1", Some("p1"))];
        assert!(matches!(
            plan("db", &remote, &local, |_| false).unwrap_err(),
            PlanError::RenamedHere { .. }
        ));
    }
}
