//! Taking over a state that came from another node: `restore <volume>
//! [target]` (the newest snapshot of `<volume>`), what the cluster's deploy
//! handler runs on a new master after the old master's transfer.
//!
//! The handler never looks at the transfer's outcome: after a send that
//! failed half-way (link cut, the new master's disk full), it still runs
//! `restore <volume>` on the new master, which would bring back the newest
//! snapshot that did land, an older state than the one that left, and
//! start the app on it (while the old master, in the handler's failure
//! path, starts it again too). So before such a restore the paired peers
//! are asked ([`decide`]):
//!
//! - the newest snapshot here was made here: nothing to ask, restore;
//! - it came from another node (a received snapshot), or there is none:
//!   every paired peer (`known_hosts` entries on SSH_PORT) lists its
//!   snapshots of the volume. A peer holds a newer state when it holds
//!   that snapshot and one made after it (its own creation order: it may
//!   have gone on from it, which a listing cannot rule out), or a
//!   snapshot built on it ([`built_on`], the follow's rule: its lineage
//!   holds it, the peer restored it and went on, whether or not it still
//!   holds the copy), or any snapshot of the volume when there is none
//!   here: the restore is refused, naming it and the ways out. When the node that made the
//!   snapshot does not answer (nor, with none here, some peer), nothing
//!   can tell there is no newer state: refused too.
//!
//! A snapshot named explicitly (`restore <volume>@<ts>`) and `--force` are
//! never checked: the caller chose that state.

use std::path::Path;

use crate::lineage::{built_on, State};
use crate::names;
use crate::replication::protocol::{by_peer_creation, ListedSnapshot};
use crate::replication::pull;
use crate::snapshots::{self, Placed};
use crate::volumes::VolumeStore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TakeoverError {
    #[error("restore of {volume} refused: {peer} holds a newer state of {volume} ({theirs}) than the newest snapshot here ({ours}), which is what `restore {volume}` would bring back: the transfer of that state did not land here. Take it first (buttervolume receive {peer} {volume}, then restore {volume}), or restore the older state on purpose by its name (buttervolume restore {ours})")]
    Newer {
        volume: String,
        peer: String,
        ours: String,
        theirs: String,
    },
    #[error("restore of {volume} refused: this node has no snapshot of {volume} but {peer} holds {theirs}: the transfer of that state did not land here. Take it first (buttervolume receive {peer} {volume}, then restore {volume})")]
    NoneHere {
        volume: String,
        peer: String,
        theirs: String,
    },
    #[error("restore of {volume} refused: the newest snapshot here ({ours}) came from another node, and {unreachable} could not be asked whether it holds a newer state: restore it by its name to take it anyway (buttervolume restore {ours})")]
    Unverified {
        volume: String,
        ours: String,
        unreachable: String,
    },
    #[error("restore of {volume} refused: this node has no snapshot of {volume}, and {unreachable} could not be asked whether it holds one")]
    UnverifiedNone { volume: String, unreachable: String },
}

/// One paired peer's answer: its listing of the volume, or why it gave
/// none.
pub type Answer = (String, Result<Vec<ListedSnapshot>, String>);

/// The rule (see the module doc). `ours`: the newest snapshot of `volume`
/// here (creation order); `answers`: every paired peer's.
pub fn decide(
    volume: &str,
    ours: Option<&Placed>,
    answers: &[Answer],
) -> Result<(), TakeoverError> {
    let unreachable = || {
        let failed: Vec<String> = answers
            .iter()
            .filter_map(|(peer, a)| a.as_ref().err().map(|e| format!("{peer} ({e})")))
            .collect();
        (!failed.is_empty()).then(|| failed.join(", "))
    };
    let listed = answers.iter().filter_map(|(peer, a)| {
        a.as_ref()
            .ok()
            .map(|l| (peer, by_peer_creation(l, volume).unwrap_or_default()))
    });
    let Some(ours) = ours else {
        for (peer, theirs) in listed {
            if let Some(newest) = theirs.last() {
                return Err(TakeoverError::NoneHere {
                    volume: volume.into(),
                    peer: peer.clone(),
                    theirs: newest.name.clone(),
                });
            }
        }
        return match unreachable() {
            Some(unreachable) => Err(TakeoverError::UnverifiedNone {
                volume: volume.into(),
                unreachable,
            }),
            None => Ok(()),
        };
    };
    let Some(origin) = ours.identity.received_uuid.as_deref() else {
        return Ok(());
    };
    let mut origin_answered = false;
    let ours_state = State::local(&ours.identity, &[]);
    for (peer, theirs) in listed {
        origin_answered |= theirs.iter().any(|s| s.uuid == origin);
        // Made after the peer's copy of ours: it may have gone on from it
        // (the listing cannot tell, so it counts).
        let after_copy = theirs
            .iter()
            .position(|s| s.same_as(&ours.identity))
            .and_then(|copy| theirs[copy + 1..].last());
        // Built on ours ([`built_on`], the follow's rule), held copy or not.
        let descendant = || {
            theirs
                .iter()
                .rev()
                .find(|s| !s.same_as(&ours.identity) && built_on(&State::listed(s), &ours_state))
        };
        if let Some(newer) = after_copy.or_else(descendant) {
            return Err(TakeoverError::Newer {
                volume: volume.into(),
                peer: peer.clone(),
                ours: ours.name.clone(),
                theirs: newer.name.clone(),
            });
        }
    }
    match unreachable() {
        Some(unreachable) if !origin_answered => Err(TakeoverError::Unverified {
            volume: volume.into(),
            ours: ours.name.clone(),
            unreachable,
        }),
        _ => Ok(()),
    }
}

