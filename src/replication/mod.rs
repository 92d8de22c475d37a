//! Replication to the passive node: incremental btrfs send/receive over SSH
//! (`Snapshot.Send`) and rsync pulls (`Volume.Sync`).
//!
//! A send, step by step:
//! 1. take the volume's send lock (one send per volume; other volumes'
//!    sends run in parallel; restore and remove of the volume refuse while
//!    it is held);
//! 2. take a session to the peer ([`transport::open`]: libssh2, kept per
//!    peer between transfers) and ask the peer's forced command
//!    for its snapshots of the volume with their UUIDs;
//! 3. choose the parent by identity: the newest local snapshot older than
//!    the one sent whose UUID (or received UUID) the peer holds as a
//!    received UUID or UUID. No common parent: full send. A Python
//!    buttervolume peer cannot answer the listing; then the newest sent
//!    marker `<vol>@<ts>@<host>` names the parent, as the reference does;
//! 4. stream BTRFS_IOC_SEND output through a pipe into the SSH channel (a
//!    full send: into OpenSSH's `ssh`, see [`transport`]); the peer lands
//!    it atomically ([`receive`]);
//! 5. only after the peer confirmed, record the marker `<snapshot>@<host>`
//!    and drop older markers of that host. On failure nothing changes here
//!    and nothing good is deleted there.

pub mod command_log;
pub mod confine;
pub mod forced_command;
pub mod newest;
pub mod progress;
pub mod protocol;
pub mod pull;
pub mod receive;
pub mod scope;
mod send;
pub mod stream;
mod sync;
pub mod transport;

pub use send::{choose_parent, moved_on, send, send_with, StreamError};
pub use sync::sync;

use crate::btrfs::BtrfsError;
use crate::names::NameError;
use transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
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
    #[error("{host} sent an unreadable snapshot listing: {source}")]
    Listing {
        host: String,
        source: serde_json::Error,
    },
    #[error("{host} holds {snapshot}, a newer state of {volume} that this node never saw: the volume there has moved on; receive it first (buttervolume receive {host} {volume}) or delete it there")]
    MovedOn {
        host: String,
        volume: String,
        snapshot: String,
    },
    #[error("{host} already has a different snapshot named {name}: refusing to overwrite it")]
    Conflict { host: String, name: String },
    /// The peer holds no snapshot of the volume: nothing to pull.
    #[error("receiving {volume} from {host} failed: it has no snapshot of {volume}")]
    NothingToPull { volume: String, host: String },
    #[error("receiving {volume} from {host} failed: {message}")]
    Receive {
        volume: String,
        host: String,
        message: String,
    },
    #[error("sending {snapshot} to {host} failed: {source}")]
    Send {
        snapshot: String,
        host: String,
        source: StreamError,
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
    /// Which SSH client carries the stream.
    pub transport: crate::config::SendTransport,
}

impl SendOptions {
    pub fn from_config(config: &crate::config::Config) -> SendOptions {
        SendOptions {
            compress: config.send_compression,
            bwlimit_mib: config.send_bwlimit,
            transport: config.send_transport,
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
