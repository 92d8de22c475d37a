//! The peer protocol: every command one node may send another over SSH,
//! defined once for both ends. The sender builds the command line with
//! [`PeerRequest::to_command`]; the forced command on the other end reads
//! it back with [`PeerRequest::parse`], which is also where a hostile
//! request is refused (no shell ever sees it: it is split on whitespace).
//!
//! A request is exactly one of:
//! - `buttervolume receive [--test] [--zstd] [--parent-uuid <uuid>]`: land a
//!   send stream from stdin; replies with one JSON line (what landed);
//! - `buttervolume list <volume> [--test]`: that volume's snapshots, one
//!   [`ListedSnapshot`] JSON object per line (for parent selection);
//! - `buttervolume list-newest [--test]`: the newest pullable snapshot of
//!   every volume, one [`ListedSnapshot`] a line (a whole idle round's
//!   question in one command, [`super::newest`]);
//! - `buttervolume delete <snapshot> [--test]`: delete a received snapshot;
//! - `buttervolume send <snapshot> [--parent <snapshot>] [--test]`: stream
//!   one named snapshot of one volume to stdout, incrementally from a parent
//!   of the same volume (for `receive`, the pull);
//! - `btrfs receive <dir>` and `btrfs subvolume delete <dir>/<snapshot>`:
//!   the literal commands a Python buttervolume 3.13 node sends (and we send
//!   to one);
//! - `rsync --server --sender <flags> . <dir>/<volume>[/]`: rsync's
//!   read-only server side, for `sync`.
//!
//! Which directories a `<dir>` may name is the forced command's business
//! (it knows the configuration); this module checks everything else.

use serde::{Deserialize, Serialize};

use crate::names::{self, NameError};

/// The longest request accepted.
const MAX_REQUEST: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("request too long")]
    TooLong,
    #[error("forbidden character {0:?}")]
    ForbiddenCharacter(char),
    #[error("\"..\" is not allowed")]
    DotDot,
    #[error("unknown receive option {0:?}")]
    ReceiveOption(String),
    #[error("--parent-uuid needs a UUID")]
    Uuid,
    #[error("expected <dir>/<snapshot>")]
    DeletePath,
    #[error("expected <dir>/<volume>")]
    RsyncPath,
    #[error("rsync option {0} is not allowed")]
    RsyncOption(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("not an allowed command")]
    NotAllowed,
}

/// One request, as both ends understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    Receive {
        test: bool,
        /// The stream is zstd-compressed (only our own senders do that).
        zstd: bool,
        /// The parent key (received UUID, else UUID) of an incremental send.
        parent_uuid: Option<String>,
        /// Cluster mode: the sender's epoch of the volume it pushes
        /// ([`crate::cluster::admit_push`]).
        epoch: Option<u64>,
    },
    /// Cluster mode's ping ([`crate::cluster::ping`]): `from` (a node name)
    /// asks whether this node is alive and which epochs it knows.
    Alive {
        from: String,
    },
    List {
        volume: String,
        test: bool,
    },
    ListNewest {
        test: bool,
    },
    Delete {
        snapshot: String,
        test: bool,
    },
    /// Send one snapshot (not a marker, not a volume) back on stdout.
    Send {
        snapshot: String,
        /// A snapshot of the same volume the requester holds too.
        parent: Option<String>,
        test: bool,
    },
    /// The reference's `btrfs receive <dir>`.
    BtrfsReceive {
        dir: String,
    },
    /// The reference's `btrfs subvolume delete <dir>/<snapshot>`.
    BtrfsDelete {
        dir: String,
        snapshot: String,
    },
    /// rsync's server side: `flags` between `--sender` and `.`.
    Rsync {
        flags: Vec<String>,
        dir: String,
        volume: String,
    },
}

