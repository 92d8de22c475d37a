//! Replication to the passive node: incremental btrfs send/receive over SSH
//! (`Snapshot.Send`) and rsync pulls (`Volume.Sync`).
//!
//! A send, step by step:
//! 1. take the volume's send lock (one send per volume; other volumes'
//!    sends run in parallel; restore and remove of the volume refuse while
//!    it is held);
//! 2. connect with libssh2 ([`transport`]) and ask the peer's forced command
//!    for its snapshots of the volume with their UUIDs;
//! 3. choose the parent by identity: the newest local snapshot older than
//!    the one sent whose UUID (or received UUID) the peer holds as a
//!    received UUID or UUID. No common parent: full send. A Python
//!    buttervolume peer cannot answer the listing; then the newest sent
//!    marker `<vol>@<ts>@<host>` names the parent, as the reference does;
//! 4. stream BTRFS_IOC_SEND output through a pipe into the SSH channel; the
//!    peer lands it atomically ([`receive`]);
//! 5. only after the peer confirmed, record the marker `<snapshot>@<host>`
//!    and drop older markers of that host. On failure nothing changes here
//!    and nothing good is deleted there.

pub mod confine;
pub mod forced_command;
pub mod protocol;
pub mod pull;
pub mod receive;
pub mod stream;
pub mod transport;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::btrfs::{self, BtrfsError};
use crate::names::{self, NameError};
use crate::volumes::VolumeStore;
use protocol::{ListedSnapshot, PeerRequest};
use transport::{Peer, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error("No such snapshot: {0}")]
    NoSuchSnapshot(String),
    #[error("{0} is a sent marker, not a snapshot: send the snapshot itself")]
    Marker(String),
    /// The volume is being sent, restored or removed right now.
    #[error(transparent)]
    Busy(crate::volumes::VolumeError),
    #[error("{host} already has a different snapshot named {name}: refusing to overwrite it")]
    Conflict { host: String, name: String },
    #[error("receiving {volume} from {host} failed: {message}")]
    Receive {
        volume: String,
        host: String,
        message: String,
    },
    #[error("sending {snapshot} to {host} failed: {message}")]
    Send {
        snapshot: String,
        host: String,
        message: String,
    },
    #[error("{0}")]
    Sync(String),
}

/// Size of the pipes a stream goes through (the send ioctl's, receive's)
/// and of the buffers around them: big enough that a fast disk and a fast
/// network rarely wait on each other.
pub const PIPE_SIZE: usize = 1 << 20;

const MIB: f64 = (1u64 << 20) as f64;

/// How to send, beyond what and where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// zstd on the wire (ignored with a reference peer, which cannot
    /// decompress).
    pub compress: bool,
    /// MiB/s on the wire, 0 for no limit.
    pub bwlimit_mib: u64,
}

impl SendOptions {
    pub fn from_config(config: &crate::config::Config) -> SendOptions {
        SendOptions {
            compress: config.send_compression,
            bwlimit_mib: config.send_bwlimit,
        }
    }
}

/// What a completed send did.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// The parent used for an incremental send, `None` for a full send.
    pub parent: Option<String>,
    /// Size of the btrfs stream.
    pub bytes: u64,
    /// Bytes written to the SSH channel (smaller than `bytes` with zstd).
    pub wire_bytes: u64,
    pub seconds: f64,
    /// The peer already had this exact snapshot; nothing was streamed.
    pub already_present: bool,
}

impl SendReport {
    pub fn summary(&self, snapshot: &str, host: &str) -> String {
        if self.already_present {
            return format!("{host} already has {snapshot}");
        }
        let mib = self.bytes as f64 / MIB;
        let rate = if self.seconds > 0.0 {
            mib / self.seconds
        } else {
            0.0
        };
        let wire = if self.wire_bytes != self.bytes && self.wire_bytes > 0 {
            format!(", {:.1} MiB on the wire", self.wire_bytes as f64 / MIB)
        } else {
            String::new()
        };
        match &self.parent {
            Some(p) => format!(
                "sent {snapshot} to {host} incrementally from {p}: {mib:.1} MiB in {:.2} s ({rate:.1} MiB/s{wire})",
                self.seconds
            ),
            None => format!(
                "sent {snapshot} to {host} in full: {mib:.1} MiB in {:.2} s ({rate:.1} MiB/s{wire})",
                self.seconds
            ),
        }
    }
}

/// The sent markers of (volume, host), oldest first in creation order.
fn markers(snapshots_dir: &Path, volume: &str, host: &str) -> Vec<String> {
    crate::snapshots::by_creation(snapshots_dir, volume, true)
        .into_iter()
        .map(|p| p.name)
        .filter(|n| names::is_marker(n) && n.rsplit_once('@').is_some_and(|(_, h)| h == host))
        .collect()
}

