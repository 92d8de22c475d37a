//! This node's own cluster state, on disk under `STATE_PATH/cluster/` so a
//! restart, the forced command (another process) and the daemon agree:
//!
//! - `owner/<volume>`: the newest [`OwnerRecord`] of the volume this node
//!   wrote or saw (the epoch it knows; whether it owns the volume);
//! - `fenced/<volume>`: the volume was made read-only by the fencing
//!   watchdog and stays so until etcd confirms this node still owns it;
//! - `diverged/<snapshot>`: a snapshot keeping what a fenced owner wrote
//!   after another node took its volume over; never purged;
//! - `node`: this node's `NODE_NAME`; `daemon.lock`: held by the running
//!   daemon ([`DaemonLock`]);
//! - `promise/<node>`: when this node last answered `node`'s ping (boot
//!   clock, seconds): it does not take `node`'s volumes over before
//!   `OWNER_TTL` after that.
//!
//! Every write is atomic ([`crate::fsutil::write_atomic`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::records::{self, OwnerRecord};
use crate::config::Config;
use crate::fsutil;

/// The cluster state directory of a node.
#[derive(Debug, Clone)]
pub struct Local {
    dir: PathBuf,
}

impl Local {
    pub fn of(config: &Config) -> Local {
        Local {
            dir: config.state_path.join("cluster"),
        }
    }

    fn file(&self, kind: &str, name: &str) -> PathBuf {
        self.dir.join(kind).join(name)
    }

    fn write(&self, kind: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.file(kind, name);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
        fsutil::write_atomic(&path, bytes)
    }

    fn names(&self, kind: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.join(kind))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// The newest owner record of `volume` known here.
    pub fn owner(&self, volume: &str) -> Option<OwnerRecord> {
        let bytes = std::fs::read(self.file("owner", volume)).ok()?;
        records::parse(&bytes)
    }

    /// Remembers `record` unless a record with a higher epoch is known
    /// (the epoch known here only grows).
    pub fn learn(&self, volume: &str, record: &OwnerRecord) -> std::io::Result<()> {
        if self.owner(volume).is_some_and(|r| r.epoch > record.epoch) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        self.write("owner", volume, &bytes)
    }

    /// Every volume with a known owner record.
    pub fn known(&self) -> Vec<(String, OwnerRecord)> {
        self.names("owner")
            .into_iter()
            .filter_map(|v| Some((v.clone(), self.owner(&v)?)))
            .collect()
    }

    /// Records this node's `NODE_NAME` (daemon start in cluster mode): the
    /// forced command, which sshd starts without the daemon's settings,
    /// reads it from here.
    pub fn set_identity(&self, node: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        fsutil::write_atomic(&self.dir.join("node"), node.as_bytes())
    }

    /// This node's name in cluster mode (`None`: it never ran in it).
    pub fn identity(&self) -> Option<String> {
        let name = std::fs::read_to_string(self.dir.join("node")).ok()?;
        super::records::check_node(name.trim()).ok()?;
        Some(name.trim().to_string())
    }

    /// The volumes `node` (this node) owns with a container, with their
    /// peer: the ones fencing guards.
    pub fn owned_mounted(&self, node: &str) -> Vec<(String, String)> {
        self.known()
            .into_iter()
            .filter(|(_, r)| r.node == node && r.mounted)
            .map(|(v, r)| (v, r.peer))
            .collect()
    }

    pub fn is_fenced(&self, volume: &str) -> bool {
        self.file("fenced", volume).exists()
    }

