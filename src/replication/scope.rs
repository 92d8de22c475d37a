//! What a paired key may read and delete here: the scope of a peer.
//!
//! `scripts/pair-nodes.sh` installs a peer's key with the forced command
//! `buttervolume ssh-command --peer <name>`, `<name>` being how this node
//! names that peer (`replicate:<name>`, sent markers `<snapshot>@<name>`).
//! With `--peer`, the reading and deleting verbs (`list`, `list-newest`,
//! `send`, `delete`, and rsync's read side) see only what is replicated
//! with that peer:
//!
//! - every snapshot of a volume with a `replicate:` or `synchronize:` line
//!   naming the peer in this node's schedule (active or paused, written by
//!   hand or by a volume option), whatever user it logs in as, or with a
//!   sent marker naming it (this node sent that volume there: the peer holds
//!   its data already, and the deploy handler's unscheduled volumes stay
//!   visible for its takeover check);
//! - the snapshots that peer sent here ([`record_received`]), and the
//!   snapshots here that descend from a state it sent (their lineage holds
//!   it: its data, restored here and written on).
//!
//! A volume only snapshotted here, or replicated with another node, is
//! invisible to that key, so a peer cannot read it by pulling, nor by
//! creating a volume of the same name with `-o replicate:<this node>` on its
//! side, nor by pushing a snapshot of that name first (only what descends
//! from what it pushed becomes visible). rsync reads a live volume: it
//! needs a schedule line or a marker. Receiving stays open to every paired
//! key (a peer decides what the state it sends holds, nothing more). A key
//! installed without `--peer` (before this release) keeps unscoped access,
//! and `doctor` and `status` warn about it ([`unscoped_keys`]).
//!
//! The record of what a peer sent is one small file per received snapshot,
//! `STATE_PATH/received-from/<snapshot>`: the peer's name, the UUID the
//! snapshot got here (a snapshot deleted and made again under the same
//! name is not the peer's any more) and the state it carries (its received
//! UUID, what lineages name).

use std::cell::OnceCell;
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

/// What one request of a paired key may see in one data directory. A
/// diverged state kept by cluster mode ([`crate::cluster::local`]) is
/// never seen by any peer: it must not travel.
#[derive(Debug)]
pub struct Scope {
    who: Who,
    hidden: BTreeSet<String>,
}

#[derive(Debug)]
enum Who {
    /// A key installed without `--peer`: everything, as before scoping.
    Unscoped,
    Peer(PeerScope),
}

#[derive(Debug)]
pub struct PeerScope {
    /// The peer's name, as this node writes it (no `user@`).
    peer: String,
    /// The volumes with a replicate/synchronize line naming the peer.
    scheduled: BTreeSet<String>,
    /// The data directory the request reads.
    dir: PathBuf,
    /// `STATE_PATH/received-from`.
    records: PathBuf,
    /// The volumes with a sent marker naming the peer in `dir` (read when
    /// the schedule does not settle a question, once).
    marked: OnceCell<BTreeSet<String>>,
    /// The states the peer sent here (read when needed, once).
    sent_states: OnceCell<BTreeSet<String>>,
}

impl Scope {
    /// The scope of `peer` (`None`: unscoped) in `dir`, from this node's
    /// schedule as it is now. An unreadable schedule names no volume.
    pub fn load(config: &Config, peer: Option<&str>, dir: &Path) -> Scope {
        let hidden = crate::cluster::local::Local::of(config)
            .diverged()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let Some(peer) = peer else {
            return Scope {
                who: Who::Unscoped,
                hidden,
            };
        };
        let peer = names::peer_of(peer).to_string();
        let schedule = std::fs::read(&config.schedule).unwrap_or_default();
        let scheduled = csv::parse(&schedule)
            .jobs()
            .filter(|job| names_peer(&job.action, &peer))
            .map(|job| job.name().to_string())
            .collect();
        Scope {
            who: Who::Peer(PeerScope {
                peer,
                scheduled,
                dir: dir.to_path_buf(),
                records: records_dir(config),
                marked: OnceCell::new(),
                sent_states: OnceCell::new(),
            }),
            hidden,
        }
    }

