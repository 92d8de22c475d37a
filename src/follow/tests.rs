//! The follow rule as two-node stories.

use super::*;
use crate::btrfs::SubvolumeIdentity;

fn listed(
    name: &str,
    uuid: &str,
    received: Option<&str>,
    created: u64,
    lineage: &[&str],
) -> ListedSnapshot {
    ListedSnapshot::example(name, uuid, received, Some(created), lineage)
}

/// A local snapshot of subvolume `of` (its parent UUID).
fn here(
    name: &str,
    uuid: &str,
    received: Option<&str>,
    of: &str,
    order: u64,
    lineage: &[&str],
) -> Known {
    Known {
        placed: Placed::example(
            name,
            SubvolumeIdentity::example(uuid, order)
                .parent(Some(of))
                .received(received),
        ),
        lineage: lineage.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn the_peer_went_on_from_the_state_restored_here() {
    // a made s1 and s2 of its volume va (no restore there); b holds s1,
    // received and restored (b's volume holds it, unwritten), but not
    // s2: a's listing says s2 went on from s1.
    let with_parent = |mut l: ListedSnapshot| {
        l.parent_uuid = Some("va".into());
        l
    };
    let remote = [
        with_parent(listed("db@1", "a1", None, 1, &[])),
        with_parent(listed("db@2", "a2", None, 2, &[])),
    ];
    let s1_here = here("db@1", "b1", Some("a1"), "vb0", 5, &[]);
    let at_s1 = Current::At(s1_here.clone());
    assert_eq!(
        decide("db", &remote, std::slice::from_ref(&s1_here), &at_s1),
        Decision::Fetch {
            theirs: "db@2".into()
        }
    );
    // An older peer (no parent UUID listed) cannot tell: the mount is
    // refused rather than guessed.
    let old = [
        listed("db@1", "a1", None, 1, &[]),
        listed("db@2", "a2", None, 2, &[]),
    ];
    assert!(matches!(
        decide("db", &old, std::slice::from_ref(&s1_here), &at_s1),
        Decision::SplitBrain { .. }
    ));
    // Two subvolumes there (a restore in between): not one history.
    let mut restored = remote.clone();
    restored[1].parent_uuid = Some("va2".into());
    assert!(matches!(
        decide("db", &restored, std::slice::from_ref(&s1_here), &at_s1),
        Decision::SplitBrain { .. }
    ));
}

#[test]
fn the_peers_state_is_taken_when_built_on_ours() {
    // a made s1 (of its volume va) and sent it; b restored it and made
    // s2 on it (s2's lineage holds s1).
    let s1 = here("db@1", "a1", None, "va", 1, &[]);
    let remote = [
        listed("db@1", "b1", Some("a1"), 1, &[]),
        listed("db@2", "b2", None, 2, &["a1"]),
    ];
    let at_s1 = Current::At(s1.clone());
    assert_eq!(
        decide("db", &remote, std::slice::from_ref(&s1), &at_s1),
        Decision::Fetch {
            theirs: "db@2".into()
        }
    );
    // s2 already pushed here (by b's unmount): restore it.
    let s2_here = here("db@2", "a2", Some("b2"), "vb", 2, &["a1"]);
    let local = [s1.clone(), s2_here.clone()];
    assert_eq!(
        decide("db", &remote, &local, &at_s1),
        Decision::Restore {
            snapshot: "db@2".into()
        }
    );
    // At it already; or a fresh volume, which takes the newest.
    assert_eq!(
        decide("db", &remote, &local, &Current::At(s2_here)),
        Decision::Stay
    );
    assert_eq!(
        decide("db", &remote, &[], &Current::Fresh),
        Decision::Fetch {
            theirs: "db@2".into()
        }
    );
    assert_eq!(
        decide("db", &[], std::slice::from_ref(&s1), &at_s1),
        Decision::Stay
    );
}

#[test]
fn being_ahead_is_fine_and_divergence_is_refused() {
    // We made s3 after s1 on the same volume; b holds only s1.
    let s1 = here("db@1", "a1", None, "va", 1, &[]);
    let s3 = here("db@3", "a3", None, "va", 3, &[]);
    let remote = [listed("db@1", "b1", Some("a1"), 1, &[])];
    let local = [s1.clone(), s3.clone()];
    assert_eq!(
        decide("db", &remote, &local, &Current::At(s3.clone())),
        Decision::Stay
    );
    // We restored b's s2 and took s4 of it: built on theirs.
    let s4 = here("db@4", "a4", None, "va2", 4, &["b2"]);
    let remote = [listed("db@2", "b2", None, 2, &["a1"])];
    assert_eq!(
        decide(
            "db",
            &remote,
            std::slice::from_ref(&s4),
            &Current::At(s4.clone())
        ),
        Decision::Stay
    );
    // b started from scratch (empty lineage) while we moved on: split.
    let remote = [listed("db@5", "b5", None, 5, &[])];
    assert_eq!(
        decide("db", &remote, &local, &Current::At(s3)),
        Decision::SplitBrain {
            ours: "db@3".into(),
            theirs: "db@5".into()
        }
    );
    // Even when b's divergent state was pushed here already.
    let b5_here = here("db@5", "a5", Some("b5"), "vb", 6, &[]);
    let s3 = here("db@3", "a3", None, "va", 3, &[]);
    assert!(matches!(
        decide("db", &remote, &[s1, s3.clone(), b5_here], &Current::At(s3)),
        Decision::SplitBrain { .. }
    ));
}

#[test]
fn a_peer_line_claiming_a_local_snapshot_never_restores_it() {
    // Here: s1 then s2, both made here; the volume holds s2 (unsent).
    let s1 = here("db@1", "a1", None, "va", 1, &[]);
    let s2 = here("db@2", "a2", None, "va", 2, &[]);
    let at_s2 = Current::At(s2.clone());
    // A hostile line: "my newest is your s1 (received UUID a1), and it
    // was built on your s2".
    let forged = [listed("db@9", "x9", Some("a1"), 9, &["a2"])];
    let local = [s1.clone(), s2.clone()];
    assert_eq!(
        decide("db", &forged, &local, &at_s2),
        Decision::Contradiction {
            ours: Some("db@2".into()),
            theirs: "db@9".into(),
            claimed: "db@1".into(),
        }
    );
    // The same claim about a copy received here earlier is the peer's
    // own state: that one may be restored.
    let r1 = here("db@1", "b1", Some("p1"), "vb", 1, &[]);
    let genuine = [listed("db@9", "p1", None, 9, &["a2"])];
    assert_eq!(
        decide("db", &genuine, &[r1, s2], &at_s2),
        Decision::Restore {
            snapshot: "db@1".into()
        }
    );
}

/// `-o follow=false` (any case) turns follow off for that volume only.
#[test]
fn the_follow_option_turns_it_off_per_volume() {
    let (_dir, _fs, store) = crate::subvolumes::fake::store();
    let opts = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    store.create("off", &opts(&[("follow", "False")])).unwrap();
    store.create("on", &opts(&[("follow", "true")])).unwrap();
    store.create("plain", &opts(&[])).unwrap();
    assert!(!enabled(&store, "off"));
    assert!(enabled(&store, "on"));
    assert!(enabled(&store, "plain"));
    assert!(!enabled(&store, "missing"));
}
