//! Connection admission: how many connections the socket holds at once, how
//! long one may sit without sending a request, and who makes room when the
//! cap is reached.
//!
//! Any local process that can reach the socket can open connections and
//! send nothing (or half a request line, or a header whose body never
//! comes). Three defences keep Docker's own calls served:
//!
//! - a read timeout ([`ServerLimits::read_timeout`], setting READ_TIMEOUT):
//!   hyper's header-read timeout, which also bounds an idle keep-alive
//!   connection between two requests, and the same bound on reading a
//!   request body;
//! - a cap on open connections ([`ServerLimits::max_connections`], setting
//!   MAX_CONNECTIONS), lowered to fit the descriptor limit so accepting
//!   never runs the process out of descriptors (which would also break
//!   btrfs calls and subprocesses);
//! - eviction: when a connection arrives at the cap, the connection that
//!   has been idle the longest (no handler running: waiting for a header,
//!   for a body, or between keep-alive requests) is closed to make room.
//!   Connections whose handler is running are never evicted; when every
//!   connection is busy, the new one waits in the listen backlog until one
//!   finishes.
//!
//! At start the daemon raises its soft `RLIMIT_NOFILE` to the hard limit
//! ([`raise_fd_limit`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Descriptors kept free for everything but connections (btrfs ioctls on
/// opened dirs, state files, `btrfs send`/`receive` and ssh pipes, logs).
pub const FD_RESERVE: u64 = 256;
/// The cap never goes below this, whatever the descriptor limit.
pub const MIN_CONNECTIONS: usize = 16;

/// Socket limits, resolved once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a connection may take to send a request header or body,
    /// and how long it may stay idle between keep-alive requests.
    pub read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl ServerLimits {
    /// READ_TIMEOUT and MAX_CONNECTIONS from the configuration, the latter
    /// lowered to fit `nofile` (the soft descriptor limit) minus
    /// [`FD_RESERVE`], and never below [`MIN_CONNECTIONS`].
    pub fn new(config: &crate::config::Config, nofile: u64) -> ServerLimits {
        Self::fitted(config.read_timeout_secs, config.max_connections, nofile)
    }

    fn fitted(read_timeout_secs: u64, wanted: usize, nofile: u64) -> ServerLimits {
        let fits = nofile.saturating_sub(FD_RESERVE);
        let max_connections = (wanted as u64).min(fits).max(MIN_CONNECTIONS as u64) as usize;
        ServerLimits {
            read_timeout: Duration::from_secs(read_timeout_secs),
            max_connections,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit in force afterwards. A failure leaves the limit as it was.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-files limit");
            hard
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
            soft
        }
    }
}

/// Marks a connection's time since it last did something.
const BUSY: u64 = u64::MAX;

/// One open connection, as the admission logic sees it.
pub struct Slot {
    id: u64,
    /// Microseconds since [`Connections::epoch`] when it became idle, or
    /// [`BUSY`] while a handler runs.
    idle_since: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
    epoch: Instant,
}

impl Slot {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A handler runs on this connection until the guard is dropped; it
    /// cannot be evicted meanwhile.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.idle_since.store(BUSY, Ordering::SeqCst);
        BusyGuard(self.clone())
    }

    /// True while a handler runs on this connection.
    pub fn is_busy(&self) -> bool {
        self.idle_since.load(Ordering::SeqCst) == BUSY
    }

    /// Resolves when the connection was chosen to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// See [`Slot::busy`].
pub struct BusyGuard(Arc<Slot>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::SeqCst);
    }
}

/// The open connections.
pub struct Connections {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    evictions: AtomicU64,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            evictions: AtomicU64::new(0),
        }
    }
}

/// Keeps a connection registered until dropped.
pub struct Registration {
    connections: Arc<Connections>,
    pub slot: Arc<Slot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.slot.id);
    }
}

impl Connections {
    /// Registers a new (idle) connection.
    pub fn register(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            idle_since: AtomicU64::new(self.epoch.elapsed().as_micros() as u64),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, slot.clone());
        Registration {
            connections: self.clone(),
            slot,
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Asks the connection idle the longest to close; false when every
    /// connection is busy (or already asked to close).
    pub fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = open
            .values()
            .filter(|s| !s.evicted.load(Ordering::SeqCst))
            .filter(|s| s.idle_since.load(Ordering::SeqCst) != BUSY)
            .min_by_key(|s| (s.idle_since.load(Ordering::SeqCst), s.id));
        let Some(slot) = oldest else {
            return false;
        };
        slot.evicted.store(true, Ordering::SeqCst);
        slot.evict.notify_one();
        let n = self.evictions.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_multiple_of(1000) {
            tracing::warn!(
                evictions = n,
                open = open.len(),
                "connection cap reached: closing the connections idle the longest"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fit_the_descriptor_budget() {
        let l = ServerLimits::fitted(10, 1024, 1_048_576);
        assert_eq!(l.max_connections, 1024);
        assert_eq!(l.read_timeout, Duration::from_secs(10));
        let l = ServerLimits::fitted(3, 5000, 1024);
        assert_eq!(l.max_connections, 1024 - FD_RESERVE as usize);
        assert_eq!(l.read_timeout, Duration::from_secs(3));
        assert_eq!(
            ServerLimits::fitted(10, 1024, 100).max_connections,
            MIN_CONNECTIONS
        );
    }

    #[tokio::test]
    async fn the_longest_idle_connection_is_evicted_never_a_busy_one() {
        let conns = Arc::new(Connections::default());
        let first = conns.register();
        let second = conns.register();
        let third = conns.register();
        let _busy = first.slot.busy();
        assert_eq!(conns.len(), 3);
        assert!(conns.evict_oldest_idle());
        // `second` was idle the longest among the idle ones.
        tokio::time::timeout(Duration::from_secs(5), second.slot.evicted())
            .await
            .expect("second evicted");
        assert!(conns.evict_oldest_idle());
        tokio::time::timeout(Duration::from_secs(5), third.slot.evicted())
            .await
            .expect("third evicted");
        // Only the busy one is left: nothing to evict.
        assert!(!conns.evict_oldest_idle());
        drop((second, third));
        assert_eq!(conns.len(), 1);
    }
}