/// Sends snapshot `snapshot` to `host` (into its TEST_REMOTE_PATH when
/// `test`). Blocking.
pub fn send(
    store: &VolumeStore,
    snapshot: &str,
    host: &str,
    test: bool,
) -> Result<SendReport, ReplicationError> {
    send_with(
        store,
        snapshot,
        host,
        test,
        SendOptions::from_config(&store.config),
    )
}

/// [`send`] with explicit options.
pub fn send_with(
    store: &VolumeStore,
    snapshot: &str,
    host: &str,
    test: bool,
    options: SendOptions,
) -> Result<SendReport, ReplicationError> {
    names::check_snapshot(snapshot)?;
    if names::is_marker(snapshot) {
        return Err(ReplicationError::Marker(snapshot.into()));
    }
    transport::check_host(host)?;
    let config = &store.config;
    let path = config.snapshots_path.join(snapshot);
    if !btrfs::is_subvolume(&path) {
        return Err(ReplicationError::NoSuchSnapshot(snapshot.into()));
    }
    let volume = names::volume_of(snapshot).to_string();
    let _guard = store
        .activities
        .hold(&volume, crate::volumes::Activity::Send)
        .map_err(ReplicationError::Busy)?;
    let started = Instant::now();
    let fail = |message: String| ReplicationError::Send {
        snapshot: snapshot.into(),
        host: host.into(),
        message,
    };

    let peer = Peer::connect(host, config.ssh_port, &config.ssh_dir)?;
    // A reference peer has the same layout: our own dirs name its dirs.
    let remote_dir = if test {
        &config.test_remote_path
    } else {
        &config.snapshots_path
    }
    .display()
    .to_string();
    let list = PeerRequest::List {
        volume: volume.clone(),
        test,
    };
    let listing = peer.run(&list.to_command())?;
    let ours = listing.status == 0;
    let local_id = btrfs::identity(&path)?;

    let (parent, command) = if ours {
        let remote: Vec<ListedSnapshot> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(same) = remote.iter().find(|r| r.name == snapshot) {
            if same.same_as(&local_id) {
                record_marker(store, snapshot, &volume, host)?;
                return Ok(SendReport {
                    already_present: true,
                    seconds: started.elapsed().as_secs_f64(),
                    ..SendReport::default()
                });
            }
            return Err(ReplicationError::Conflict {
                host: host.into(),
                name: snapshot.into(),
            });
        }
        // The newest snapshot created before the one sent that the peer
        // holds too (creation order and identity, never names).
        let sent_order = local_id.creation_order();
        let parent = crate::snapshots::by_creation(&config.snapshots_path, &volume, false)
            .into_iter()
            .filter(|p| p.order() < sent_order)
            .rev()
            .find(|p| remote.iter().any(|r| r.same_as(&p.identity)))
            .map(|p| {
                let key = receive::parent_key(&p.identity);
                (p.name, key)
            });
        let receive = PeerRequest::Receive {
            test,
            zstd: options.compress,
            parent_uuid: parent.as_ref().map(|(_, key)| key.clone()),
        };
        (parent.map(|(name, _)| name), receive.to_command())
    } else {
        // A Python buttervolume peer: the reference's marker convention and
        // its literal command.
        let parent = markers(&config.snapshots_path, &volume, host)
            .pop()
            .and_then(|m| m.rsplit_once('@').map(|(src, _)| src.to_string()))
            .filter(|src| config.snapshots_path.join(src).exists());
        let receive = PeerRequest::BtrfsReceive {
            dir: remote_dir.clone(),
        };
        (parent, receive.to_command())
    };

    let wire = Wire {
        compress: ours && options.compress,
        limit: (options.bwlimit_mib > 0).then_some(options.bwlimit_mib << 20),
    };
    let result = stream_snapshot(
        &peer,
        &path,
        parent.as_deref().map(|p| config.snapshots_path.join(p)),
        &command,
        wire,
    );
    let (bytes, wire_bytes) = match result {
        Ok(counts) => counts,
        Err(message) if !ours => {
            // The reference's peer leaves a partial subvolume under the
            // final name: remove that (it is the new name, never the peer's
            // last good copy), and retry in full if the parent was the issue.
            let delete = PeerRequest::BtrfsDelete {
                dir: remote_dir.clone(),
                snapshot: snapshot.into(),
            }
            .to_command();
            let _ = peer.run(&delete);
            if parent.is_none() {
                return Err(fail(message));
            }
            tracing::warn!(snapshot, host, error = %message, "incremental send to a reference peer failed; sending in full");
            let full = stream_snapshot(&peer, &path, None, &command, wire);
            match full {
                Ok((bytes, wire_bytes)) => {
                    record_marker(store, snapshot, &volume, host)?;
                    return Ok(SendReport {
                        parent: None,
                        bytes,
                        wire_bytes,
                        seconds: started.elapsed().as_secs_f64(),
                        already_present: false,
                    });
                }
                Err(message) => {
                    let _ = peer.run(&delete);
                    return Err(fail(message));
                }
            }
        }
        Err(message) => return Err(fail(message)),
    };
    record_marker(store, snapshot, &volume, host)?;
    Ok(SendReport {
        parent,
        bytes,
        wire_bytes,
        seconds: started.elapsed().as_secs_f64(),
        already_present: false,
    })
}

