//! `buttervolume ssh-command`: what a peer may do on this node over SSH.
//!
//! sshd runs it for every connection of a paired key (authorized_keys line
//! `command="/usr/bin/buttervolume ssh-command",restrict ssh-ed25519 ...`)
//! with the client's request in `SSH_ORIGINAL_COMMAND`. The request must be
//! one of the [`super::protocol`] requests (the one definition of what a
//! peer may ask), naming only this node's snapshots or test dir (and the
//! volumes dir for rsync's read-only server side). Then:
//!
//! - a received stream is confined to the one snapshot it creates
//!   ([`super::receive`], [`super::confine`]);
//! - a delete must name a received snapshot (read-only, with a received
//!   UUID, not named as a marker): never a volume, a local snapshot, a
//!   restore backup or a sent marker;
//! - a key installed with `--peer <name>` lists, pulls, deletes and rsyncs
//!   only what is replicated with that peer or what it sent
//!   ([`super::scope`]);
//! - rsync runs with only the options `rsync -a` and the reference's sync
//!   send (links are sent as links, never followed).
//!
//! Anything else is refused, logged with the peer's address and key
//! fingerprint, and exits with status 1.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::command_log::{Outcome, RefusalKind};
use super::protocol::{is_pullable, ListedSnapshot, PeerRequest, ProtocolError};
use super::receive;
use super::scope::{self, Scope};
use crate::btrfs;
use crate::config::Config;
use crate::names;
use crate::snapshots::Placed;
use crate::subvolumes::{Btrfs, Subvolumes};

mod log;
use log::log_line;

/// Why a peer's request is refused (logged, and printed to the peer).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("{what} {dir} is not allowed")]
    Dir { what: &'static str, dir: String },
    #[error("no such snapshot {0}")]
    NoSuchSnapshot(PathBuf),
    #[error("{0} was not received from a peer")]
    NotReceived(PathBuf),
    #[error("{0} is a sent marker: it protects the parent of the next send")]
    Marker(PathBuf),
    #[error("{what} is not replicated with {peer} here")]
    OutOfScope { what: String, peer: String },
    #[error(transparent)]
    Btrfs(#[from] btrfs::BtrfsError),
}

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Receive {
        dir: PathBuf,
        parent_uuid: Option<String>,
        /// The stream is zstd-compressed (only our own senders do that).
        zstd: bool,
        /// Reply with one JSON line (our own protocol) or quietly (reference).
        json: bool,
        /// The sender's epoch ([`crate::cluster::admit_push`]).
        epoch: Option<u64>,
    },
    /// Cluster mode's ping ([`crate::cluster::ping::serve`]).
    Alive {
        from: String,
    },
    List {
        dir: PathBuf,
        volume: String,
    },
    ListNewest {
        dir: PathBuf,
    },
    Delete {
        path: PathBuf,
    },
    Send {
        path: PathBuf,
        parent: Option<PathBuf>,
    },
    Rsync {
        volume: String,
        args: Vec<String>,
    },
}

impl Request {
    /// The data directory the request reads or writes (where the markers
    /// of rsync's volumes are).
    fn data_dir<'a>(&'a self, config: &'a Config) -> &'a Path {
        match self {
            Request::Alive { .. } => &config.snapshots_path,
            Request::Receive { dir, .. }
            | Request::List { dir, .. }
            | Request::ListNewest { dir } => dir,
            Request::Delete { path } | Request::Send { path, .. } => path.parent().unwrap_or(path),
            Request::Rsync { .. } => &config.snapshots_path,
        }
    }
}

fn same_dir(a: &str, b: &Path) -> bool {
    Path::new(a.trim_end_matches('/')) == Path::new(b.to_string_lossy().trim_end_matches('/'))
}

/// The one of `allowed` that `dir` names (trailing slashes aside).
fn one_of<'a>(dir: &str, allowed: &[&'a PathBuf]) -> Option<&'a PathBuf> {
    allowed.iter().copied().find(|a| same_dir(dir, a))
}

