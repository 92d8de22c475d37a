//! The [`Scheduler`] handle: its shared state, the tick, and the operations
//! of the API (`VolumeDriver.Schedule`, `.List`, `.Pause`, `.Resume`).
//!
//! Time: every decision takes `now` from a [`Clock`], and
//! [`Scheduler::tick_at`] can be called directly, so tests cover hours of
//! schedule without sleeping.
//!
//! Tick: cheap by construction, and it never waits for a job. It brings the
//! table up to date with schedule.csv, takes the due jobs from it (both in
//! [`super::table`]) and hands them to the worker pools
//! ([`super::dispatch`]). The daemon calls it from its loop
//! ([`super::daemon_loop`]). After a restart, the history says when each
//! job last ran: overdue jobs run once, the others wait for their time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::csv::ScheduleFile;
use super::dispatch::Inner;
use super::edit::{self, Change};
use super::history::HistoryError;
use super::listing::{self, Listing};
use super::table::{self, Table, TickReport};
use super::{Action, Clock, JobActions, JobKey, ScheduleError, SchedulerOptions, TimerCommand};
use crate::names;

/// The scheduler; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Scheduler {
    pub(super) inner: Arc<Inner>,
}

impl Scheduler {
    /// A scheduler over `opts.schedule`, with its history loaded (an
    /// unreadable history is logged and ignored).
    pub fn new(
        opts: SchedulerOptions,
        actions: Arc<dyn JobActions>,
        clock: Arc<dyn Clock>,
    ) -> Scheduler {
        let table = Table::load(&opts, clock.now());
        Scheduler {
            inner: Arc::new(Inner::new(opts, actions, clock, table)),
        }
    }

    pub fn options(&self) -> &SchedulerOptions {
        &self.inner.opts
    }

    /// One tick at the clock's time.
    pub fn tick(&self) -> TickReport {
        self.tick_at(self.inner.clock.now())
    }

    /// One tick at `now`: dispatches every due job, skips (and logs) due
    /// jobs still in flight. Never waits for a job.
    pub fn tick_at(&self, now: DateTime<Utc>) -> TickReport {
        let inner = &self.inner;
        let mut report = TickReport::default();
        if inner.stopping.load(Ordering::SeqCst) {
            return report;
        }
        let due_jobs = {
            let mut table = inner.lock_table();
            table.refresh(&inner.opts, now);
            if table.paused {
                report.paused = true;
                return report;
            }
            table.take_due(now, &inner.opts.self_host.look(), &mut report)
        };
        report.dispatched = due_jobs.len();
        if report.dispatched + report.skipped > 0 {
            inner.mark_dirty();
        }
        inner.dispatch(due_jobs);
        report
    }

    /// Waits until no job is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many jobs are dispatched and not finished.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// `VolumeDriver.Schedule`: add/update (and activate), delete, pause or
    /// resume one job. Validates everything first: on any error the file is
    /// unchanged. Blocking (rewrites schedule.csv atomically).
    pub fn schedule(&self, name: &str, action: &str, timer: &str) -> Result<Change, ScheduleError> {
        self.edit(name, action, timer, false)
    }

    /// [`Scheduler::schedule`] of a new job, only if the volume has no line
    /// for that action yet (what a volume option asks); `Unchanged` when it
    /// has one, whatever its timer or state.
    pub fn schedule_if_absent(
        &self,
        name: &str,
        action: &str,
        timer: &str,
    ) -> Result<Change, ScheduleError> {
        self.edit(name, action, timer, true)
    }

    /// True while the schedule is globally paused.
    pub fn is_paused(&self) -> bool {
        self.inner.opts.disabled.exists()
    }

