//! `Snapshot.Send`, the steps of the module doc of [`super`]: checks and
//! the volume's send hold, the peer's listing and the parent choice
//! ([`choose_parent`], the one rule), the stream through a pipe into the
//! SSH channel ([`stream_snapshot`]), the reference-peer fallback, and the
//! sent marker recorded only after the peer confirmed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::progress::{Counting, Transfer};
use super::protocol::{by_peer_creation, ListedSnapshot, PeerRequest};
use super::transport::{self, Input, Peer, SshSettings, TransportError};
use super::{receive, ReplicationError, SendOptions, SendReport, PIPE_SIZE};
use crate::btrfs::{self, BtrfsError, SubvolumeIdentity};
use crate::config::SendTransport;
use crate::names;
use crate::snapshots::{self, Placed};
use crate::volumes::{Activity, VolumeStore};

/// zstd level on the wire: fast enough not to slow a 10 GbE link.
const ZSTD_LEVEL: i32 = 3;

/// Why a stream did not land on the peer.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error("pipe: {0}")]
    Pipe(nix::Error),
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("send thread panicked")]
    Panicked,
    #[error("the peer refused the stream (exit {status}): {stderr}")]
    Refused { status: i32, stderr: String },
}

/// The sent markers of (volume, host), oldest first in creation order.
fn markers(store: &VolumeStore, volume: &str, host: &str) -> Vec<String> {
    snapshots::by_creation(store.fs(), &store.config().snapshots_path, volume, true)
        .into_iter()
        .map(|p| p.name)
        .filter(|n| names::is_marker(n) && names::marker_host(n) == Some(host))
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
        SendOptions::from_config(store.config()),
    )
}

/// The parent of an incremental send of the snapshot at `sent_order`: the
/// newest of `local` (oldest first, as [`snapshots::by_creation`] lists
/// them) created before it that the peer holds too, by identity
/// ([`ListedSnapshot::same_as`]), never by name. `None`: a full send.
pub fn choose_parent(
    local: Vec<Placed>,
    sent_order: (u64, u64),
    remote: &[ListedSnapshot],
) -> Option<Placed> {
    local
        .into_iter()
        .filter(|p| p.order() < sent_order)
        .rev()
        .find(|p| remote.iter().any(|r| r.same_as(&p.identity)))
}

/// The split-brain rule of sends: the peer's newest snapshot of `volume`
/// in its creation order, when it was made there (no received UUID) and
/// this node has nothing with its identity, is a state of the volume this
/// node never saw: the app ran there since. Returns its name. A listing
/// without creation order (an older peer) cannot tell, and gives `None`.
pub fn moved_on<'a>(
    volume: &str,
    remote: &'a [ListedSnapshot],
    local: &[Placed],
) -> Option<&'a str> {
    let newest = *by_peer_creation(remote, volume)?.last()?;
    let made_there = newest.received_uuid.is_none();
    let seen_here = local.iter().any(|p| newest.same_as(&p.identity));
    (made_there && !seen_here).then_some(newest.name.as_str())
}

/// What to stream and where to.
struct Plan {
    parent: Option<String>,
    /// The receiving command on the peer.
    command: String,
    /// The peer is this plugin (it answered the listing).
    ours: bool,
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
    let path = store.config().snapshots_path.join(snapshot);
    if !store.fs().is_subvolume(&path) {
        return Err(ReplicationError::NoSuchSnapshot(snapshot.into()));
    }
    let volume = names::volume_of(snapshot).to_string();
    let _held = store
        .hold(&volume, Activity::Send)
        .map_err(ReplicationError::Busy)?;
    let sent = send_held(store, snapshot, &volume, host, test, options);
    let outcome = sent.as_ref().map(|_| ()).map_err(|e| e.to_string());
    store.send_failures().record(&volume, host, outcome);
    sent
}

/// [`send_with`] once the checks passed and the volume is held.
fn send_held(
    store: &VolumeStore,
    snapshot: &str,
    volume: &str,
    host: &str,
    test: bool,
    options: SendOptions,
) -> Result<SendReport, ReplicationError> {
    let path = store.config().snapshots_path.join(snapshot);
    let started = Instant::now();
    let running = store.transfers().begin(snapshot, host);
    let config = store.config();
    let peer = store.sessions().open(host, &SshSettings::of(config))?;
    let local_id = store.fs().identity(&path)?;
    let Some(plan) = plan(store, &peer, snapshot, &local_id, test, options)? else {
        record_marker(store, snapshot, volume, host)?;
        return Ok(SendReport {
            already_present: true,
            seconds: started.elapsed().as_secs_f64(),
            ..SendReport::default()
        });
    };
    running.set_full(plan.parent.is_none());
    let wire = Wire {
        compress: plan.ours && options.compress,
        limit: (options.bwlimit_mib > 0).then_some(options.bwlimit_mib << 20),
        transport: options.transport,
    };
    let (parent, bytes, wire_bytes) = deliver(store, &peer, snapshot, test, plan, wire, &running)
        .map_err(|source| ReplicationError::Send {
        snapshot: snapshot.into(),
        host: host.into(),
        source,
    })?;
    record_marker(store, snapshot, volume, host)?;
    Ok(SendReport {
        parent,
        bytes,
        wire_bytes,
        seconds: started.elapsed().as_secs_f64(),
        already_present: false,
    })
}

