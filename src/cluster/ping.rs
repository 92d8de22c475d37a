//! The pair's liveness check over SSH, both ends: `buttervolume alive
//! <from>` ([`crate::replication::protocol::PeerRequest::Alive`]).
//!
//! The answering node records that it answered `from` (its promise not to
//! take `from`'s volumes over for `OWNER_TTL`, [`super::local`]) and replies
//! with its node name and the epochs it knows, one JSON object
//! ([`AliveReply`]). The asking owner keeps writing while it gets answers
//! (etcd lost, peer alive: failsafe) and fences at once any volume the
//! answer shows taken over. Every check is bounded by [`PING_TIMEOUT`],
//! whatever the link does.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::local::Local;
use super::records;
use crate::config::Config;
use crate::replication::protocol::PeerRequest;
use crate::replication::transport::{Peer, SshSettings};

/// The longest a ping may take, connection included.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest reply read (a peer is hostile until checked).
const MAX_REPLY: usize = 1 << 20;

/// What the pinged node answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliveReply {
    /// Its `NODE_NAME`.
    pub node: String,
    /// Per volume: the newest epoch it knows and that epoch's owner.
    pub epochs: BTreeMap<String, (u64, String)>,
}

impl AliveReply {
    /// Parses a reply; anything malformed, oversized or naming bad
    /// volumes or nodes is `None` (no answer).
    pub fn parse(bytes: &[u8]) -> Option<AliveReply> {
        if bytes.len() > MAX_REPLY {
            return None;
        }
        let reply: AliveReply = serde_json::from_slice(bytes).ok()?;
        records::check_node(&reply.node).ok()?;
        let sane = reply.epochs.iter().all(|(volume, (_, owner))| {
            crate::names::check_volume(volume).is_ok() && records::check_node(owner).is_ok()
        });
        sane.then_some(reply)
    }
}

/// Pings `host` as node `me`; `None` when it does not answer in time.
pub fn ping(settings: &SshSettings, host: &str, me: &str) -> Option<AliveReply> {
    let (tx, rx) = mpsc::channel();
    let settings = SshSettings {
        stall: PING_TIMEOUT,
        ..settings.clone()
    };
    let host = host.to_string();
    let command = PeerRequest::Alive { from: me.into() }.to_command();
    // A thread, so a connect that hangs on a cut link cannot hold the
    // caller past the timeout; it ends on its own.
    std::thread::spawn(move || {
        let answer = Peer::connect(&host, &settings)
            .and_then(|peer| peer.run(&command))
            .ok()
            .filter(|out| out.status == 0)
            .and_then(|out| AliveReply::parse(&out.stdout));
        let _ = tx.send(answer);
    });
    rx.recv_timeout(PING_TIMEOUT).ok().flatten()
}

/// True when `owner`, reached at one of `hosts` (a volume's replicate
/// hosts: which one is the owner is not known), answers a ping from this
/// node. The hosts are pinged one after the other (one, in a pair).
pub fn answers_any(cluster: &super::Cluster, hosts: &[String], owner: &str) -> bool {
    hosts
        .iter()
        .any(|host| ping(cluster.ssh(), host, &cluster.node).is_some_and(|r| r.node == owner))
}

/// The forced command's side: promise, then answer. When this node's
/// daemon is dead (its lock is free), nothing here can fence later: the
/// volumes it owns with a container are made read-only now, and no answer
/// is given, so the asking peer may take them over once the lease expired.
pub fn serve(config: &Config, from: &str) -> i32 {
    let local = Local::of(config);
    let Some(me) = local.identity() else {
        eprintln!("buttervolume: this node does not run in cluster mode");
        return 1;
    };
    if !local.daemon_alive() {
        let fs = crate::subvolumes::Btrfs;
        let mut fenced = Vec::new();
        for (volume, _) in local.owned_mounted(&me) {
            let path = config.volumes_path.join(&volume);
            let done = match path.exists() {
                true => local.fence(&fs, &volume, &path).is_ok(),
                false => local.set_fenced(&volume, true).is_ok(),
            };
            if done {
                fenced.push(volume);
            }
        }
        eprintln!(
            "buttervolume: the daemon is not running here; made read-only: {}",
            fenced.join(" ")
        );
        return 1;
    }
    if let Err(e) = local.promise(from) {
        eprintln!("buttervolume: cannot record the answer to {from}: {e}");
        return 1;
    }
    let reply = AliveReply {
        node: me,
        epochs: local
            .known()
            .into_iter()
            .map(|(volume, r)| (volume, (r.epoch, r.node)))
            .collect(),
    };
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_round_trips_and_a_hostile_one_is_no_answer() {
        let mut epochs = BTreeMap::new();
        epochs.insert("db".to_string(), (3, "n2".to_string()));
        let reply = AliveReply {
            node: "n2".into(),
            epochs,
        };
        let bytes = serde_json::to_vec(&reply).unwrap();
        assert_eq!(AliveReply::parse(&bytes), Some(reply));
        assert_eq!(
            AliveReply::parse(b"{\"Node\":\"../x\",\"Epochs\":{}}"),
            None
        );
        assert_eq!(
            AliveReply::parse(b"{\"Node\":\"n\",\"Epochs\":{\"a/b\":[1,\"n\"]}}"),
            None
        );
        assert_eq!(AliveReply::parse(&vec![b' '; MAX_REPLY + 1]), None);
    }
}