    fn edit(
        &self,
        name: &str,
        action: &str,
        timer: &str,
        only_if_absent: bool,
    ) -> Result<Change, ScheduleError> {
        names::check_volume(name)?;
        let command = TimerCommand::parse(timer)?;
        // Only what is written is judged: deleting, pausing or resuming
        // names a line by its exact text, and a line whose action is now
        // refused (an older version or a hand edit wrote it) must stay
        // deletable.
        if let TimerCommand::Set(_) = command {
            Action::parse(action)?;
        }
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut table = inner.lock_table();
        if inner.opts.disabled.exists() {
            return Err(ScheduleError::GloballyPaused);
        }
        // Start from the file as it is now, hand edits included.
        table.refresh(&inner.opts, now);
        let key: JobKey = (name.to_string(), action.to_string());
        if only_if_absent && table.file.has_key(&key) {
            return Ok(Change::Unchanged);
        }
        let mut lines = table.file.lines.clone();
        let change = edit::apply(&mut lines, &key, timer, command)?;
        if change == Change::Unchanged {
            return Ok(Change::Unchanged);
        }
        table.write_file(&inner.opts, ScheduleFile { lines }, now)?;
        if change == Change::Removed {
            // A job deleted and scheduled again starts afresh, as in the
            // reference; an in-flight one keeps its entry until it ends.
            if table.runs.get(&key).is_some_and(|r| !r.running) {
                table.runs.remove(&key);
            }
            inner.mark_dirty();
        }
        drop(table);
        tracing::info!(volume = name, action, timer, change = ?change, "schedule changed");
        inner.wake.notify_one();
        Ok(change)
    }

    /// `VolumeDriver.Schedule.List`: every valid job with its history, and
    /// the lines that are skipped. Blocking.
    pub fn list(&self) -> Result<Listing, ScheduleError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut table = inner.lock_table();
        if inner.opts.disabled.exists() {
            return Err(ScheduleError::GloballyPaused);
        }
        table.refresh(&inner.opts, now);
        Ok(listing::build(&table, &inner.opts.self_host.look(), now))
    }

    /// The host of `volume`'s first active `replicate:` line that does not
    /// name this node ([`super::self_host`]), if any (what follow needs at
    /// each Mount and Unmount). `None` while the schedule is paused.
    pub fn replicate_peer(&self, volume: &str) -> Option<String> {
        self.replicate_peers(volume).into_iter().next()
    }

    /// The hosts of `volume`'s active `replicate:` lines that do not name
    /// this node, in the schedule's order (cluster mode: the first is the
    /// pair peer, the others may hold a newer replica at a takeover): one
    /// look at the table, no listing of every job. Empty while the
    /// schedule is paused.
    pub fn replicate_peers(&self, volume: &str) -> Vec<String> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut table = inner.lock_table();
        if inner.opts.disabled.exists() {
            return Vec::new();
        }
        table.refresh(&inner.opts, now);
        let me = inner.opts.self_host.look();
        let hosts = table.file.jobs().filter_map(|job| match &job.action {
            Action::Replicate { host }
                if job.active && job.name() == volume && me.runs_here(job) =>
            {
                Some(host.clone())
            }
            _ => None,
        });
        hosts.collect()
    }

    /// `VolumeDriver.Schedule.Pause`: schedule.csv becomes
    /// schedule.csv.disabled. Nothing to do without a schedule (as the
    /// reference). Refuses to overwrite an existing .disabled file, which
    /// the reference silently did.
    pub fn pause_all(&self) -> Result<(), ScheduleError> {
        let inner = &self.inner;
        let mut table = inner.lock_table();
        let (csv, disabled) = (&inner.opts.schedule, &inner.opts.disabled);
        if !csv.exists() {
            return Ok(());
        }
        table::rename_no_replace(&inner.opts, csv, disabled)?;
        table.paused = true;
        tracing::info!("schedule globally paused");
        Ok(())
    }

    /// `VolumeDriver.Schedule.Resume`: the reverse rename.
    pub fn resume_all(&self) -> Result<(), ScheduleError> {
        let inner = &self.inner;
        let mut table = inner.lock_table();
        let (csv, disabled) = (&inner.opts.schedule, &inner.opts.disabled);
        if !disabled.exists() {
            return Ok(());
        }
        table::rename_no_replace(&inner.opts, disabled, csv)?;
        table.paused = false;
        drop(table);
        tracing::info!("schedule globally resumed");
        inner.wake.notify_one();
        Ok(())
    }

    /// Writes the history now if it changed. Blocking.
    pub fn flush(&self) -> Result<(), HistoryError> {
        self.inner.flush()
    }
}