/// One line of a `list` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSnapshot {
    pub name: String,
    pub uuid: String,
    pub received_uuid: Option<String>,
    pub read_only: bool,
    /// Its place in the peer's btrfs creation order (absent from older
    /// peers): what "the peer's newest" means.
    #[serde(default)]
    pub created: Option<(u64, u64)>,
    /// The states it descends from
    /// ([`crate::metadata::VolumeMetadata::lineage`]; absent from older
    /// peers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
    /// The subvolume it is a snapshot of on the peer (absent from older
    /// peers): two snapshots of one subvolume, in the peer's creation
    /// order, are one history that went on ([`crate::lineage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uuid: Option<String>,
}

#[cfg(test)]
impl ListedSnapshot {
    /// A read-only snapshot as a peer lists it, for tests: `created` is its
    /// place in the peer's creation order (`None`: an older peer's listing).
    pub fn example(
        name: &str,
        uuid: &str,
        received: Option<&str>,
        created: Option<u64>,
        lineage: &[&str],
    ) -> ListedSnapshot {
        ListedSnapshot {
            name: name.into(),
            uuid: uuid.into(),
            received_uuid: received.map(String::from),
            read_only: true,
            created: created.map(|n| (n, 256 + n)),
            lineage: lineage.iter().map(|s| s.to_string()).collect(),
            parent_uuid: None,
        }
    }
}

impl ListedSnapshot {
    /// Reads a `list` reply: one JSON object a line. Any unreadable line
    /// refuses the whole listing (the peer is not trusted to be sane); a
    /// line whose name is not a snapshot name ([`names::check_snapshot`]:
    /// one path component, safe characters) is dropped here, before
    /// anything joins it to a path or echoes it back to the peer.
    pub fn parse_listing(stdout: &[u8]) -> Result<Vec<ListedSnapshot>, serde_json::Error> {
        let lines: Vec<ListedSnapshot> = String::from_utf8_lossy(stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        Ok(lines
            .into_iter()
            .filter(|line| match names::check_snapshot(&line.name) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a peer's listing line");
                    false
                }
            })
            .collect())
    }

    /// What a pull may fetch: a complete (read-only) snapshot, not a sent
    /// marker. "The peer's newest" is the last of these in its creation
    /// order, on either end ([`super::pull::plan`], `list-newest`).
    pub fn pullable(&self) -> bool {
        is_pullable(&self.name, self.read_only)
    }

    /// True when the peer's snapshot and the local subvolume `local` are
    /// the same snapshot: one was received from the other, or both from a
    /// third. The one identity rule of parent choice, "already there" and
    /// the pull.
    pub fn same_as(&self, local: &crate::btrfs::SubvolumeIdentity) -> bool {
        self.received_uuid.as_deref() == Some(local.uuid.as_str())
            || local.received_uuid.as_deref() == Some(self.uuid.as_str())
            || (local.received_uuid.is_some() && local.received_uuid == self.received_uuid)
    }
}

/// The pullable snapshots of `volume` in a peer's listing, oldest first in
/// the peer's creation order: the one reading of "the peer's snapshots" for
/// the pull, the send, the follow and the takeover check. `None` when the
/// listing has no creation order (an older peer): then nothing can be said
/// about which is newest.
pub fn by_peer_creation<'a>(
    listing: &'a [ListedSnapshot],
    volume: &str,
) -> Option<Vec<&'a ListedSnapshot>> {
    let mut theirs: Vec<&ListedSnapshot> = listing
        .iter()
        .filter(|r| r.pullable() && names::volume_of(&r.name) == volume)
        .collect();
    if theirs.iter().any(|r| r.created.is_none()) {
        return None;
    }
    theirs.sort_by_key(|r| r.created);
    Some(theirs)
}

/// [`ListedSnapshot::pullable`], for a snapshot not listed yet.
pub fn is_pullable(name: &str, read_only: bool) -> bool {
    read_only && !names::is_marker(name)
}

/// Characters a legitimate request can contain.
fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " _.:@/,=+-".contains(c)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn test_flag(test: bool) -> &'static str {
    if test {
        " --test"
    } else {
        ""
    }
}

/// `--test` alone or nothing.
fn only_test(rest: &[&str]) -> Option<bool> {
    match rest {
        [] => Some(false),
        ["--test"] => Some(true),
        _ => None,
    }
}

