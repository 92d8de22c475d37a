//! SSH to the peer node: how we reach it, and the two ways bytes travel.
//!
//! The peer's sshd runs `buttervolume ssh-command` as a forced command, so
//! each "command" we send is a request that the peer validates (see
//! `forced_command`). Keys and known_hosts come from the plugin's ssh
//! directory (`/root/.ssh`, which the managed plugin binds to
//! `/var/lib/buttervolume/ssh`). An unknown or changed host key is an error,
//! never accepted silently.
//!
//! - [`session`]: libssh2 (the `ssh2` crate), in this process. Listings,
//!   deletes, pulls and incremental sends go through it: no process to
//!   start, and a session is kept per peer and reused ([`pool`]), so a
//!   scheduler round that talks to one peer many times connects once.
//! - [`openssh`]: OpenSSH's own `ssh` client, run with an argument vector
//!   (never a shell), for the bulk stream of a full send. libssh2 encrypts
//!   with portable code (chacha20-poly1305, or AES one 16-byte block per
//!   call); OpenSSH's AES-GCM uses the CPU's AES instructions on whole
//!   packets. BENCHMARKS.md ("SSH transport") has the probe that decided it.
//!   Same keys, same known_hosts, same forced command, host key verified.

mod openssh;
mod pool;
mod session;

use std::path::PathBuf;
use std::time::Duration;

pub use openssh::{openssh_installed, ssh_argv, ssh_options, stream_with_openssh, Input};
pub use pool::{Lease, Sessions};
pub use session::{Output, Peer};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid host {0:?}: expected a hostname or IP address, optionally user@host")]
    Host(String),
    #[error("cannot connect to {host}:{port}: {message}")]
    Connect {
        host: String,
        port: u16,
        message: String,
    },
    #[error("host key of [{host}]:{port} is not in {known_hosts}: pair the nodes first (scripts/pair-nodes.sh)")]
    UnknownHostKey {
        host: String,
        port: u16,
        known_hosts: PathBuf,
    },
    #[error("HOST KEY MISMATCH for [{host}]:{port}: refusing to connect (check {known_hosts})")]
    HostKeyMismatch {
        host: String,
        port: u16,
        known_hosts: PathBuf,
    },
    #[error("no usable key in {0} was accepted by the peer")]
    Auth(PathBuf),
    #[error("ssh to {host}: {message}")]
    Ssh { host: String, message: String },
    #[error("ssh to {host}: the transfer stalled for {seconds} s (SSH_TIMEOUT): cut")]
    Stalled { host: String, seconds: u64 },
    #[error("ssh to {host}: the peer's reply is more than {} MiB: cut", MAX_REPLY >> 20)]
    ReplyTooLarge { host: String },
    #[error("ssh to {host}: the peer's command did not exit within {seconds} s (SSH_TIMEOUT) of the end of the stream: cut")]
    NoExit { host: String, seconds: u64 },
}

/// The most a peer's command may print on stdout, in both transports (a
/// listing of every snapshot of every volume is well under 1 MiB per 1,000
/// volumes): more is [`TransportError::ReplyTooLarge`], and not read
/// further.
const MAX_REPLY: u64 = 64 << 20;

/// The most of a peer's stderr kept, in both transports (it goes into
/// error messages); the rest is read and dropped.
const MAX_STDERR: u64 = 64 << 10;

/// The private keys tried, in this order, in the plugin's ssh directory
/// (also by `sync`'s rsync and the bulk `ssh`).
pub const KEY_FILES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// How long connecting may take, in both transports.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach peers, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshSettings {
    pub port: u16,
    /// The plugin's ssh directory: keys and known_hosts.
    pub dir: PathBuf,
    /// How long a transfer may make no progress before it is cut
    /// (`SSH_TIMEOUT`): a cut link shows up as a stalled write or read.
    pub stall: Duration,
}

impl SshSettings {
    pub fn of(config: &crate::config::Config) -> SshSettings {
        SshSettings {
            port: config.ssh_port,
            dir: config.ssh_dir.clone(),
            stall: Duration::from_secs(config.ssh_timeout_secs),
        }
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The private keys present, in [`KEY_FILES`] order.
    fn keys(&self) -> impl Iterator<Item = PathBuf> + '_ {
        KEY_FILES
            .iter()
            .map(|k| self.dir.join(k))
            .filter(|k| k.exists())
    }
}

/// Checks a host argument ([`crate::names::check_host`], the one rule).
pub fn check_host(host: &str) -> Result<(), TransportError> {
    crate::names::check_host(host).map_err(|_| TransportError::Host(host.into()))
}

/// `user@host` → (user, host); the user is root when not given.
fn split_user(host: &str) -> (&str, &str) {
    match host.split_once('@') {
        Some((u, h)) => (u, h),
        None => ("root", host),
    }
}