/// Asks the peer what it holds and decides the parent; `None` when the
/// peer already has this very snapshot (nothing to stream).
fn plan(
    store: &VolumeStore,
    peer: &Peer,
    snapshot: &str,
    local_id: &SubvolumeIdentity,
    test: bool,
    options: SendOptions,
) -> Result<Option<Plan>, ReplicationError> {
    let volume = names::volume_of(snapshot).to_string();
    let list = PeerRequest::List {
        volume: volume.clone(),
        test,
    };
    let listing = peer.run(&list.to_command())?;
    if listing.status != 0 {
        // A Python buttervolume peer: the reference's marker convention and
        // its literal command.
        let snapshots_path = &store.config().snapshots_path;
        let parent = markers(store, &volume, peer.host())
            .pop()
            .map(|m| names::marker_source(&m).to_string())
            .filter(|src| snapshots_path.join(src).exists());
        let receive = PeerRequest::BtrfsReceive {
            dir: remote_dir(store, test),
        };
        return Ok(Some(Plan {
            parent,
            command: receive.to_command(),
            ours: false,
        }));
    }
    let remote = ListedSnapshot::parse_listing(&listing.stdout).map_err(|source| {
        ReplicationError::Listing {
            host: peer.host().into(),
            source,
        }
    })?;
    if let Some(same) = remote.iter().find(|r| r.name == snapshot) {
        if same.same_as(local_id) {
            return Ok(None);
        }
        return Err(ReplicationError::Conflict {
            host: peer.host().into(),
            name: snapshot.into(),
        });
    }
    let local = snapshots::by_creation(store.fs(), &store.config().snapshots_path, &volume, false);
    if let Some(theirs) = moved_on(&volume, &remote, &local) {
        return Err(ReplicationError::MovedOn {
            host: peer.host().into(),
            volume,
            snapshot: theirs.into(),
        });
    }
    let parent = choose_parent(local, local_id.creation_order(), &remote);
    let epoch = match store.cluster() {
        Some(cluster) => cluster.push_epoch(&volume)?,
        None => None,
    };
    let receive = PeerRequest::Receive {
        test,
        zstd: options.compress,
        parent_uuid: parent.as_ref().map(|p| receive::parent_key(&p.identity)),
        epoch,
    };
    Ok(Some(Plan {
        parent: parent.map(|p| p.name),
        command: receive.to_command(),
        ours: true,
    }))
}

/// Where a reference peer keeps snapshots: our own dirs name its dirs.
fn remote_dir(store: &VolumeStore, test: bool) -> String {
    let config = store.config();
    let dir = if test {
        &config.test_remote_path
    } else {
        &config.snapshots_path
    };
    dir.display().to_string()
}

/// Streams the plan; returns (parent used, stream bytes, wire bytes).
/// A reference peer leaves a partial subvolume under the final name on
/// failure: that is removed (it is the new name, never the peer's last
/// good copy), and a failed incremental is retried in full.
fn deliver(
    store: &VolumeStore,
    peer: &Peer,
    snapshot: &str,
    test: bool,
    plan: Plan,
    wire: Wire,
    progress: &Transfer,
) -> Result<(Option<String>, u64, u64), StreamError> {
    let snapshots_path = &store.config().snapshots_path;
    let path = snapshots_path.join(snapshot);
    let parent_path = plan.parent.as_deref().map(|p| snapshots_path.join(p));
    let error = match stream_snapshot(peer, &path, parent_path, &plan.command, wire, progress) {
        Ok((bytes, wire_bytes)) => return Ok((plan.parent, bytes, wire_bytes)),
        Err(e) if plan.ours => return Err(e),
        Err(e) => e,
    };
    let delete = PeerRequest::BtrfsDelete {
        dir: remote_dir(store, test),
        snapshot: snapshot.into(),
    }
    .to_command();
    let _ = peer.run(&delete);
    if plan.parent.is_none() {
        return Err(error);
    }
    tracing::warn!(snapshot, host = peer.host(), %error, "incremental send to a reference peer failed; sending in full");
    progress.restart();
    progress.set_full(true);
    match stream_snapshot(peer, &path, None, &plan.command, wire, progress) {
        Ok((bytes, wire_bytes)) => Ok((None, bytes, wire_bytes)),
        Err(e) => {
            let _ = peer.run(&delete);
            Err(e)
        }
    }
}

