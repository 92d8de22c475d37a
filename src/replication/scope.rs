//! What a paired key may read and delete here: the scope of a peer.
//!
//! `scripts/pair-nodes.sh` installs a peer's key with the forced command
//! `buttervolume ssh-command --peer <name>`, `<name>` being how this node's
//! schedule names that peer (`replicate:<name>`). With `--peer`, the
//! reading and deleting verbs (`list`, `list-newest`, `send`, `delete`, and
//! rsync's read side) see only:
//!
//! - the volumes replicated with that peer here: a `replicate:` or
//!   `synchronize:` line of this node's schedule (active or paused, written
//!   by hand or by a volume option) naming it, whatever user it logs in as;
//! - the snapshots that peer sent here ([`record_received`]): its own data,
//!   which it may list and take back, nothing else of that volume.
//!
//! A volume only snapshotted here, or replicated with another node, is
//! invisible to that key, so a peer cannot read it by pulling, nor by
//! creating a volume of the same name with `-o replicate:<this node>` on its
//! side. Receiving stays open to every paired key (a peer decides what the
//! state it sends holds, nothing more). A key installed without `--peer`
//! (before this release) keeps today's unscoped access, and `doctor` and
//! `status` warn about it ([`unscoped_keys`]).
//!
//! The record of what a peer sent is one small file per received snapshot,
//! `STATE_PATH/received-from/<snapshot>`, holding the peer's name and the
//! UUID the snapshot got here: a snapshot deleted and made again under the
//! same name is not the peer's any more.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::names;
use crate::schedule::{csv, Action};
use crate::subvolumes::Subvolumes;

/// Where the records of received snapshots live, under STATE_PATH.
const RECEIVED_DIR: &str = "received-from";

/// The forced command's option that scopes a key.
pub const PEER_OPTION: &str = "--peer";

/// What one connection of a paired key may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A key installed without `--peer`: everything, as before scoping.
    Unscoped,
    Peer(PeerScope),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerScope {
    /// The peer's name, as this node's schedule writes it (no `user@`).
    peer: String,
    /// The volumes with a replicate/synchronize line naming the peer.
    volumes: BTreeSet<String>,
    /// `STATE_PATH/received-from`.
    records: PathBuf,
}

impl Scope {
    /// The scope of `peer` (`None`: unscoped), from this node's schedule as
    /// it is now. An unreadable schedule scopes the peer to what it sent.
    pub fn load(config: &Config, peer: Option<&str>) -> Scope {
        let Some(peer) = peer else {
            return Scope::Unscoped;
        };
        let peer = names::peer_of(peer).to_string();
        let schedule = std::fs::read(&config.schedule).unwrap_or_default();
        let volumes = csv::parse(&schedule)
            .jobs()
            .filter(|job| names_peer(&job.action, &peer))
            .map(|job| job.name().to_string())
            .collect();
        Scope::Peer(PeerScope {
            peer,
            volumes,
            records: records_dir(config),
        })
    }

    /// The peer this scope is for (`None` when unscoped).
    pub fn peer(&self) -> Option<&str> {
        match self {
            Scope::Unscoped => None,
            Scope::Peer(p) => Some(&p.peer),
        }
    }

    /// True when every snapshot of `volume` (and the volume itself, for
    /// rsync) is visible: the volume is replicated with the peer.
    pub fn whole_volume(&self, volume: &str) -> bool {
        match self {
            Scope::Unscoped => true,
            Scope::Peer(p) => p.volumes.contains(volume),
        }
    }

    /// True when the snapshot `name` in `dir` is visible: its volume is
    /// replicated with the peer, or the peer sent it (same UUID as then).
    pub fn sees(&self, fs: &dyn Subvolumes, dir: &Path, name: &str) -> bool {
        match self {
            Scope::Unscoped => true,
            Scope::Peer(p) => {
                p.volumes.contains(names::volume_of(name))
                    || p.sent(name, || fs.identity(&dir.join(name)).ok().map(|id| id.uuid))
            }
        }
    }
}

impl PeerScope {
    /// True when the record says this peer sent `name`, and the snapshot
    /// there now (`uuid_here`, asked only when a record exists) is that one.
    fn sent(&self, name: &str, uuid_here: impl FnOnce() -> Option<String>) -> bool {
        if names::check_snapshot(name).is_err() {
            return false;
        }
        let Ok(text) = std::fs::read_to_string(self.records.join(name)) else {
            return false;
        };
        match Record::parse(&text) {
            Some(record) if record.peer == self.peer => uuid_here() == Some(record.uuid),
            _ => false,
        }
    }
}

/// True when `action` is a replicate or synchronize line naming `peer`.
fn names_peer(action: &Action, peer: &str) -> bool {
    match action {
        Action::Replicate { host } => names::peer_of(host) == peer,
        Action::Synchronize { hosts } => hosts.iter().any(|h| names::peer_of(h) == peer),
        Action::Snapshot | Action::Purge { .. } => false,
    }
}

fn records_dir(config: &Config) -> PathBuf {
    config.state_path.join(RECEIVED_DIR)
}

/// One record: who sent a snapshot, and the UUID it got here.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    peer: String,
    uuid: String,
}

impl Record {
    fn render(&self) -> String {
        format!("{} {}\n", self.peer, self.uuid)
    }

    fn parse(text: &str) -> Option<Record> {
        let (peer, uuid) = text.trim_end().split_once(' ')?;
        Some(Record {
            peer: peer.into(),
            uuid: uuid.into(),
        })
    }
}