/// The peers this node is paired with: the hosts of `known_hosts` lines
/// for `port` (`[host]:port`, or a bare host when the port is 22), in file
/// order, without duplicates. Hashed names and markers are skipped.
pub fn paired_peers(known_hosts: &str, port: u16) -> Vec<String> {
    let mut peers: Vec<String> = Vec::new();
    for line in known_hosts.lines() {
        let Some(hosts) = line.split_whitespace().next() else {
            continue;
        };
        if hosts.starts_with(['#', '@', '|']) {
            continue;
        }
        for host in hosts.split(',') {
            let found = match host.strip_prefix('[').and_then(|h| h.split_once("]:")) {
                Some((name, p)) => (p.parse() == Ok(port)).then_some(name),
                None => (port == 22).then_some(host),
            };
            if let Some(name) = found.filter(|n| !n.is_empty() && !n.contains(['*', '?'])) {
                if !peers.iter().any(|p| p == name) {
                    peers.push(name.to_string());
                }
            }
        }
    }
    peers
}

/// Before `restore <volume>` (its newest snapshot): refuses when a paired
/// peer holds a newer state, or when it cannot be told ([`decide`]).
/// Blocking: asks the peers (at once) only when the newest snapshot here
/// came from another node or there is none.
pub fn check(store: &VolumeStore, volume: &str) -> Result<(), TakeoverError> {
    if names::check_volume(volume).is_err() {
        return Ok(()); // the restore itself says why
    }
    let config = store.config();
    let ours = snapshots::by_creation(store.fs(), &config.snapshots_path, volume, false).pop();
    if ours
        .as_ref()
        .is_some_and(|o| o.identity.received_uuid.is_none())
    {
        return Ok(());
    }
    let peers = peers(&config.ssh_dir, config.ssh_port);
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let asked: Vec<_> = peers
            .iter()
            .map(|peer| {
                let ask = move || pull::list_peer(store, peer, volume).map_err(|e| e.to_string());
                (peer, scope.spawn(ask))
            })
            .collect();
        asked
            .into_iter()
            .map(|(peer, asked)| {
                let answer = asked
                    .join()
                    .unwrap_or_else(|_| Err("the question panicked".into()));
                (peer.clone(), answer)
            })
            .collect()
    });
    let verdict = decide(volume, ours.as_ref(), &answers);
    if let Err(e) = &verdict {
        tracing::warn!(volume, "{e}");
    }
    verdict
}