/// How the stream travels.
#[derive(Debug, Clone, Copy)]
struct Wire {
    compress: bool,
    /// Bytes per second.
    limit: Option<u64>,
    transport: SendTransport,
}

impl Wire {
    /// Whether OpenSSH's `ssh` carries a stream: under `auto`, a full send
    /// (the bulk, where libssh2's ciphers cost the most; an incremental
    /// stays on the session already open for the listing).
    fn through_openssh(&self, full: bool) -> bool {
        match self.transport {
            SendTransport::Auto => full && transport::openssh_installed(),
            SendTransport::OpenSsh => true,
            SendTransport::Libssh2 => false,
        }
    }
}

/// Streams the send of `path` (from `parent`) into `command` on the peer,
/// counting into `progress`; returns (stream bytes, wire bytes).
fn stream_snapshot(
    peer: &Peer,
    path: &Path,
    parent: Option<PathBuf>,
    command: &str,
    wire: Wire,
    progress: &Transfer,
) -> Result<(u64, u64), StreamError> {
    btrfs::sync(path)?;
    let (read_end, write_end) = nix::unistd::pipe().map_err(StreamError::Pipe)?;
    // A bigger pipe lets the kernel's send run ahead of the network.
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&write_end),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32),
    );
    let full = parent.is_none();
    let send_path = path.to_path_buf();
    let sender = std::thread::spawn(move || {
        let result = btrfs::send(&send_path, parent.as_deref(), &write_end);
        drop(write_end);
        result
    });
    let started = Instant::now();
    let mut wire_bytes = 0;
    let mut report = |bytes| {
        wire_bytes = bytes;
        progress.set_wire_bytes(bytes);
        if !wire.compress {
            progress.set_stream_bytes(bytes);
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(
            path = %path.display(),
            bytes,
            mib_per_s = format!("{:.1}", bytes as f64 / secs / super::MIB),
            "sending"
        );
    };
    let pipe = File::from(read_end);
    // Compressed, the stream is counted as zstd reads it; otherwise the
    // transport's count is the stream's.
    let mut encoder = match wire.compress {
        true => {
            let counted = Counting {
                inner: &pipe,
                transfer: progress,
            };
            Some(zstd::stream::read::Encoder::new(counted, ZSTD_LEVEL).map_err(StreamError::Zstd)?)
        }
        false => None,
    };
    let streamed = if wire.through_openssh(full) {
        let input = match encoder.as_mut() {
            Some(encoder) => Input::Reader(encoder),
            None => Input::Pipe(&pipe),
        };
        let target = peer.target();
        transport::stream_with_openssh(
            target,
            peer.settings(),
            command,
            input,
            wire.limit,
            &mut report,
        )
    } else {
        let reader: &mut dyn std::io::Read = match encoder.as_mut() {
            Some(encoder) => encoder,
            None => &mut &pipe,
        };
        peer.stream(command, reader, wire.limit, &mut report)
    };
    // Unblock the kernel send if the transfer stopped early.
    drop(encoder);
    drop(pipe);
    let sent = sender.join().map_err(|_| StreamError::Panicked)?;
    let output = streamed?;
    sent?;
    if output.status != 0 {
        return Err(StreamError::Refused {
            status: output.status,
            stderr: output.stderr.trim().to_string(),
        });
    }
    // Our own peer reports what landed; the reference's says nothing.
    let bytes = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("bytes").and_then(|b| b.as_u64()));
    Ok((bytes.unwrap_or(wire_bytes), wire_bytes))
}

/// Records `<snapshot>@<host>` and deletes the older markers of that host.
pub(super) fn record_marker(
    store: &VolumeStore,
    snapshot: &str,
    volume: &str,
    host: &str,
) -> Result<(), ReplicationError> {
    let dir = &store.config().snapshots_path;
    let marker = format!("{snapshot}@{host}");
    let marker_path = dir.join(&marker);
    if !marker_path.exists() {
        store
            .fs()
            .snapshot(&dir.join(snapshot), &marker_path, true)?;
    }
    for old in markers(store, volume, host) {
        if old != marker {
            store.fs().delete(&dir.join(&old))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
