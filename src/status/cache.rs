//! The status scan behind metrics scrapes, kept for [`SCAN_TTL`]
//! ([`ScanCache`]): scrapes that come together, or faster than once a
//! second, share one scan of the volumes and snapshots dirs instead of
//! each making its own. The Status endpoint does not use it: it always
//! scans.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::StatusReply;

/// How long one scan serves scrapes: at most one scan a second.
pub const SCAN_TTL: Duration = Duration::from_secs(1);

/// The last scan and when it started. See the module doc.
#[derive(Debug, Default)]
pub struct ScanCache {
    last: Mutex<Option<(Instant, Arc<StatusReply>)>>,
}

impl ScanCache {
    /// The status scanned less than [`SCAN_TTL`] before `now`, else the
    /// one `scan` makes now (kept for the next callers, from `now`).
    /// Callers that come during a scan wait for it and take its result
    /// rather than start their own. A failed scan is not kept.
    pub fn get<E>(
        &self,
        now: Instant,
        scan: impl FnOnce() -> Result<StatusReply, E>,
    ) -> Result<Arc<StatusReply>, E> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, status)) = last.as_ref() {
            // A caller that waited for the scan in progress has a `now`
            // before its start: that scan is fresh for it.
            if now.saturating_duration_since(*at) < SCAN_TTL {
                return Ok(status.clone());
            }
        }
        let status = Arc::new(scan()?);
        *last = Some((now, status.clone()));
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn scan(count: &AtomicUsize) -> Result<StatusReply, String> {
        let n = count.fetch_add(1, Ordering::SeqCst);
        Ok(StatusReply {
            now: chrono::Utc::now(),
            problems: Vec::new(),
            volumes: Vec::new(),
            schedule_paused: n % 2 == 1,
            cluster: None,
        })
    }

    #[test]
    fn one_scan_serves_a_second_of_scrapes() {
        let cache = ScanCache::default();
        let scans = AtomicUsize::new(0);
        let t0 = Instant::now();
        let first = cache.get(t0, || scan(&scans)).unwrap();
        for ms in [0, 1, 500, 999] {
            let again = cache
                .get(t0 + Duration::from_millis(ms), || scan(&scans))
                .unwrap();
            assert!(Arc::ptr_eq(&first, &again), "rescanned after {ms} ms");
        }
        assert_eq!(scans.load(Ordering::SeqCst), 1);
        let later = cache.get(t0 + SCAN_TTL, || scan(&scans)).unwrap();
        assert_eq!(scans.load(Ordering::SeqCst), 2);
        assert!(later.schedule_paused, "the second scan's result");
        // Kept from the second scan on.
        cache
            .get(t0 + SCAN_TTL + Duration::from_millis(999), || scan(&scans))
            .unwrap();
        assert_eq!(scans.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_scan_is_not_kept() {
        let cache = ScanCache::default();
        let scans = AtomicUsize::new(0);
        let t0 = Instant::now();
        let failed: Result<_, String> = cache.get(t0, || Err("unreadable".into()));
        assert_eq!(failed.unwrap_err(), "unreadable");
        cache.get(t0, || scan(&scans)).unwrap();
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn scrapes_at_the_same_time_share_one_scan() {
        let cache = ScanCache::default();
        let scans = AtomicUsize::new(0);
        let t0 = Instant::now();
        let start = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    start.wait();
                    cache.get(t0, || scan(&scans)).unwrap();
                });
            }
        });
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }
}