fn peers(ssh_dir: &Path, port: u16) -> Vec<String> {
    std::fs::read_to_string(ssh_dir.join("known_hosts"))
        .map(|text| paired_peers(&text, port))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btrfs::SubvolumeIdentity;

    fn listed(name: &str, uuid: &str, received: Option<&str>, created: u64) -> ListedSnapshot {
        ListedSnapshot::example(name, uuid, received, Some(created), &[])
    }

    fn here(name: &str, uuid: &str, received: Option<&str>) -> Placed {
        Placed::example(
            name,
            SubvolumeIdentity::example(uuid, 40).received(received),
        )
    }

    fn ok(peer: &str, listing: Vec<ListedSnapshot>) -> Answer {
        (peer.into(), Ok(listing))
    }

    fn down(peer: &str) -> Answer {
        (peer.into(), Err("no route to host".into()))
    }

    #[test]
    fn a_newer_state_left_on_the_sender_refuses() {
        // The old master made s1 (landed here) and s2 (did not).
        let ours = here("db@1", "n1", Some("o1"));
        let origin = vec![
            listed("db@1", "o1", None, 1),
            listed("db@1@10.0.0.3", "o1m", None, 2),
            listed("db@2", "o2", None, 3),
        ];
        assert_eq!(
            decide("db", Some(&ours), &[ok("10.0.0.1", origin)]),
            Err(TakeoverError::Newer {
                volume: "db".into(),
                peer: "10.0.0.1".into(),
                ours: "db@1".into(),
                theirs: "db@2".into(),
            })
        );
    }

    #[test]
    fn the_senders_newest_or_a_stranger_lets_it_through() {
        let ours = here("db@2", "n2", Some("o2"));
        // Its newest is ours (a marker after it is no newer state).
        let origin = vec![
            listed("db@1", "o1", None, 1),
            listed("db@2", "o2", None, 3),
            listed("db@2@10.0.0.3", "o2m", None, 4),
        ];
        // A peer that never had ours: its states say nothing about it.
        let stranger = vec![listed("db@0", "s0", Some("x"), 9)];
        let answers = [ok("10.0.0.1", origin), ok("10.0.0.2", stranger)];
        assert_eq!(decide("db", Some(&ours), &answers), Ok(()));
        // Another volume's snapshots do not count.
        let other = vec![
            listed("db@2", "o2", None, 3),
            listed("web@9", "w9", None, 4),
        ];
        assert_eq!(decide("db", Some(&ours), &[ok("a", other)]), Ok(()));
    }

    #[test]
    fn a_state_built_on_ours_refuses_even_without_the_copy() {
        // A third node restored our db@1 (origin o1), went on to db@3 and
        // purged its copy of db@1: it holds a newer state all the same.
        // (Before the rule was shared with the follow, only a peer still
        // holding the copy was seen.)
        let ours = here("db@1", "n1", Some("o1"));
        let mut went_on = listed("db@3", "c3", None, 5);
        went_on.lineage = vec!["o1".into()];
        let origin = vec![listed("db@1", "o1", None, 1)];
        assert_eq!(
            decide(
                "db",
                Some(&ours),
                &[
                    ok("10.0.0.1", origin.clone()),
                    ok("10.0.0.3", vec![went_on])
                ]
            ),
            Err(TakeoverError::Newer {
                volume: "db".into(),
                peer: "10.0.0.3".into(),
                ours: "db@1".into(),
                theirs: "db@3".into(),
            })
        );
        // A state of its own (no lineage to ours) is not newer than ours.
        let own = listed("db@4", "c4", None, 6);
        assert_eq!(
            decide(
                "db",
                Some(&ours),
                &[ok("10.0.0.1", origin), ok("c", vec![own])]
            ),
            Ok(())
        );
    }

    #[test]
    fn an_unanswered_origin_refuses_and_a_local_snapshot_asks_nobody() {
        let ours = here("db@1", "n1", Some("o1"));
        let stranger = vec![listed("db@0", "s0", None, 9)];
        let err = decide(
            "db",
            Some(&ours),
            &[down("10.0.0.1"), ok("b", stranger.clone())],
        );
        assert!(
            matches!(&err, Err(TakeoverError::Unverified { unreachable, .. }) if unreachable.contains("10.0.0.1 (no route to host)")),
            "{err:?}"
        );
        // The origin answered: a silent stranger does not matter.
        let origin = vec![listed("db@1", "o1", None, 1)];
        assert_eq!(
            decide("db", Some(&ours), &[ok("a", origin), down("b")]),
            Ok(())
        );
        // Made here: nothing to ask, whatever the peers say.
        let mine = here("db@1", "n1", None);
        assert_eq!(decide("db", Some(&mine), &[down("a")]), Ok(()));
    }

    #[test]
    fn nothing_here_refuses_while_a_peer_holds_a_state() {
        let theirs = vec![listed("db@1", "o1", None, 1), listed("db@2", "o2", None, 2)];
        assert_eq!(
            decide("db", None, &[ok("a", vec![]), ok("b", theirs)]),
            Err(TakeoverError::NoneHere {
                volume: "db".into(),
                peer: "b".into(),
                theirs: "db@2".into(),
            })
        );
        assert!(matches!(
            decide("db", None, &[ok("a", vec![]), down("b")]),
            Err(TakeoverError::UnverifiedNone { .. })
        ));
        // Nobody has anything, or nobody to ask: the reference's no-op.
        assert_eq!(decide("db", None, &[ok("a", vec![])]), Ok(()));
        assert_eq!(decide("db", None, &[]), Ok(()));
    }

    #[test]
    fn peers_are_the_known_hosts_on_the_ssh_port() {
        let text = "\
[10.0.0.2]:1122 ssh-ed25519 AAAA
[10.0.0.3]:1122,[node3]:1122 ssh-ed25519 BBBB
[10.0.0.2]:1122 ssh-rsa CCCC
[10.0.0.9]:2222 ssh-ed25519 DDDD
plain.example ssh-ed25519 EEEE
|1|hashed= ssh-ed25519 FFFF
@cert-authority *.example ssh-ed25519 GGGG
# comment

";
        assert_eq!(
            paired_peers(text, 1122),
            vec!["10.0.0.2", "10.0.0.3", "node3"]
        );
        assert_eq!(paired_peers(text, 22), vec!["plain.example"]);
    }
}