/// Parses `SSH_ORIGINAL_COMMAND` ([`PeerRequest::parse`]) and maps it onto
/// this node's directories; `Err` says why it is refused.
pub fn parse(config: &Config, original: &str) -> Result<Request, Refusal> {
    let request = PeerRequest::parse(original)?;
    let data_dir = |test: bool| {
        if test {
            config.test_remote_path.clone()
        } else {
            config.snapshots_path.clone()
        }
    };
    let receive_dirs = [&config.snapshots_path, &config.test_remote_path];
    Ok(match request {
        PeerRequest::Receive {
            test,
            zstd,
            parent_uuid,
            epoch,
        } => Request::Receive {
            dir: data_dir(test),
            parent_uuid,
            zstd,
            json: true,
            epoch,
        },
        PeerRequest::Alive { from } => Request::Alive { from },
        PeerRequest::List { volume, test } => Request::List {
            dir: data_dir(test),
            volume,
        },
        PeerRequest::ListNewest { test } => Request::ListNewest {
            dir: data_dir(test),
        },
        PeerRequest::Delete { snapshot, test } => Request::Delete {
            path: data_dir(test).join(snapshot),
        },
        PeerRequest::Send {
            snapshot,
            parent,
            test,
        } => Request::Send {
            path: data_dir(test).join(snapshot),
            parent: parent.map(|p| data_dir(test).join(p)),
        },
        PeerRequest::BtrfsReceive { dir } => Request::Receive {
            dir: one_of(&dir, &receive_dirs)
                .ok_or_else(|| Refusal::Dir {
                    what: "receiving into",
                    dir: dir.clone(),
                })?
                .clone(),
            parent_uuid: None,
            zstd: false,
            json: false,
            epoch: None,
        },
        PeerRequest::BtrfsDelete { dir, snapshot } => Request::Delete {
            path: one_of(&dir, &receive_dirs)
                .ok_or_else(|| Refusal::Dir {
                    what: "deleting in",
                    dir: dir.clone(),
                })?
                .join(snapshot),
        },
        PeerRequest::Rsync { dir, volume, .. } => {
            if one_of(&dir, &[&config.volumes_path, &config.test_remote_path]).is_none() {
                return Err(Refusal::Dir {
                    what: "rsync of",
                    dir: format!("{dir}/{volume}"),
                });
            }
            Request::Rsync {
                volume,
                args: original
                    .split_whitespace()
                    .skip(1)
                    .map(String::from)
                    .collect(),
            }
        }
    })
}

/// A peer deletes only what a peer sent: a read-only snapshot with a
/// received UUID. Never a local snapshot, a restore backup or a sent marker
/// (all made here, none received; a marker of a received snapshot is
/// read-only with a received UUID too, so markers are refused by name),
/// never anything else.
pub fn delete(fs: &dyn Subvolumes, path: &Path) -> Result<(), Refusal> {
    if path
        .file_name()
        .is_some_and(|n| names::is_marker(&n.to_string_lossy()))
    {
        return Err(Refusal::Marker(path.into()));
    }
    if !fs.is_subvolume(path) {
        return Err(Refusal::NoSuchSnapshot(path.into()));
    }
    let id = fs.identity(path)?;
    if id.received_uuid.is_none() || !id.read_only {
        return Err(Refusal::NotReceived(path.into()));
    }
    fs.delete(path)?;
    Ok(())
}

/// The `list` reply: volume's snapshots and markers in `dir` that `scope`
/// sees, oldest first in this node's creation order, which each line also
/// carries.
pub fn list(fs: &dyn Subvolumes, scope: &Scope, dir: &Path, volume: &str, out: &mut dyn Write) {
    for placed in crate::snapshots::by_creation(fs, dir, volume, true) {
        if scope.sees(fs, &placed.name) {
            write_listed(fs, dir, placed, out);
        }
    }
}