impl PeerRequest {
    /// The command line the sender runs on the peer.
    pub fn to_command(&self) -> String {
        match self {
            PeerRequest::Receive {
                test,
                zstd,
                parent_uuid,
                epoch,
            } => {
                let mut command = format!("buttervolume receive{}", test_flag(*test));
                if *zstd {
                    command.push_str(" --zstd");
                }
                if let Some(uuid) = parent_uuid {
                    command.push_str(&format!(" --parent-uuid {uuid}"));
                }
                if let Some(epoch) = epoch {
                    command.push_str(&format!(" --epoch {epoch}"));
                }
                command
            }
            PeerRequest::Alive { from } => format!("buttervolume alive {from}"),
            PeerRequest::List { volume, test } => {
                format!("buttervolume list {volume}{}", test_flag(*test))
            }
            PeerRequest::ListNewest { test } => {
                format!("buttervolume list-newest{}", test_flag(*test))
            }
            PeerRequest::Delete { snapshot, test } => {
                format!("buttervolume delete {snapshot}{}", test_flag(*test))
            }
            PeerRequest::Send {
                snapshot,
                parent,
                test,
            } => {
                let mut command = format!("buttervolume send {snapshot}");
                if let Some(parent) = parent {
                    command.push_str(&format!(" --parent {parent}"));
                }
                command + test_flag(*test)
            }
            PeerRequest::BtrfsReceive { dir } => format!("btrfs receive {dir}"),
            PeerRequest::BtrfsDelete { dir, snapshot } => {
                format!(
                    "btrfs subvolume delete {}/{snapshot}",
                    dir.trim_end_matches('/')
                )
            }
            PeerRequest::Rsync { flags, dir, volume } => format!(
                "rsync --server --sender {} . {}/{volume}/",
                flags.join(" "),
                dir.trim_end_matches('/')
            ),
        }
    }