/// Records that `scope`'s peer sent the snapshot `name`, which has `uuid`
/// here (atomically: a record is whole or absent). Unscoped keys record
/// nothing: nobody can tell which node they are.
pub fn record_received(
    config: &Config,
    scope: &Scope,
    name: &str,
    uuid: &str,
) -> std::io::Result<()> {
    let Some(peer) = scope.peer() else {
        return Ok(());
    };
    if names::check_snapshot(name).is_err() {
        return Ok(());
    }
    let dir = records_dir(config);
    std::fs::create_dir_all(&dir)?;
    let record = Record {
        peer: peer.into(),
        uuid: uuid.into(),
    };
    crate::fsutil::write_atomic(&dir.join(name), record.render().as_bytes())
}

/// Forgets the record of a deleted snapshot.
pub fn forget_received(config: &Config, name: &str) {
    if names::check_snapshot(name).is_ok() {
        let _ = std::fs::remove_file(records_dir(config).join(name));
    }
}

/// The paired keys of `authorized_keys` (in SSH_DIR) whose forced command
/// is ours without `--peer`: each reads every volume here. Named by their
/// comment (or their start).
pub fn unscoped_keys(config: &Config) -> Vec<String> {
    let text = std::fs::read_to_string(config.ssh_dir.join("authorized_keys")).unwrap_or_default();
    text.lines()
        .filter(|line| {
            let command = forced_command_of(line);
            command.is_some_and(|c| {
                c.split_whitespace().any(|w| w == "ssh-command")
                    && !c.split_whitespace().any(|w| w == PEER_OPTION)
            })
        })
        .map(|line| {
            line.split_whitespace()
                .last()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The `command="..."` option of an authorized_keys line.
fn forced_command_of(line: &str) -> Option<&str> {
    let start = line.find("command=\"")? + "command=\"".len();
    let end = line[start..].find('"')?;
    Some(&line[start..start + end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subvolumes::fake::FakeSubvolumes;
    use std::collections::HashMap;

    fn config(dir: &Path) -> Config {
        let env: HashMap<String, String> = [
            ("STATE_PATH", dir.join("state")),
            ("SCHEDULE", dir.join("schedule.csv")),
            ("SSH_DIR", dir.join("ssh")),
        ]
        .into_iter()
        .map(|(k, v)| (format!("BUTTERVOLUME_{k}"), v.display().to_string()))
        .collect();
        Config::resolve(&env, &HashMap::new()).unwrap()
    }

    #[test]
    fn a_peer_sees_what_is_replicated_with_it_and_what_it_sent() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        std::fs::write(
            &config.schedule,
            "db,replicate:root@10.0.0.2,60,True\r\n\
             logs,replicate:10.0.0.3,60,True\r\n\
             web,\"synchronize:10.0.0.3,10.0.0.2\",60,False\r\n\
             solo,snapshot,60,True\r\n",
        )
        .unwrap();
        let fs = FakeSubvolumes::default();
        let snaps = dir.path().join("snapshots");
        std::fs::create_dir_all(&snaps).unwrap();
        let volume = dir.path().join("v");
        fs.create(&volume).unwrap();
        for name in ["db@1", "logs@1", "logs@2", "web@1", "solo@1"] {
            fs.snapshot(&volume, &snaps.join(name), true).unwrap();
        }
        let scope = Scope::load(&config, Some("10.0.0.2"));
        assert!(scope.whole_volume("db") && scope.whole_volume("web"));
        assert!(!scope.whole_volume("logs") && !scope.whole_volume("solo"));
        assert!(scope.sees(&fs, &snaps, "db@1"));
        assert!(!scope.sees(&fs, &snaps, "solo@1"));
        assert!(!scope.sees(&fs, &snaps, "logs@1"));

        // logs@2 was sent by this peer: it sees that one only.
        let uuid = fs.identity(&snaps.join("logs@2")).unwrap().uuid;
        record_received(&config, &scope, "logs@2", &uuid).unwrap();
        assert!(scope.sees(&fs, &snaps, "logs@2"));
        assert!(!scope.sees(&fs, &snaps, "logs@1"));
        // Another peer's record, or a snapshot made again under that name,
        // is not this peer's.
        let other = Scope::load(&config, Some("10.0.0.3"));
        assert!(other.sees(&fs, &snaps, "logs@1"), "replicated with .3");
        assert!(!other.sees(&fs, &snaps, "solo@1"));
        fs.delete(&snaps.join("logs@2")).unwrap();
        fs.snapshot(&volume, &snaps.join("logs@2"), true).unwrap();
        assert!(!scope.sees(&fs, &snaps, "logs@2"));
        forget_received(&config, "logs@2");
        assert!(!records_dir(&config).join("logs@2").exists());

        let unscoped = Scope::load(&config, None);
        assert!(unscoped.sees(&fs, &snaps, "solo@1") && unscoped.whole_volume("solo"));
    }

    #[test]
    fn keys_without_a_peer_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        std::fs::create_dir_all(&config.ssh_dir).unwrap();
        std::fs::write(
            config.ssh_dir.join("authorized_keys"),
            "command=\"/usr/bin/buttervolume ssh-command\",restrict ssh-ed25519 AAAA old@a\n\
             command=\"/usr/bin/buttervolume ssh-command --peer b\",restrict ssh-ed25519 AAAB new@b\n\
             ssh-ed25519 AAAC admin@c\n",
        )
        .unwrap();
        assert_eq!(unscoped_keys(&config), vec!["old@a".to_string()]);
    }
}
