//! The ownership rule, pure: what a first Mount on this node may do with a
//! volume's owner record, and what the fencing watchdog must do with the
//! time since etcd and the pair peer last answered. The argument that the
//! two together never leave two writers is in [`super`]'s doc.

use std::time::Duration;

use super::records::OwnerRecord;

/// What a first Mount may do, from the owner record and whether the
/// owner's lease lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns it already (a restart, or a Mount after its own
    /// Unmount): same epoch.
    Mine,
    /// Free (no record) or released by its owner: take it, next epoch.
    Take { from: Option<String> },
    /// Held with a container by a node whose lease expired: take it over,
    /// next epoch, if the owner does not answer over SSH either.
    Failover { from: String },
    /// Held with a container by a live node.
    Refuse { owner: String, since: i64 },
    /// Held with a container by a node whose lease expired, but whose
    /// pair peer is another node: only that peer may take it over (the
    /// owner keeps writing without etcd while its peer answers, so a
    /// third node taking it over would make two writers).
    NotPeer { owner: String, peer: String },
}

/// `names_me`: true when a host (the owner record's `peer`) names this
/// node ([`crate::schedule::self_host`]).
pub fn claim(
    record: Option<&OwnerRecord>,
    me: &str,
    owner_alive: bool,
    names_me: impl Fn(&str) -> bool,
) -> Claim {
    match record {
        None => Claim::Take { from: None },
        Some(r) if r.node == me => Claim::Mine,
        Some(r) if !r.mounted => Claim::Take {
            from: Some(r.node.clone()),
        },
        Some(r) if owner_alive => Claim::Refuse {
            owner: r.node.clone(),
            since: r.since,
        },
        Some(r) if !r.peer.is_empty() && !names_me(&r.peer) => Claim::NotPeer {
            owner: r.node.clone(),
            peer: r.peer.clone(),
        },
        Some(r) => Claim::Failover {
            from: r.node.clone(),
        },
    }
}

/// How long before its lease can expire an owner cut off from etcd and
/// from its peer makes its volumes read-only: `OWNER_TTL / 3`, at least
/// one second (clock drift between nodes, and the time the ioctls take).
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_secs(1))
}

/// True when an owner must fence: neither etcd (`since_etcd`: since the
/// last keep-alive that etcd confirmed was sent) nor its peer
/// (`since_peer`: since the last ping the peer answered, promising not to
/// take over for `ttl`) has answered for `ttl - margin`.
pub fn must_fence(ttl: Duration, since_etcd: Duration, since_peer: Option<Duration>) -> bool {
    let limit = ttl.saturating_sub(margin(ttl));
    since_etcd >= limit && since_peer.is_none_or(|p| p >= limit)
}

/// True when this node, having answered `from`'s ping `since_promise` ago,
/// may take over `from`'s volumes: only after the promise ran out.
pub fn promise_over(ttl: Duration, since_promise: Option<Duration>) -> bool {
    since_promise.is_none_or(|p| p > ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, mounted: bool) -> OwnerRecord {
        OwnerRecord {
            since: 100,
            mounted,
            ..OwnerRecord::for_test(node, 4)
        }
    }

    #[test]
    fn a_mount_takes_a_free_or_released_volume_and_keeps_its_own() {
        assert_eq!(
            claim(None, "a", false, |_| true),
            Claim::Take { from: None }
        );
        assert_eq!(
            claim(Some(&record("a", true)), "a", false, |_| true),
            Claim::Mine
        );
        assert_eq!(
            claim(Some(&record("b", false)), "a", true, |_| true),
            Claim::Take {
                from: Some("b".into())
            }
        );
    }

    #[test]
    fn a_mounted_volume_of_a_live_owner_is_refused_and_of_a_dead_one_failed_over() {
        assert_eq!(
            claim(Some(&record("b", true)), "a", true, |_| true),
            Claim::Refuse {
                owner: "b".into(),
                since: 100
            }
        );
        assert_eq!(
            claim(Some(&record("b", true)), "a", false, |_| true),
            Claim::Failover { from: "b".into() }
        );
    }

    #[test]
    fn only_the_owners_pair_peer_may_take_a_dead_owners_volume_over() {
        let mut r = record("b", true);
        r.peer = "10.0.0.1".into();
        let is_a = |host: &str| host == "10.0.0.1";
        assert_eq!(
            claim(Some(&r), "a", false, is_a),
            Claim::Failover { from: "b".into() }
        );
        assert_eq!(
            claim(Some(&r), "c", false, |_| false),
            Claim::NotPeer {
                owner: "b".into(),
                peer: "10.0.0.1".into()
            }
        );
        // An owner without a peer has no failsafe (it fences as soon as
        // etcd is silent): any node may take its volume over.
        r.peer.clear();
        assert_eq!(
            claim(Some(&r), "c", false, |_| false),
            Claim::Failover { from: "b".into() }
        );
        // A live owner is refused first, whoever asks.
        assert!(matches!(
            claim(Some(&r), "c", true, |_| false),
            Claim::Refuse { .. }
        ));
    }

    #[test]
    fn an_owner_fences_only_when_both_etcd_and_its_peer_are_silent_before_its_lease_ends() {
        let ttl = Duration::from_secs(15);
        let s = Duration::from_secs;
        assert_eq!(margin(ttl), s(5));
        assert!(!must_fence(ttl, s(9), None));
        assert!(must_fence(ttl, s(10), None));
        assert!(
            !must_fence(ttl, s(14), Some(s(2))),
            "the peer answers: failsafe"
        );
        assert!(must_fence(ttl, s(14), Some(s(10))));
        assert!(!must_fence(ttl, s(1), Some(s(60))), "etcd answers");
        // Fencing comes before the lease can expire (ttl after the last
        // keep-alive) and before the peer's promise runs out (ttl after
        // the last answered ping).
        assert!(must_fence(ttl, ttl - margin(ttl), Some(ttl - margin(ttl))));
        assert!(!promise_over(ttl, Some(ttl - margin(ttl))));
        assert!(promise_over(ttl, Some(s(16))));
        assert!(promise_over(ttl, None));
        assert_eq!(margin(Duration::from_secs(3)), s(1));
    }
}