/// `list-newest`: the newest pullable snapshot ([`ListedSnapshot::pullable`])
/// that `scope` sees of every volume with one in `dir`, in one scan of
/// `dir`.
pub fn list_newest(fs: &dyn Subvolumes, scope: &Scope, dir: &Path, out: &mut dyn Write) {
    for (_, placed) in crate::snapshots::snapshots_of_all(fs, dir) {
        let newest = placed
            .into_iter()
            .rev()
            .find(|p| is_pullable(&p.name, p.identity.read_only) && scope.sees(fs, &p.name));
        if let Some(newest) = newest {
            write_listed(fs, dir, newest, out);
        }
    }
}

/// One [`ListedSnapshot`] line: `placed` with its lineage.
fn write_listed(fs: &dyn Subvolumes, dir: &Path, placed: Placed, out: &mut dyn Write) {
    let path = dir.join(&placed.name);
    let metadata = crate::metadata::VolumeMetadata::decode(
        &path,
        crate::metadata::read(fs, &path).ok().flatten(),
    );
    let line = ListedSnapshot {
        lineage: metadata.lineage,
        created: Some(placed.order()),
        name: placed.name,
        uuid: placed.identity.uuid,
        received_uuid: placed.identity.received_uuid,
        read_only: placed.identity.read_only,
        parent_uuid: placed.identity.parent_uuid,
    };
    let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
}

/// A peer may pull only existing read-only snapshots (and parents).
pub fn sendable(fs: &dyn Subvolumes, path: &Path) -> Result<(), Refusal> {
    let read_only = fs.is_subvolume(path) && fs.identity(path).is_ok_and(|id| id.read_only);
    if read_only {
        Ok(())
    } else {
        Err(Refusal::NoSuchSnapshot(path.into()))
    }
}

/// Refuses a snapshot `path` that `scope` does not see, the same way
/// whether it exists or not: a peer learns nothing of other volumes.
pub fn in_scope(fs: &dyn Subvolumes, scope: &Scope, path: &Path) -> Result<(), Refusal> {
    let Some(name) = path.file_name() else {
        return Err(Refusal::NoSuchSnapshot(path.into()));
    };
    let name = name.to_string_lossy();
    match scope.peer() {
        Some(peer) if !scope.sees(fs, &name) => Err(Refusal::OutOfScope {
            what: name.into_owned(),
            peer: peer.into(),
        }),
        _ => Ok(()),
    }
}

/// Entry point of the `ssh-command` verb; returns the exit status. `peer`
/// is the `--peer` the key was installed with ([`super::scope`]).
pub fn run(config: &Config, peer: Option<&str>) -> i32 {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let request = match parse(config, &original) {
        Ok(r) => r,
        Err(reason) => {
            let outcome = Outcome::Refused {
                kind: RefusalKind::Command,
                why: reason.to_string(),
            };
            log_line(config, outcome, &original);
            eprintln!("buttervolume: refused {original:?}: {reason}");
            return 1;
        }
    };
    log_line(config, Outcome::Accepted, &original);
    let fs = Btrfs;
    let scope = Scope::load(config, peer, request.data_dir(config));
    let outcome = match request {
        Request::Receive {
            dir,
            parent_uuid,
            zstd,
            json,
            epoch,
        } => {
            let to = Receiving {
                config,
                scope: &scope,
                original: &original,
                dir: &dir,
                epoch,
            };
            return to.serve(parent_uuid.as_deref(), zstd, json);
        }
        Request::Alive { from } => return crate::cluster::ping::serve(config, &from),
        Request::List { dir, volume } => {
            list(&fs, &scope, &dir, &volume, &mut std::io::stdout().lock());
            return 0;
        }
        Request::ListNewest { dir } => {
            list_newest(&fs, &scope, &dir, &mut std::io::stdout().lock());
            return 0;
        }
        Request::Delete { path } => in_scope(&fs, &scope, &path)
            .and_then(|()| delete(&fs, &path))
            .map(|()| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                scope::forget_received(config, &name);
            })
            .map_err(refused(RefusalKind::Delete)),
        Request::Send { path, parent } => std::iter::once(&path)
            .chain(parent.as_ref())
            .try_for_each(|p| in_scope(&fs, &scope, p).and_then(|()| sendable(&fs, p)))
            .map_err(refused(RefusalKind::Send))
            .and_then(|()| {
                btrfs::send(&path, parent.as_deref(), &std::io::stdout())
                    .map_err(|e| Outcome::SendFailed { why: e.to_string() })
            }),
        Request::Rsync { volume, args } => {
            if let Some(peer) = scope.peer().filter(|_| !scope.whole_volume(&volume)) {
                let reason = Refusal::OutOfScope {
                    what: volume,
                    peer: peer.into(),
                };
                let outcome = Outcome::Refused {
                    kind: RefusalKind::Rsync,
                    why: reason.to_string(),
                };
                log_line(config, outcome, &original);
                eprintln!("buttervolume: rsync refused: {reason}");
                return 1;
            }
            let err = Command::new("rsync").args(&args).exec();
            eprintln!("buttervolume: cannot run rsync: {err}");
            return 1;
        }
    };
    match outcome {
        Ok(()) => 0,
        Err(outcome) => {
            eprintln!("buttervolume: {outcome}");
            log_line(config, outcome, &original);
            1
        }
    }
}

