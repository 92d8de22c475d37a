//! Running one job: the [`JobActions`] seam between the scheduler and the
//! code that touches volumes and peers.
//!
//! The scheduler only decides *when*; what a job does goes through this
//! trait, so tests drive the scheduler with a fake that records calls, fails
//! on demand or blocks, and the daemon plugs in [`StoreActions`], which calls
//! the same functions as the HTTP endpoints. Every method blocks for as
//! long as its work takes; which threads call them is said in `pool.rs`.

use std::sync::Arc;

use super::Action;
use crate::volumes::VolumeStore;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("snapshot failed: {0}")]
    Snapshot(String),
    #[error("snapshot {snapshot} taken, but sending it to {host} failed: {message}")]
    Send {
        snapshot: String,
        host: String,
        message: String,
    },
    #[error("purge failed: {0}")]
    Purge(String),
    #[error("snapshot {snapshot} taken, but synchronizing from {hosts} failed: {message}")]
    Sync {
        snapshot: String,
        hosts: String,
        message: String,
    },
}

/// What jobs can do. Blocking; errors are messages for the log and the
/// job's last result.
pub trait JobActions: Send + Sync + 'static {
    /// Snapshots a volume, returns the snapshot's name.
    fn snapshot(&self, volume: &str) -> Result<String, String>;
    /// Sends a snapshot to a host.
    fn send(&self, snapshot: &str, host: &str) -> Result<(), String>;
    /// Purges a volume's snapshots, returns the deleted names.
    fn purge(&self, volume: &str, pattern: &str) -> Result<Vec<String>, String>;
    /// Pulls a volume's content from hosts.
    fn sync(&self, volume: &str, hosts: &[String]) -> Result<(), String>;
}

/// Runs one job to completion; returns a one-line summary.
///
/// `replicate` and `synchronize` snapshot first, as the reference does.
/// Unlike the reference, `synchronize` does not pull into a volume it could
/// not snapshot: the snapshot is the only way back if the pull goes wrong.
pub fn run(actions: &dyn JobActions, volume: &str, action: &Action) -> Result<String, JobError> {
    match action {
        Action::Snapshot => actions
            .snapshot(volume)
            .map(|s| format!("snapshot {s}"))
            .map_err(JobError::Snapshot),
        Action::Replicate { host } => {
            let snapshot = actions.snapshot(volume).map_err(JobError::Snapshot)?;
            actions
                .send(&snapshot, host)
                .map_err(|message| JobError::Send {
                    snapshot: snapshot.clone(),
                    host: host.clone(),
                    message,
                })?;
            Ok(format!("sent {snapshot} to {host}"))
        }
        Action::Purge { pattern } => {
            let purged = actions.purge(volume, pattern).map_err(JobError::Purge)?;
            Ok(format!("purged {} snapshot(s)", purged.len()))
        }
        Action::Synchronize { hosts } => {
            let snapshot = actions.snapshot(volume).map_err(JobError::Snapshot)?;
            actions
                .sync(volume, hosts)
                .map_err(|message| JobError::Sync {
                    snapshot: snapshot.clone(),
                    hosts: hosts.join(","),
                    message,
                })?;
            Ok(format!(
                "snapshot {snapshot}, synchronized from {}",
                hosts.join(",")
            ))
        }
    }
}

/// The daemon's actions: the same functions the HTTP endpoints call.
pub struct StoreActions {
    store: Arc<VolumeStore>,
}

impl StoreActions {
    pub fn new(store: Arc<VolumeStore>) -> StoreActions {
        StoreActions { store }
    }
}

impl JobActions for StoreActions {
    fn snapshot(&self, volume: &str) -> Result<String, String> {
        crate::snapshots::snapshot(&self.store, volume).map_err(|e| e.to_string())
    }

    fn send(&self, snapshot: &str, host: &str) -> Result<(), String> {
        crate::replication::send(&self.store, snapshot, host, false)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn purge(&self, volume: &str, pattern: &str) -> Result<Vec<String>, String> {
        crate::snapshots::purge(&self.store, volume, pattern, false).map_err(|e| e.to_string())
    }

    fn sync(&self, volume: &str, hosts: &[String]) -> Result<(), String> {
        crate::replication::sync(&self.store, &[volume.to_string()], hosts, false)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        fail_send: bool,
    }

    impl JobActions for Recorder {
        fn snapshot(&self, volume: &str) -> Result<String, String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("snapshot {volume}"));
            if volume == "gone" {
                return Err("no such volume".into());
            }
            Ok(format!("{volume}@t"))
        }
        fn send(&self, snapshot: &str, host: &str) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("send {snapshot} {host}"));
            if self.fail_send {
                Err("unreachable".into())
            } else {
                Ok(())
            }
        }
        fn purge(&self, volume: &str, pattern: &str) -> Result<Vec<String>, String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("purge {volume} {pattern}"));
            Ok(vec!["a".into(), "b".into()])
        }
        fn sync(&self, volume: &str, hosts: &[String]) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("sync {volume} {}", hosts.join(",")));
            Ok(())
        }
    }

    #[test]
    fn each_action_calls_what_the_reference_calls() {
        let r = Recorder::default();
        let act = |s: &str| Action::parse(s).unwrap();
        assert_eq!(run(&r, "db", &act("snapshot")).unwrap(), "snapshot db@t");
        assert_eq!(
            run(&r, "db", &act("replicate:h")).unwrap(),
            "sent db@t to h"
        );
        assert_eq!(
            run(&r, "db", &act("purge:1h:1d")).unwrap(),
            "purged 2 snapshot(s)"
        );
        run(&r, "db", &act("synchronize:a,b")).unwrap();
        assert_eq!(
            *r.calls.lock().unwrap(),
            [
                "snapshot db",
                "snapshot db",
                "send db@t h",
                "purge db 1h:1d",
                "snapshot db",
                "sync db a,b"
            ]
        );
    }

    #[test]
    fn failures_say_what_happened() {
        let r = Recorder {
            fail_send: true,
            ..Default::default()
        };
        let err = run(&r, "db", &Action::parse("replicate:h").unwrap()).unwrap_err();
        assert!(err.to_string().contains("db@t taken"), "{err}");
        // No pull into a volume that could not be snapshotted.
        let err = run(&r, "gone", &Action::parse("synchronize:h").unwrap()).unwrap_err();
        assert!(matches!(err, JobError::Snapshot(_)));
        assert!(!r
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("sync")));
    }
}
