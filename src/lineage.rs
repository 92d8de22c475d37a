//! The one rule of "this state was built on that one", shared by the
//! follow ([`crate::follow::decide`]: take the peer's state only when it
//! was built on ours) and the takeover check ([`crate::takeover::decide`]:
//! refuse `restore <volume>` while a peer holds a state built on the one
//! it would bring back).
//!
//! A state is a read-only snapshot, on whichever node holds it. State
//! `later` was built on state `earlier` when:
//!
//! - `later`'s lineage holds `earlier`'s [`state_key`]: its content was
//!   restored from `earlier`, or from a state itself built on it
//!   (restores record their source, [`crate::metadata::VolumeMetadata::lineage`],
//!   and snapshots and sends carry it); or
//! - both are snapshots the node holding them made of the same subvolume
//!   (same parent UUID: local snapshots, or two lines of one peer's
//!   listing) and `earlier` was created first (btrfs creation order): the
//!   volume went on from `earlier` without a restore (a restore puts a new
//!   subvolume in place). A received snapshot does not count: its parent
//!   UUID names the snapshot it landed on, not a volume.

use crate::btrfs::SubvolumeIdentity;
use crate::metadata::state_key;
use crate::replication::protocol::ListedSnapshot;

/// A state as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State<'a> {
    /// Its identity across nodes ([`state_key`]).
    pub key: String,
    /// The volume it is a snapshot of on the node holding it (its parent
    /// UUID), when known and it was made there (not received).
    pub of: Option<&'a str>,
    /// Its place in that node's creation order, when known.
    pub order: Option<(u64, u64)>,
    /// The states it descends from, newest first.
    pub lineage: &'a [String],
}

impl<'a> State<'a> {
    /// A snapshot of this node, with the lineage its metadata records.
    pub fn local(identity: &'a SubvolumeIdentity, lineage: &'a [String]) -> State<'a> {
        State {
            key: state_key(identity),
            of: made_of(&identity.parent_uuid, &identity.received_uuid),
            order: Some(identity.creation_order()),
            lineage,
        }
    }

    /// A snapshot a peer listed. Its parent UUID (older peers do not list
    /// it) and its order only compare with another line of that listing;
    /// only the lineage ties it to a state of another node.
    pub fn listed(snapshot: &'a ListedSnapshot) -> State<'a> {
        State {
            key: snapshot
                .received_uuid
                .clone()
                .unwrap_or_else(|| snapshot.uuid.clone()),
            of: made_of(&snapshot.parent_uuid, &snapshot.received_uuid),
            order: snapshot.created,
            lineage: &snapshot.lineage,
        }
    }
}

/// The parent UUID of a snapshot made where it is (see the module doc).
fn made_of<'a>(parent_uuid: &'a Option<String>, received_uuid: &Option<String>) -> Option<&'a str> {
    parent_uuid.as_deref().filter(|_| received_uuid.is_none())
}

/// True when `later` was built on `earlier` (see the module doc). A state
/// is built on itself when it is the same snapshot of the same subvolume.
pub fn built_on(later: &State, earlier: &State) -> bool {
    let descends = later.lineage.contains(&earlier.key);
    let went_on = later.of.is_some()
        && later.of == earlier.of
        && earlier.order.is_some()
        && later.order.is_some()
        && earlier.order <= later.order;
    descends || went_on
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(uuid: &str, of: Option<&str>, received: Option<&str>, n: u64) -> SubvolumeIdentity {
        SubvolumeIdentity::example(uuid, n)
            .parent(of)
            .received(received)
    }

    fn listed(uuid: &str, received: Option<&str>, n: u64, lineage: &[&str]) -> ListedSnapshot {
        ListedSnapshot::example(&format!("db@{n}"), uuid, received, Some(n), lineage)
    }

    #[test]
    fn a_restore_ties_states_of_any_node_through_the_lineage() {
        // a made s1; b received it (received UUID a1), restored it and
        // made s2 of the restored volume: s2's lineage holds a1.
        let s1 = identity("a1", Some("va"), None, 1);
        let s2 = listed("b2", None, 7, &["a1"]);
        assert!(built_on(&State::listed(&s2), &State::local(&s1, &[])));
        // Not the other way round.
        assert!(!built_on(&State::local(&s1, &[]), &State::listed(&s2)));
        // b's received copy of s1 has a's key: the rule sees one state.
        let copy = listed("b1", Some("a1"), 3, &[]);
        assert_eq!(State::listed(&copy).key, State::local(&s1, &[]).key);
        assert!(built_on(&State::listed(&s2), &State::listed(&copy)));
        // A state from scratch (no lineage) is built on nothing of another
        // node, even when created after it.
        let fresh = listed("b5", None, 9, &[]);
        assert!(!built_on(&State::listed(&fresh), &State::local(&s1, &[])));
        assert!(!built_on(&State::listed(&fresh), &State::listed(&copy)));
    }

    #[test]
    fn snapshots_of_one_subvolume_go_on_in_creation_order() {
        let s1 = identity("a1", Some("va"), None, 1);
        let s3 = identity("a3", Some("va"), None, 3);
        let (s1, s3) = (State::local(&s1, &[]), State::local(&s3, &[]));
        assert!(built_on(&s3, &s1));
        assert!(!built_on(&s1, &s3));
        assert!(built_on(&s1, &s1));
        // Another subvolume (the volume after a restore), or an unknown
        // one, is not the same volume going on.
        let other = identity("a4", Some("va2"), None, 4);
        assert!(!built_on(&State::local(&other, &[]), &s1));
        let orphan = identity("a5", None, None, 5);
        let orphan2 = identity("a6", None, None, 6);
        assert!(!built_on(
            &State::local(&orphan2, &[]),
            &State::local(&orphan, &[])
        ));
        // A listing without parent UUIDs (an older peer) says nothing of
        // subvolumes: only lineage counts there.
        let listed_later = listed("x", None, 9, &[]);
        assert!(!built_on(&State::listed(&listed_later), &s1));
        // Two lines of one listing, made there of one volume, go on; two
        // received ones that landed on the same snapshot do not.
        let with = |uuid: &str, received: Option<&str>, n: u64| {
            let mut l = listed(uuid, received, n, &[]);
            l.parent_uuid = Some("pv".into());
            l
        };
        let (m1, m2) = (with("p1", None, 1), with("p2", None, 2));
        assert!(built_on(&State::listed(&m2), &State::listed(&m1)));
        let (r1, r2) = (with("q1", Some("x1"), 1), with("q2", Some("x2"), 2));
        assert!(!built_on(&State::listed(&r2), &State::listed(&r1)));
        let received = identity("a7", Some("va"), Some("z"), 7);
        assert!(!built_on(&State::local(&received, &[]), &s1));
    }
}