    /// An unscoped key's scope, nothing hidden.
    pub fn unscoped() -> Scope {
        Scope {
            who: Who::Unscoped,
            hidden: BTreeSet::new(),
        }
    }

    /// The peer this scope is for (`None` when unscoped).
    pub fn peer(&self) -> Option<&str> {
        match &self.who {
            Who::Unscoped => None,
            Who::Peer(p) => Some(&p.peer),
        }
    }

    /// True when the whole of `volume` (every snapshot, and the live volume
    /// for rsync) is visible: a schedule line or a sent marker names the
    /// peer.
    pub fn whole_volume(&self, volume: &str) -> bool {
        match &self.who {
            Who::Unscoped => true,
            Who::Peer(p) => p.scheduled.contains(volume) || p.marked().contains(volume),
        }
    }

    /// True when the snapshot `name` (of the scope's directory) is visible.
    pub fn sees(&self, fs: &dyn Subvolumes, name: &str) -> bool {
        if self.hidden.contains(name) {
            return false;
        }
        match &self.who {
            Who::Unscoped => true,
            Who::Peer(p) => {
                names::check_snapshot(name).is_ok()
                    && (self.whole_volume(names::volume_of(name))
                        || p.sent(fs, name)
                        || p.descends_from_what_it_sent(fs, name))
            }
        }
    }
}

impl PeerScope {
    fn marked(&self) -> &BTreeSet<String> {
        self.marked.get_or_init(|| {
            let entries = std::fs::read_dir(&self.dir).into_iter().flatten().flatten();
            entries
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| names::marker_host(n).is_some_and(|h| names::peer_of(h) == self.peer))
                .map(|n| names::volume_of(&n).to_string())
                .collect()
        })
    }

    /// The record of `name`, when this peer sent it.
    fn record(&self, name: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.records.join(name)).ok()?;
        Record::parse(&text).filter(|r| r.peer == self.peer)
    }

    /// True when this peer sent `name` and it is still that snapshot.
    fn sent(&self, fs: &dyn Subvolumes, name: &str) -> bool {
        self.record(name).is_some_and(|record| {
            fs.identity(&self.dir.join(name))
                .is_ok_and(|id| id.uuid == record.uuid)
        })
    }

    /// True when `name`'s lineage holds a state this peer sent here.
    fn descends_from_what_it_sent(&self, fs: &dyn Subvolumes, name: &str) -> bool {
        let sent = self.sent_states.get_or_init(|| {
            let entries = std::fs::read_dir(&self.records)
                .into_iter()
                .flatten()
                .flatten();
            entries
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| self.record(&n))
                .map(|r| r.state)
                .collect()
        });
        if sent.is_empty() {
            return false;
        }
        let path = self.dir.join(name);
        let raw = crate::metadata::read(fs, &path).ok().flatten();
        crate::metadata::VolumeMetadata::decode(&path, raw)
            .lineage
            .iter()
            .any(|key| sent.contains(key))
    }
}

/// True when `action` is a replicate or synchronize line naming `peer`.
fn names_peer(action: &Action, peer: &str) -> bool {
    match action {
        Action::Replicate { host } => names::peer_of(host) == peer,
        Action::Synchronize { hosts } => hosts.iter().any(|h| names::peer_of(h) == peer),
        Action::Snapshot
        | Action::Purge { .. }
        | Action::Backup { .. }
        | Action::CheckBackups { .. } => false,
    }
}

fn records_dir(config: &Config) -> PathBuf {
    config.state_path.join(RECEIVED_DIR)
}

/// One record: who sent a snapshot, the UUID it got here, the state it is.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    peer: String,
    uuid: String,
    state: String,
}

impl Record {
    fn render(&self) -> String {
        format!("{} {} {}\n", self.peer, self.uuid, self.state)
    }

    fn parse(text: &str) -> Option<Record> {
        let mut words = text.split_whitespace();
        let record = Record {
            peer: words.next()?.into(),
            uuid: words.next()?.into(),
            state: words.next()?.into(),
        };
        words.next().is_none().then_some(record)
    }
}

