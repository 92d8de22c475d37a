//! The sends running now, in memory: what `buttervolume send` shows while
//! its request is in flight (`GET /VolumeDriver.Transfers`).
//!
//! Every send ([`super::send_with`]: the `send` verb, `replicate`, jobs,
//! handover, follow) registers itself for its duration ([`Transfers::begin`],
//! removed when the returned [`Running`] drops, whatever the outcome). The
//! stream's bytes are counted as they leave the send ioctl's pipe (before
//! zstd), the wire bytes as the transport reports them (every 0.5 s).
//! Nothing is persisted: a restarted daemon has no transfer running.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};

/// One send in progress.
#[derive(Debug)]
pub struct Transfer {
    pub snapshot: String,
    /// As the caller named it (`user@host` included).
    pub host: String,
    pub started_at: DateTime<Utc>,
    started: Instant,
    /// 0: not known yet (the peer is being asked), 1: full, 2: incremental.
    kind: AtomicU8,
    stream_bytes: AtomicU64,
    wire_bytes: AtomicU64,
}

/// What a transfer looks like at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub snapshot: String,
    pub host: String,
    pub started_at: DateTime<Utc>,
    pub elapsed_seconds: f64,
    /// `None` until the parent is chosen.
    pub full: Option<bool>,
    pub stream_bytes: u64,
    pub wire_bytes: u64,
}

impl Transfer {
    /// The parent was chosen: a full send (`true`) or an incremental one.
    pub fn set_full(&self, full: bool) {
        self.kind.store(if full { 1 } else { 2 }, Ordering::Relaxed);
    }

    pub fn add_stream_bytes(&self, n: u64) {
        self.stream_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_stream_bytes(&self, n: u64) {
        self.stream_bytes.store(n, Ordering::Relaxed);
    }

    pub fn set_wire_bytes(&self, n: u64) {
        self.wire_bytes.store(n, Ordering::Relaxed);
    }

    /// A new attempt starts from zero (a reference peer's full retry).
    pub fn restart(&self) {
        self.stream_bytes.store(0, Ordering::Relaxed);
        self.wire_bytes.store(0, Ordering::Relaxed);
    }

    fn seen(&self) -> Seen {
        Seen {
            snapshot: self.snapshot.clone(),
            host: self.host.clone(),
            started_at: self.started_at,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            full: match self.kind.load(Ordering::Relaxed) {
                1 => Some(true),
                2 => Some(false),
                _ => None,
            },
            stream_bytes: self.stream_bytes.load(Ordering::Relaxed),
            wire_bytes: self.wire_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The registry (see the module doc).
#[derive(Debug, Default)]
pub struct Transfers {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Arc<Transfer>>>,
}

/// A registered transfer; dropping it removes it from the registry.
pub struct Running<'a> {
    registry: &'a Transfers,
    id: u64,
    transfer: Arc<Transfer>,
}

impl std::ops::Deref for Running<'_> {
    type Target = Transfer;
    fn deref(&self) -> &Transfer {
        &self.transfer
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Transfers {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Transfer>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a send of `snapshot` to `host` starting now.
    pub fn begin(&self, snapshot: &str, host: &str) -> Running<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let transfer = Arc::new(Transfer {
            snapshot: snapshot.into(),
            host: host.into(),
            started_at: Utc::now(),
            started: Instant::now(),
            kind: AtomicU8::new(0),
            stream_bytes: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
        });
        self.lock().insert(id, transfer.clone());
        Running {
            registry: self,
            id,
            transfer,
        }
    }

    /// Every transfer running now, oldest first.
    pub fn list(&self) -> Vec<Seen> {
        self.lock().values().map(|t| t.seen()).collect()
    }
}

/// A send that failed: what happened, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub message: String,
    pub at: DateTime<Utc>,
}

use crate::names::peer_of;

type Failures = BTreeMap<(String, String), SendFailure>;

/// The last send of each (volume, peer) that failed, until one succeeds:
/// what `status` shows for sends that are no job (the `send` verb, the
/// deploy handler's), and for jobs' too. One per store
/// ([`crate::volumes::VolumeStore::send_failures`]).
#[derive(Default)]
pub struct SendFailures(Mutex<Failures>);

impl SendFailures {
    fn lock(&self) -> MutexGuard<'_, Failures> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how a send of `volume` to `host` ended.
    pub fn record(&self, volume: &str, host: &str, outcome: Result<(), String>) {
        let key = (volume.to_string(), peer_of(host).to_string());
        let mut failures = self.lock();
        match outcome {
            Ok(()) => failures.remove(&key),
            Err(message) => failures.insert(
                key,
                SendFailure {
                    message,
                    at: Utc::now(),
                },
            ),
        };
    }

    /// The peers whose last send of `volume` failed, by peer.
    pub fn of(&self, volume: &str) -> BTreeMap<String, SendFailure> {
        self.lock()
            .iter()
            .filter(|((v, _), _)| v == volume)
            .map(|((_, peer), failure)| (peer.clone(), failure.clone()))
            .collect()
    }
}

/// A reader that adds what it reads to a transfer's stream bytes.
pub struct Counting<'a, R> {
    pub inner: R,
    pub transfer: &'a Transfer,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.add_stream_bytes(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_kept_per_volume_and_peer_until_a_send_succeeds() {
        let failures = SendFailures::default();
        let record_outcome = |v: &str, h: &str, o| failures.record(v, h, o);
        let send_failures = |v: &str| failures.of(v);
        record_outcome("progress-t1", "root@10.9.0.2", Err("cut".into()));
        record_outcome("progress-t1", "10.9.0.3", Err("full".into()));
        record_outcome("progress-t2", "10.9.0.2", Err("other".into()));
        let seen = send_failures("progress-t1");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen["10.9.0.2"].message, "cut");
        record_outcome("progress-t1", "10.9.0.2", Ok(()));
        let seen = send_failures("progress-t1");
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["10.9.0.3"]);
        assert_eq!(send_failures("progress-t2")["10.9.0.2"].message, "other");
    }

    #[test]
    fn a_transfer_is_listed_while_it_runs_with_what_it_counted() {
        let registry = Transfers::default();
        let a = registry.begin("db@1", "10.0.0.2");
        {
            let b = registry.begin("web@1", "root@10.0.0.3");
            let listed = registry.list();
            assert_eq!(listed.len(), 2);
            assert_eq!(listed[1].host, "root@10.0.0.3");
            drop(b);
        }
        assert_eq!(registry.list().len(), 1);
        assert_eq!(registry.list()[0].full, None);
        a.set_full(true);
        let mut counted = Counting {
            inner: &[7u8; 1000][..],
            transfer: &a,
        };
        std::io::copy(&mut counted, &mut std::io::sink()).unwrap();
        a.set_wire_bytes(400);
        let seen = registry.list().remove(0);
        assert_eq!((seen.snapshot.as_str(), seen.full), ("db@1", Some(true)));
        assert_eq!((seen.stream_bytes, seen.wire_bytes), (1000, 400));
        a.restart();
        a.set_full(false);
        let seen = registry.list().remove(0);
        assert_eq!((seen.stream_bytes, seen.full), (0, Some(false)));
        drop(a);
        assert!(registry.list().is_empty());
    }
}