    /// Reads a request (`SSH_ORIGINAL_COMMAND`); `Err` says why it is
    /// refused.
    pub fn parse(original: &str) -> Result<PeerRequest, ProtocolError> {
        if original.len() > MAX_REQUEST {
            return Err(ProtocolError::TooLong);
        }
        if let Some(c) = original.chars().find(|c| !allowed_char(*c)) {
            return Err(ProtocolError::ForbiddenCharacter(c));
        }
        let words: Vec<&str> = original.split_whitespace().collect();
        if words.iter().any(|w| w.split('/').any(|part| part == "..")) {
            return Err(ProtocolError::DotDot);
        }
        match words.as_slice() {
            ["buttervolume", "receive", rest @ ..] => {
                let (mut test, mut zstd, mut parent_uuid, mut epoch) = (false, false, None, None);
                let mut it = rest.iter();
                while let Some(word) = it.next() {
                    match *word {
                        "--test" => test = true,
                        "--zstd" => zstd = true,
                        "--epoch" => match it.next().and_then(|e| e.parse().ok()) {
                            Some(e) => epoch = Some(e),
                            None => return Err(ProtocolError::ReceiveOption("--epoch".into())),
                        },
                        "--parent-uuid" => match it.next() {
                            Some(u) if is_uuid(u) => parent_uuid = Some(u.to_string()),
                            _ => return Err(ProtocolError::Uuid),
                        },
                        other => return Err(ProtocolError::ReceiveOption(other.into())),
                    }
                }
                Ok(PeerRequest::Receive {
                    test,
                    zstd,
                    parent_uuid,
                    epoch,
                })
            }
            ["buttervolume", "alive", from] => {
                crate::cluster::records::check_node(from).map_err(|_| ProtocolError::NotAllowed)?;
                Ok(PeerRequest::Alive {
                    from: from.to_string(),
                })
            }
            ["buttervolume", "list", volume, rest @ ..] => {
                let test = only_test(rest).ok_or(ProtocolError::NotAllowed)?;
                names::check_volume(volume)?;
                Ok(PeerRequest::List {
                    volume: volume.to_string(),
                    test,
                })
            }
            ["buttervolume", "list-newest", rest @ ..] => Ok(PeerRequest::ListNewest {
                test: only_test(rest).ok_or(ProtocolError::NotAllowed)?,
            }),
            ["buttervolume", "delete", snapshot, rest @ ..] => {
                let test = only_test(rest).ok_or(ProtocolError::NotAllowed)?;
                names::check_snapshot(snapshot)?;
                Ok(PeerRequest::Delete {
                    snapshot: snapshot.to_string(),
                    test,
                })
            }
            ["buttervolume", "send", snapshot, rest @ ..] => {
                let (parent, rest) = match rest {
                    ["--parent", parent, rest @ ..] => (Some(*parent), rest),
                    rest => (None, rest),
                };
                let test = only_test(rest).ok_or(ProtocolError::NotAllowed)?;
                for name in std::iter::once(*snapshot).chain(parent) {
                    names::check_snapshot(name)?;
                    if names::is_marker(name) {
                        return Err(ProtocolError::NotAllowed);
                    }
                }
                if parent.is_some_and(|p| names::volume_of(p) != names::volume_of(snapshot)) {
                    return Err(ProtocolError::NotAllowed);
                }
                Ok(PeerRequest::Send {
                    snapshot: snapshot.to_string(),
                    parent: parent.map(String::from),
                    test,
                })
            }
            ["btrfs", "receive", dir] => Ok(PeerRequest::BtrfsReceive {
                dir: dir.to_string(),
            }),
            ["btrfs", "subvolume", "delete", path] => {
                let (dir, snapshot) = path.rsplit_once('/').ok_or(ProtocolError::DeletePath)?;
                names::check_snapshot(snapshot)?;
                Ok(PeerRequest::BtrfsDelete {
                    dir: dir.to_string(),
                    snapshot: snapshot.to_string(),
                })
            }
            ["rsync", "--server", "--sender", flags @ .., ".", path] => {
                check_rsync_flags(flags)?;
                let (dir, volume) = path
                    .trim_end_matches('/')
                    .rsplit_once('/')
                    .ok_or(ProtocolError::RsyncPath)?;
                names::check_volume(volume)?;
                Ok(PeerRequest::Rsync {
                    flags: flags.iter().map(|f| f.to_string()).collect(),
                    dir: dir.to_string(),
                    volume: volume.to_string(),
                })
            }
            _ => Err(ProtocolError::NotAllowed),
        }
    }
}

/// Option letters an rsync `--sender` server may get: what `rsync -a`,
/// `-v`, `-z`, `-H`, `-A`, `-X`, `-S`, `-c`, `-x`, `-n` and the reference's
/// `sync` (`-r -a -z -h`) send. Links are sent as links (`l`); `L` and `k`
/// (follow symlinks) are not here, so a volume holding a symlink to a host
/// file can only ever transfer the link.
const RSYNC_SHORT: &str = "vlogDtprzHAXScxnd";

/// Long options a `--sender` server may get; none follows a symlink.
const RSYNC_LONG: [&str; 6] = [
    "--numeric-ids",
    "--safe-links",
    "--inplace",
    "--bwlimit",
    "--compress-level",
    "--no-implied-dirs",
];

/// Checks the options between `--sender` and `.` of rsync's server command.
/// The short cluster is `-<letters>` with an optional `e<capabilities>`
/// tail (protocol capability letters such as `.iLsfxCIvu`, where `L` is not
/// an option).
fn check_rsync_flags(flags: &[&str]) -> Result<(), ProtocolError> {
    let refused = |flag: &str| Err(ProtocolError::RsyncOption(flag.into()));
    for flag in flags {
        if let Some(long) = flag.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            if !RSYNC_LONG.contains(&format!("--{name}").as_str()) {
                return refused(flag);
            }
        } else if let Some(cluster) = flag.strip_prefix('-') {
            let (options, capabilities) = cluster.split_once('e').unwrap_or((cluster, ""));
            if let Some(bad) = options.chars().find(|c| !RSYNC_SHORT.contains(*c)) {
                return refused(&format!("-{bad}"));
            }
            if !capabilities
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
            {
                return refused(flag);
            }
        } else {
            return refused(flag);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