/// Records that `scope`'s peer sent the snapshot `received` (atomically:
/// a record is whole or absent). Unscoped keys record nothing: nobody can
/// tell which node they are.
pub fn record_received(
    config: &Config,
    scope: &Scope,
    received: &super::receive::Received,
) -> std::io::Result<()> {
    let Some(peer) = scope.peer() else {
        return Ok(());
    };
    if names::check_snapshot(&received.name).is_err() {
        return Ok(());
    }
    let dir = records_dir(config);
    std::fs::create_dir_all(&dir)?;
    let record = Record {
        peer: peer.into(),
        uuid: received.uuid.clone(),
        state: received.received_uuid.clone(),
    };
    crate::fsutil::write_atomic(&dir.join(&received.name), record.render().as_bytes())
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
            forced_command_of(line).is_some_and(|c| {
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

/// What `status` and `doctor` say of a key without `--peer`.
pub fn unscoped_key_message(key: &str) -> String {
    format!("the paired key {key} reads every volume here (its forced command has no --peer): pair again with scripts/pair-nodes.sh, or add --peer <its name> to its command= in authorized_keys")
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

    fn received(name: &str, uuid: &str, state: &str) -> super::super::receive::Received {
        super::super::receive::Received {
            name: name.into(),
            uuid: uuid.into(),
            received_uuid: state.into(),
            incremental: false,
            bytes: 0,
            already_present: false,
        }
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
        for name in [
            "db@1",
            "logs@1",
            "logs@2",
            "web@1",
            "solo@1",
            "sent@1",
            "sent@1@10.0.0.2",
        ] {
            fs.snapshot(&volume, &snaps.join(name), true).unwrap();
        }
        let load = |peer| Scope::load(&config, peer, &snaps);
        let scope = load(Some("10.0.0.2"));
        assert!(scope.whole_volume("db") && scope.whole_volume("web"));
        assert!(scope.whole_volume("sent"), "a marker names the peer");
        assert!(!scope.whole_volume("logs") && !scope.whole_volume("solo"));
        assert!(scope.sees(&fs, "db@1") && scope.sees(&fs, "sent@1"));
        assert!(!scope.sees(&fs, "solo@1"));
        assert!(!scope.sees(&fs, "logs@1"));

        // logs@2 was sent by this peer: it sees that one only.
        let uuid = fs.identity(&snaps.join("logs@2")).unwrap().uuid;
        record_received(&config, &scope, &received("logs@2", &uuid, "state-p2")).unwrap();
        assert!(scope.sees(&fs, "logs@2"));
        assert!(!scope.sees(&fs, "logs@1"));
        // What descends from it (restored here, written on, snapshotted)
        // is the peer's data too.
        let meta = crate::metadata::VolumeMetadata {
            lineage: vec!["state-p2".into()],
            ..Default::default()
        };
        fs.set_xattr(&volume, crate::metadata::XATTR, &meta.encode())
            .unwrap();
        fs.snapshot(&volume, &snaps.join("logs@3"), true).unwrap();
        assert!(load(Some("10.0.0.2")).sees(&fs, "logs@3"));
        assert!(!load(Some("10.0.0.4")).sees(&fs, "logs@3"));
        // Another peer's record, or a snapshot made again under that name,
        // is not this peer's.
        let other = load(Some("10.0.0.3"));
        assert!(other.sees(&fs, "logs@1"), "replicated with .3");
        assert!(!other.sees(&fs, "solo@1") && !other.sees(&fs, "sent@1"));
        fs.delete(&snaps.join("logs@2")).unwrap();
        fs.snapshot(&volume, &snaps.join("logs@2"), true).unwrap();
        assert!(!scope.sees(&fs, "logs@2"));
        forget_received(&config, "logs@2");
        assert!(!records_dir(&config).join("logs@2").exists());

        let unscoped = load(None);
        assert!(unscoped.sees(&fs, "solo@1") && unscoped.whole_volume("solo"));
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