    pub fn set_fenced(&self, volume: &str, fenced: bool) -> std::io::Result<()> {
        if fenced {
            self.write("fenced", volume, b"")
        } else {
            match std::fs::remove_file(self.file("fenced", volume)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    }

    /// Fences `volume` (its subvolume at `path`): the marker first, so a
    /// crash before the ioctl still counts it fenced and the next start
    /// finishes the job; then the subvolume's `ro` property. The one
    /// fencing step of the daemon's watchdog and of the forced command
    /// that finds the daemon dead.
    pub fn fence(
        &self,
        fs: &dyn crate::subvolumes::Subvolumes,
        volume: &str,
        path: &Path,
    ) -> std::io::Result<()> {
        self.set_fenced(volume, true)?;
        fs.set_read_only(path, true).map_err(std::io::Error::other)
    }

    pub fn fenced(&self) -> Vec<String> {
        self.names("fenced")
    }

    /// Marks `snapshot` as a diverged state: listed by `status`, never
    /// purged.
    pub fn add_diverged(&self, snapshot: &str, why: &str) -> std::io::Result<()> {
        self.write("diverged", snapshot, why.as_bytes())
    }

    /// The diverged snapshots with why each was kept.
    pub fn diverged(&self) -> Vec<(String, String)> {
        self.names("diverged")
            .into_iter()
            .map(|s| {
                let why = std::fs::read_to_string(self.file("diverged", &s)).unwrap_or_default();
                (s, why)
            })
            .collect()
    }

    /// Records that `volume`'s fenced state was kept as a diverged
    /// snapshot (once per fencing).
    pub fn mark_diverged_volume(&self, volume: &str) -> std::io::Result<()> {
        self.write("fenced", volume, b"diverged")
    }

    /// True when `volume` is fenced and its state already kept.
    pub fn is_diverged_volume(&self, volume: &str) -> bool {
        std::fs::read(self.file("fenced", volume)).is_ok_and(|b| b == b"diverged")
    }

    /// True for a snapshot marked diverged.
    pub fn is_diverged(&self, snapshot: &str) -> bool {
        self.file("diverged", snapshot).exists()
    }

    /// Records that this node answered `node`'s ping now.
    pub fn promise(&self, node: &str) -> std::io::Result<()> {
        self.write("promise", node, boot_secs().to_string().as_bytes())
    }

    /// How long ago this node last answered `node`'s ping.
    pub fn since_promise(&self, node: &str) -> Option<Duration> {
        let text = std::fs::read_to_string(self.file("promise", node)).ok()?;
        let at: f64 = text.trim().parse().ok()?;
        Some(Duration::from_secs_f64((boot_secs() - at).max(0.0)))
    }
}

/// The daemon's liveness lock: held (flock) by the daemon for its whole
/// life, released by the kernel when it dies, even by kill -9. The forced
/// command tells a dead daemon from a live one by trying it.
pub struct DaemonLock {
    _held: nix::fcntl::Flock<std::fs::File>,
}

impl Local {
    fn lock_file(&self) -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("daemon.lock"))
    }

    /// Takes the lock (waits while a forced command probes it).
    pub fn hold_daemon_lock(&self) -> std::io::Result<DaemonLock> {
        let held = nix::fcntl::Flock::lock(self.lock_file()?, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        Ok(DaemonLock { _held: held })
    }

    /// True while a daemon holds the lock.
    pub fn daemon_alive(&self) -> bool {
        let Ok(file) = self.lock_file() else {
            return false;
        };
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(_probe) => false,
            Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
        }
    }
}

/// Seconds on the boot clock: monotonic, shared by every process of the
/// machine, running through suspend.
pub fn boot_secs() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> (tempfile::TempDir, Local) {
        let dir = tempfile::tempdir().unwrap();
        let local = Local {
            dir: dir.path().join("cluster"),
        };
        (dir, local)
    }

    #[test]
    fn the_known_epoch_only_grows() {
        let (_d, local) = local();
        local.learn("db", &OwnerRecord::for_test("a", 2)).unwrap();
        local.learn("db", &OwnerRecord::for_test("b", 1)).unwrap();
        assert_eq!(local.owner("db").unwrap().node, "a");
        local.learn("db", &OwnerRecord::for_test("b", 3)).unwrap();
        assert_eq!(local.owner("db").unwrap().epoch, 3);
        assert_eq!(local.known().len(), 1);
    }

    #[test]
    fn fences_diverged_states_and_promises_are_remembered() {
        let (_d, local) = local();
        assert!(!local.is_fenced("db"));
        local.set_fenced("db", true).unwrap();
        assert!(local.is_fenced("db"));
        assert_eq!(local.fenced(), vec!["db".to_string()]);
        local.set_fenced("db", false).unwrap();
        local.set_fenced("db", false).unwrap();
        assert!(local.fenced().is_empty());
        local.add_diverged("db@x", "why").unwrap();
        assert!(local.is_diverged("db@x"));
        assert!(local.since_promise("n1").is_none());
        local.promise("n1").unwrap();
        assert!(local.since_promise("n1").unwrap() < Duration::from_secs(5));
    }
}
