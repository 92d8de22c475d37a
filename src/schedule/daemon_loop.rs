//! The loop the daemon runs, and the history writer beside it.
//!
//! Loop: tick, then sleep until the earliest due time (capped at TIMER, so
//! hand edits of schedule.csv are noticed), or until an API change wakes
//! it. That puts dispatch within milliseconds of due time and costs nothing
//! between ticks. On stop: no more dispatching, queued jobs are dropped
//! (still owed), running ones get [`STOP_GRACE`] to finish, and the
//! history is written.
//!
//! Persistence: a job's dispatch and completion mark the history dirty; a
//! background task writes it at most every [`PERSIST_COALESCE`], and once
//! more when the scheduler stops. Writes are serialized, so an older
//! snapshot of the history never lands last.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::dispatch::Inner;
use super::history::{self, HistoryError, RunRecord};
use super::{JobKey, Scheduler, TickReport};

/// How long completions are batched before the history is written.
pub const PERSIST_COALESCE: Duration = Duration::from_millis(250);

/// How long stopping waits for running jobs before marking them interrupted.
pub const STOP_GRACE: Duration = Duration::from_secs(25);

/// Wake a little after the due time, so the tick sees the job as due.
const WAKE_SLACK: Duration = Duration::from_millis(2);

/// Never spin: the shortest sleep between two ticks.
const MIN_SLEEP: Duration = Duration::from_millis(20);

impl Scheduler {
    /// The daemon's loop: tick, sleep until the earliest due time (at most
    /// TIMER), repeat, until `stop` turns true (or its sender goes away).
    /// Then stop dispatching, give running jobs [`STOP_GRACE`], write the
    /// history.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let opts = &self.inner.opts;
        tracing::info!(
            schedule = %opts.schedule.display(),
            history = %opts.history.display(),
            timer_secs = opts.tick.as_secs(),
            workers = opts.workers,
            "scheduler started"
        );
        let persister = tokio::spawn(self.clone().persist_loop(stop.clone()));
        loop {
            if *stop.borrow() {
                break;
            }
            let now = self.inner.clock.now();
            let started = Instant::now();
            let report = self.tick_at(now);
            tracing::debug!(
                dispatched = report.dispatched,
                skipped = report.skipped,
                micros = started.elapsed().as_micros() as u64,
                "tick"
            );
            // Measured from after the tick, which may have taken a while.
            let wait = sleep_after(&report, self.inner.clock.now(), opts.tick);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake.notified() => {}
                _ = stop.changed() => break,
            }
        }
        self.shutdown().await;
        let _ = persister.await;
    }

    async fn persist_loop(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = self.inner.persist.notified() => {}
                _ = stop.changed() => return,
            }
            tokio::time::sleep(PERSIST_COALESCE).await;
            self.flush_in_background().await;
        }
    }

    async fn flush_in_background(&self) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the scheduler history"),
            Err(e) => tracing::warn!(error = %e, "saving the scheduler history did not complete"),
        }
    }

    /// Stops dispatching, lets running jobs finish (bounded), saves history.
    async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        // Jobs waiting for a worker give up (recorded as not started).
        inner.local.close();
        inner.remote.close();
        let running = self.in_flight();
        if running > 0 {
            tracing::info!(running, "waiting for running scheduled jobs");
            if tokio::time::timeout(STOP_GRACE, self.idle()).await.is_err() {
                inner.mark_interrupted();
            }
        }
        self.flush_in_background().await;
        tracing::info!("scheduler stopped");
    }
}

/// How long the loop sleeps after a tick that reported `report`, at `now`.
fn sleep_after(report: &TickReport, now: DateTime<Utc>, tick: Duration) -> Duration {
    match report.next_due {
        Some(due) => (due - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .saturating_add(WAKE_SLACK)
            .min(tick),
        None => tick,
    }
    .max(MIN_SLEEP)
}

impl Inner {
    /// The history changed: the writer saves it soon.
    pub(super) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.persist.notify_one();
    }

    /// Writes the history if it changed. Blocking.
    pub(super) fn flush(&self) -> Result<(), HistoryError> {
        let _serial = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let records: Vec<(JobKey, RunRecord)> = self
            .lock_table()
            .runs
            .iter()
            .map(|(k, r)| (k.clone(), r.record.clone()))
            .collect();
        history::save(&self.opts.history, records.iter().map(|(k, r)| (k, r))).inspect_err(|_| {
            self.dirty.store(true, Ordering::SeqCst);
        })
    }

    /// The jobs still running after the grace period end as interrupted.
    fn mark_interrupted(&self) {
        let mut table = self.lock_table();
        for (key, run) in table.runs.iter_mut().filter(|(_, r)| r.running) {
            tracing::warn!(volume = %key.0, action = %key.1, "scheduled job interrupted by shutdown");
            run.record.last_result =
                Some("error: interrupted, the daemon stopped while it ran".into());
            run.record.last_ok = Some(false);
        }
        drop(table);
        self.dirty.store(true, Ordering::SeqCst);
    }
}