/// How the stream travels.
#[derive(Debug, Clone, Copy)]
struct Wire {
    compress: bool,
    /// Bytes per second.
    limit: Option<u64>,
}

/// Streams the send of `path` (from `parent`) into `command` on the peer;
/// returns (stream bytes, wire bytes) or an error message.
fn stream_snapshot(
    peer: &Peer,
    path: &Path,
    parent: Option<PathBuf>,
    command: &str,
    wire: Wire,
) -> Result<(u64, u64), String> {
    btrfs::sync(path).map_err(|e| e.to_string())?;
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // A bigger pipe lets the kernel's send run ahead of the network.
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&write_end),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32),
    );
    let send_path = path.to_path_buf();
    let sender = std::thread::spawn(move || {
        let result = btrfs::send(&send_path, parent.as_deref(), &write_end);
        drop(write_end);
        result
    });
    let started = Instant::now();
    let pipe = File::from(read_end);
    let mut reader: Box<dyn std::io::Read> = if wire.compress {
        Box::new(zstd::stream::read::Encoder::new(pipe, 3).map_err(|e| format!("zstd: {e}"))?)
    } else {
        Box::new(pipe)
    };
    let mut wire_bytes = 0;
    let streamed = peer.stream(command, &mut reader, wire.limit, |bytes| {
        wire_bytes = bytes;
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(
            path = %path.display(),
            bytes,
            mib_per_s = format!("{:.1}", bytes as f64 / secs / 1048576.0),
            "sending"
        );
    });
    // Unblock the kernel send if the transfer stopped early.
    drop(reader);
    let sent = sender
        .join()
        .map_err(|_| "send thread panicked".to_string())?;
    let output = streamed.map_err(|e| e.to_string())?;
    sent.map_err(|e| e.to_string())?;
    if output.status != 0 {
        return Err(format!(
            "the peer refused the stream (exit {}): {}",
            output.status,
            output.stderr.trim()
        ));
    }
    // Our own peer reports what landed; the reference's says nothing.
    let bytes = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("bytes").and_then(|b| b.as_u64()));
    Ok((bytes.unwrap_or(wire_bytes), wire_bytes))
}

/// Records `<snapshot>@<host>` and deletes the older markers of that host.
fn record_marker(
    store: &VolumeStore,
    snapshot: &str,
    volume: &str,
    host: &str,
) -> Result<(), ReplicationError> {
    let dir = &store.config.snapshots_path;
    let marker = format!("{snapshot}@{host}");
    let marker_path = dir.join(&marker);
    if !marker_path.exists() {
        btrfs::snapshot(&dir.join(snapshot), &marker_path, true)?;
    }
    for old in markers(dir, volume, host) {
        if old != marker {
            btrfs::delete_subvolume(&dir.join(&old))?;
        }
    }
    Ok(())
}

/// Pulls each volume's content from each host with rsync over SSH (never
/// deletes local files). Errors of all pairs are collected, like the
/// reference does.
pub fn sync(
    store: &VolumeStore,
    volumes: &[String],
    hosts: &[String],
    test: bool,
) -> Result<(), ReplicationError> {
    let config = &store.config;
    let remote_dir = if test {
        &config.test_remote_path
    } else {
        &config.volumes_path
    };
    let mut errors = Vec::new();
    for volume in volumes {
        let local = store
            .existing(volume)
            .map_err(|e| ReplicationError::Sync(e.to_string()))?;
        for host in hosts {
            transport::check_host(host)?;
            let key = transport::KEY_FILES
                .iter()
                .map(|k| config.ssh_dir.join(k))
                .find(|k| k.exists());
            let mut ssh = format!(
                "ssh -p {} -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4",
                config.ssh_port,
                config.ssh_dir.join("known_hosts").display()
            );
            if let Some(key) = key {
                ssh.push_str(&format!(" -i {}", key.display()));
            }
            let source = format!(
                "{host}:{}/{volume}/",
                remote_dir.display().to_string().trim_end_matches('/')
            );
            // rsync splits the -e value on spaces itself: no shell.
            let output = Command::new("rsync")
                .args(["-r", "-a", "-z", "-h", "-e", &ssh, &source])
                .arg(&local)
                .output();
            match output {
                Ok(o) if o.status.success() => {}
                Ok(o) => errors.push(format!(
                    "Error while rsync {volume} from {host}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => errors.push(format!("Error while rsync {volume} from {host}: {e}")),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ReplicationError::Sync(errors.join("\n")))
    }
}