/// The outcome of a refusal of `kind`.
fn refused(kind: RefusalKind) -> impl Fn(Refusal) -> Outcome {
    move |reason| Outcome::Refused {
        kind,
        why: reason.to_string(),
    }
}

/// A receive request being served.
struct Receiving<'a> {
    config: &'a Config,
    scope: &'a Scope,
    original: &'a str,
    dir: &'a Path,
    epoch: Option<u64>,
}

impl Receiving<'_> {
    /// Receives a stream from stdin into `dir` ([`receive::receive`]) and
    /// records which peer sent it ([`scope::record_received`]).
    fn serve(&self, parent_uuid: Option<&str>, zstd: bool, json: bool) -> i32 {
        let stdin = std::io::stdin().lock();
        let mut input: Box<dyn std::io::Read> = if zstd {
            match zstd::stream::read::Decoder::new(stdin) {
                Ok(d) => Box::new(d),
                Err(e) => {
                    eprintln!("buttervolume: cannot start zstd: {e}");
                    return 1;
                }
            }
        } else {
            Box::new(std::io::BufReader::with_capacity(super::PIPE_SIZE, stdin))
        };
        let admit = |name: &str| {
            crate::cluster::admit_push(self.config, crate::names::volume_of(name), self.epoch)
        };
        let live = receive::Receives::default();
        match receive::receive(self.dir, &mut input, parent_uuid, &admit, &live) {
            Ok(received) => {
                // Before the reply: the sender's next request may read it.
                if let Err(e) = scope::record_received(self.config, self.scope, &received) {
                    eprintln!(
                        "buttervolume: cannot record who sent {}: {e}",
                        received.name
                    );
                }
                // What the daemon's metrics count (crate::metrics::peer_log).
                let landed = Outcome::Received {
                    snapshot: received.name.clone(),
                    bytes: received.bytes,
                };
                log_line(self.config, landed, self.original);
                if json {
                    println!("{}", serde_json::to_string(&received).unwrap_or_default());
                } else {
                    eprintln!("At subvol {}", received.name);
                }
                0
            }
            Err(e) => {
                let why = e.to_string();
                let outcome = match e {
                    receive::ReceiveError::Stream(super::stream::StreamError::Refused(_)) => {
                        Outcome::Refused {
                            kind: RefusalKind::Stream,
                            why,
                        }
                    }
                    _ => Outcome::ReceiveFailed { why },
                };
                log_line(self.config, outcome, self.original);
                eprintln!("buttervolume: receive failed: {e}");
                1
            }
        }
    }
}

#[cfg(test)]
mod tests;
