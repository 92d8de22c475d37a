//! The scheduler proper: the in-memory job table, `tick`, the worker pools,
//! the API operations and the loop the daemon runs.
//!
//! Time: every decision takes `now` from a [`Clock`] (the system clock in
//! the daemon, a [`ManualClock`] in tests), and [`Scheduler::tick_at`] can be
//! called directly, so tests cover hours of schedule without sleeping.
//!
//! Tick: cheap by construction. schedule.csv is re-parsed only when its
//! identity (device, inode, size, mtime, ctime) changed, so hand edits are
//! picked up at the next tick while an unchanged file costs one open+fstat.
//! Then each active job's due time is computed from its history; due jobs
//! are marked running and handed to the pools; the tick never waits for a
//! job. The earliest due time is kept, so a tick where nothing changed and
//! nothing is due returns without looking at the jobs. The loop sleeps
//! until that time (capped at TIMER, so edits are noticed), which puts
//! dispatch within milliseconds of due time and costs nothing between
//! ticks.
//!
//! Overlap (buttervolume issue #22, an outage produced a burst of
//! snapshots): a job whose previous run is still going (or still waiting for
//! a worker) when it is due again is skipped and logged, never queued; the
//! skipped occurrence counts as consumed, so the next one is a full period
//! later. After a restart, history (see [`super::history`]) says when each
//! job last ran: overdue jobs run once, the others wait for their time.
//!
//! Concurrency: two pools of `workers` threads each, fed by FIFO queues,
//! one for local jobs (snapshot, purge) and one for remote jobs (replicate,
//! synchronize), so no number of slow or hung transfers can delay a
//! snapshot. Dispatching is one queue lock and one wake-up per pool per
//! tick (the tick stays cheap with thousands of due jobs), and jobs start
//! in schedule.csv order. Dedicated
//! threads rather than tokio's blocking pool: the jobs block for minutes,
//! and idle workers cost nothing. Jobs of one volume are not serialized:
//! btrfs allows a snapshot or purge during a send, and the snapshot/purge
//! functions take the volume's own locks.
//!
//! Persistence: a job's dispatch and completion mark the history dirty; a
//! background task writes it at most every [`PERSIST_COALESCE`], and once
//! more when the scheduler stops.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{watch, Notify};

use super::csv::{self, Line, ScheduleFile};
use super::history::{self, HistoryError, RunRecord};
use super::{jobs, Action, Job, JobActions, JobKey, ScheduleError, SchedulerOptions, TimerCommand};
use crate::names;

/// How long completions are batched before the history is written.
pub const PERSIST_COALESCE: Duration = Duration::from_millis(250);

/// How long stopping waits for running jobs before marking them interrupted.
pub const STOP_GRACE: Duration = Duration::from_secs(25);

/// Wake a little after the due time, so the tick sees the job as due.
const WAKE_SLACK: Duration = Duration::from_millis(2);

/// Never spin: the shortest sleep between two ticks.
const MIN_SLEEP: Duration = Duration::from_millis(20);

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set by hand.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }

    /// Moves the clock forward, returns the new time.
    pub fn advance(&self, by: TimeDelta) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
        *now
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub dispatched: usize,
    pub skipped: usize,
    /// Schedule globally paused: nothing was looked at.
    pub paused: bool,
    /// The earliest due time of the active jobs after this tick.
    pub next_due: Option<DateTime<Utc>>,
}

/// What an API call changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
    Removed,
    Paused,
    Resumed,
    Unchanged,
}

/// One job as `Schedule.List` shows it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub name: String,
    pub action: String,
    pub timer: String,
    pub active: bool,
    /// `None` when paused.
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_result: Option<String>,
    pub last_ok: Option<bool>,
    pub last_duration_ms: Option<u64>,
    pub running: bool,
    pub skips: u64,
}

/// A line of schedule.csv the scheduler skips.
#[derive(Debug, Clone)]
pub struct InvalidView {
    pub line: usize,
    pub text: String,
    pub error: String,
}

#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub jobs: Vec<JobView>,
    pub invalid: Vec<InvalidView>,
}

/// The identity of the schedule file's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A job's history plus whether it is in flight (dispatched, waiting for a
/// worker or running).
#[derive(Debug, Clone)]
struct JobRun {
    record: RunRecord,
    running: bool,
}

#[derive(Default)]
struct Table {
    file: ScheduleFile,
    /// `None`: no file (or not read yet).
    fingerprint: Option<Fingerprint>,
    paused: bool,
    runs: HashMap<JobKey, JobRun>,
    /// The earliest due time of the active jobs as of the last full
    /// evaluation (`Some(None)`: no active job), `None` when unknown. Lets
    /// a tick with nothing new and nothing due skip the evaluation; every
    /// change of the jobs or of a due time resets it.
    earliest: Option<Option<DateTime<Utc>>>,
}

impl Table {
    /// Gives every job of the file a history entry (first seen `now`).
    fn ensure_runs(&mut self, now: DateTime<Utc>) {
        for job in self.file.jobs() {
            ensure_run(&mut self.runs, &job.key, now);
        }
    }
}

/// The entry of `key`, created (first seen `now`) if missing. Looks up
/// before inserting so the common case allocates nothing.
fn ensure_run<'a>(
    runs: &'a mut HashMap<JobKey, JobRun>,
    key: &JobKey,
    now: DateTime<Utc>,
) -> Option<&'a mut JobRun> {
    if !runs.contains_key(key) {
        runs.insert(
            key.clone(),
            JobRun {
                record: RunRecord::default(),
                running: false,
            },
        );
    }
    let run = runs.get_mut(key)?;
    run.record.seen.get_or_insert(now);
    Some(run)
}

struct Inner {
    opts: SchedulerOptions,
    actions: Arc<dyn JobActions>,
    clock: Arc<dyn Clock>,
    table: Mutex<Table>,
    local: Pool,
    remote: Pool,
    dirty: AtomicBool,
    /// Serializes history writes so an older snapshot never lands last.
    flush_lock: Mutex<()>,
    persist: Notify,
    /// The schedule changed through the API: tick now.
    wake: Notify,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// The scheduler; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

enum Outcome {
    /// Never started (the scheduler stopped first).
    NotStarted,
    Done {
        result: Result<String, String>,
        elapsed: Duration,
    },
}

/// A dispatched job, from its queue to its worker. Dropping it records the
/// outcome however the job ends (done, failed, dropped from a closed queue,
/// unwinding): a job never stays "running".
struct RunGuard {
    inner: Arc<Inner>,
    job: Arc<Job>,
    previous_run: Option<DateTime<Utc>>,
    outcome: Outcome,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut self.outcome, Outcome::NotStarted);
        self.inner.finish(&self.job, self.previous_run, outcome);
    }
}

impl Scheduler {
    /// A scheduler over `opts.schedule`, with its history loaded (an
    /// unreadable history is logged and ignored).
    pub fn new(
        opts: SchedulerOptions,
        actions: Arc<dyn JobActions>,
        clock: Arc<dyn Clock>,
    ) -> Scheduler {
        let runs = match history::load(&opts.history) {
            Ok(records) => records
                .into_iter()
                .map(|(k, record)| {
                    (
                        k,
                        JobRun {
                            record,
                            running: false,
                        },
                    )
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the scheduler history: overdue jobs will run at the first tick");
                HashMap::new()
            }
        };
        let workers = opts.workers.max(1);
        Scheduler {
            inner: Arc::new(Inner {
                actions,
                clock,
                table: Mutex::new(Table {
                    runs,
                    ..Table::default()
                }),
                local: Pool::start("local", workers),
                remote: Pool::start("remote", workers),
                dirty: AtomicBool::new(false),
                flush_lock: Mutex::new(()),
                persist: Notify::new(),
                wake: Notify::new(),
                stopping: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                opts,
            }),
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
        let mut due_jobs: Vec<(Arc<Job>, Option<DateTime<Utc>>)> = Vec::new();
        {
            let mut guard = inner.lock_table();
            let table = &mut *guard;
            inner.refresh(table, now);
            if table.paused {
                report.paused = true;
                return report;
            }
            if let Some(earliest) = table.earliest {
                if earliest.is_none_or(|due| due > now) {
                    report.next_due = earliest;
                    return report;
                }
            }
            for job in table.file.jobs() {
                if !job.active {
                    continue;
                }
                // One lookup in the common case; refresh() created the
                // entries, this only covers a history lost meanwhile.
                let run = match table.runs.get_mut(&job.key) {
                    Some(run) => run,
                    None => match ensure_run(&mut table.runs, &job.key, now) {
                        Some(run) => run,
                        None => continue,
                    },
                };
                let seen = run.record.seen.unwrap_or(now);
                let Some(due) = job.timer.next_due(run.record.base(), seen) else {
                    continue;
                };
                let next = if due <= now {
                    if run.running {
                        run.record.last_skipped = Some(now);
                        run.record.skips += 1;
                        report.skipped += 1;
                        tracing::warn!(
                            volume = job.name(),
                            action = job.action_text(),
                            due = %due,
                            "scheduled job skipped: its previous run is still going (not queued)"
                        );
                    } else {
                        run.running = true;
                        let previous = run.record.last_run.replace(now);
                        due_jobs.push((job.clone(), previous));
                    }
                    job.timer.next_due(Some(now), seen)
                } else {
                    Some(due)
                };
                report.next_due = match (report.next_due, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            table.earliest = Some(report.next_due);
        }
        report.dispatched = due_jobs.len();
        if report.dispatched + report.skipped > 0 {
            inner.mark_dirty();
        }
        self.dispatch(due_jobs);
        report
    }

    /// Hands due jobs (already marked running) to their pools, in order:
    /// one queue lock and one wake-up per pool, however many jobs.
    fn dispatch(&self, due_jobs: Vec<(Arc<Job>, Option<DateTime<Utc>>)>) {
        let inner = &self.inner;
        if due_jobs.is_empty() {
            return;
        }
        inner.in_flight.fetch_add(due_jobs.len(), Ordering::SeqCst);
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for (job, previous_run) in due_jobs {
            let queue = if job.action.is_remote() {
                &mut remote
            } else {
                &mut local
            };
            queue.push(RunGuard {
                inner: inner.clone(),
                job,
                previous_run,
                outcome: Outcome::NotStarted,
            });
        }
        inner.local.push_all(local);
        inner.remote.push_all(remote);
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
        names::check_volume(name)?;
        Action::parse(action)?;
        let command = TimerCommand::parse(timer)?;
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut guard = inner.lock_table();
        let table = &mut *guard;
        if inner.opts.disabled.exists() {
            return Err(ScheduleError::GloballyPaused);
        }
        // Start from the file as it is now, hand edits included.
        inner.refresh(table, now);
        let key: JobKey = (name.to_string(), action.to_string());
        let mut lines = table.file.lines.clone();
        let position = lines
            .iter()
            .position(|l| matches!(l, Line::Job(j) if j.key == key));
        let invalid_same_key =
            |l: &Line| matches!(l, Line::Invalid(i) if i.key.as_ref() == Some(&key));
        let change = match command {
            TimerCommand::Set(_) => {
                let job = Arc::new(Job::parse(name, action, timer, true)?);
                match position {
                    Some(i) => match &lines[i] {
                        Line::Job(old) if old.active && old.timer_text == job.timer_text => {
                            Change::Unchanged
                        }
                        _ => {
                            lines[i] = Line::Job(job);
                            Change::Updated
                        }
                    },
                    None => match lines.iter().position(invalid_same_key) {
                        // An explicit schedule of a job whose line is broken
                        // replaces that line.
                        Some(i) => {
                            lines[i] = Line::Job(job);
                            Change::Updated
                        }
                        None => {
                            lines.push(Line::Job(job));
                            Change::Added
                        }
                    },
                }
            }
            TimerCommand::Delete => {
                let before = lines.len();
                lines.retain(|l| {
                    !(matches!(l, Line::Job(j) if j.key == key) || invalid_same_key(l))
                });
                if lines.len() == before {
                    Change::Unchanged
                } else {
                    Change::Removed
                }
            }
            TimerCommand::Pause | TimerCommand::Resume => {
                let active = matches!(command, TimerCommand::Resume);
                match position {
                    Some(i) => match &lines[i] {
                        Line::Job(old) if old.active != active => {
                            let mut job = Job::clone(old);
                            job.active = active;
                            lines[i] = Line::Job(Arc::new(job));
                            if active {
                                Change::Resumed
                            } else {
                                Change::Paused
                            }
                        }
                        _ => Change::Unchanged,
                    },
                    // The reference silently does nothing either.
                    None => Change::Unchanged,
                }
            }
        };
        if change == Change::Unchanged {
            return Ok(Change::Unchanged);
        }
        inner.write_file(table, ScheduleFile { lines }, now)?;
        if change == Change::Removed {
            // A job deleted and scheduled again starts afresh, as in the
            // reference; an in-flight one keeps its entry until it ends.
            if table.runs.get(&key).is_some_and(|r| !r.running) {
                table.runs.remove(&key);
            }
            inner.mark_dirty();
        }
        drop(guard);
        tracing::info!(volume = name, action, timer, change = ?change, "schedule changed");
        inner.wake.notify_one();
        Ok(change)
    }

    /// `VolumeDriver.Schedule.List`: every valid job with its history, and
    /// the lines that are skipped. Blocking.
    pub fn list(&self) -> Result<Listing, ScheduleError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut guard = inner.lock_table();
        let table = &mut *guard;
        if inner.opts.disabled.exists() {
            return Err(ScheduleError::GloballyPaused);
        }
        inner.refresh(table, now);
        let jobs = table
            .file
            .jobs()
            .map(|job| {
                let run = table.runs.get(&job.key);
                let record = run.map(|r| r.record.clone()).unwrap_or_default();
                let next_run = job
                    .active
                    .then(|| {
                        job.timer
                            .next_due(record.base(), record.seen.unwrap_or(now))
                    })
                    .flatten();
                JobView {
                    name: job.name().to_string(),
                    action: job.action_text().to_string(),
                    timer: job.timer_text.clone(),
                    active: job.active,
                    next_run,
                    last_run: record.last_run,
                    last_result: record.last_result,
                    last_ok: record.last_ok,
                    last_duration_ms: record.last_duration_ms,
                    running: run.is_some_and(|r| r.running),
                    skips: record.skips,
                }
            })
            .collect();
        let invalid = table
            .file
            .invalid()
            .map(|i| InvalidView {
                line: i.number,
                text: String::from_utf8_lossy(&i.raw).into_owned(),
                error: i.error.to_string(),
            })
            .collect();
        Ok(Listing { jobs, invalid })
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
        rename_no_replace(&inner.opts, csv, disabled)?;
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
        rename_no_replace(&inner.opts, disabled, csv)?;
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
            let tick = self.inner.opts.tick;
            // Measured from after the tick, which may have taken a while.
            let now = self.inner.clock.now();
            let wait = match report.next_due {
                Some(due) => (due - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .saturating_add(WAKE_SLACK)
                    .min(tick),
                None => tick,
            }
            .max(MIN_SLEEP);
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
                let mut table = inner.lock_table();
                for (key, run) in table.runs.iter_mut().filter(|(_, r)| r.running) {
                    tracing::warn!(volume = %key.0, action = %key.1, "scheduled job interrupted by shutdown");
                    run.record.last_result =
                        Some("error: interrupted, the daemon stopped while it ran".into());
                    run.record.last_ok = Some(false);
                }
                drop(table);
                inner.dirty.store(true, Ordering::SeqCst);
            }
        }
        self.flush_in_background().await;
        tracing::info!("scheduler stopped");
    }
}

impl Inner {
    fn lock_table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.persist.notify_one();
    }

    /// Brings the table up to date with the files: global pause, and the
    /// CSV re-parsed if (and only if) it changed.
    fn refresh(&self, table: &mut Table, now: DateTime<Utc>) {
        let paused = self.opts.disabled.exists();
        if paused != table.paused {
            table.paused = paused;
            if paused {
                tracing::info!("Schedule is globally paused");
            }
        }
        if paused {
            return;
        }
        let mut file = match File::open(&self.opts.schedule) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if table.fingerprint.take().is_some() {
                    tracing::info!(path = %self.opts.schedule.display(), "no schedule file: no job to run");
                }
                table.file = ScheduleFile::default();
                table.earliest = None;
                return;
            }
            Err(e) => {
                tracing::warn!(path = %self.opts.schedule.display(), error = %e, "cannot read the schedule, keeping the last one read");
                return;
            }
        };
        let fingerprint = match file.metadata() {
            Ok(meta) => Fingerprint::of(&meta),
            Err(e) => {
                tracing::warn!(path = %self.opts.schedule.display(), error = %e, "cannot read the schedule, keeping the last one read");
                return;
            }
        };
        if table.fingerprint == Some(fingerprint) {
            return;
        }
        let mut bytes = Vec::with_capacity(fingerprint.size as usize);
        if let Err(e) = file.read_to_end(&mut bytes) {
            tracing::warn!(path = %self.opts.schedule.display(), error = %e, "cannot read the schedule, keeping the last one read");
            return;
        }
        table.file = csv::parse(&bytes);
        table.fingerprint = Some(fingerprint);
        table.earliest = None;
        table.ensure_runs(now);
        self.report_invalid(&table.file);
        tracing::info!(
            path = %self.opts.schedule.display(),
            jobs = table.file.jobs().count(),
            "schedule loaded"
        );
    }

    /// Logs the lines that are skipped, once per version of the file.
    fn report_invalid(&self, file: &ScheduleFile) {
        for bad in file.invalid() {
            tracing::warn!(
                path = %self.opts.schedule.display(),
                line = bad.number,
                text = %String::from_utf8_lossy(&bad.raw),
                error = %bad.error,
                "schedule line skipped (kept in the file as is)"
            );
        }
    }

    /// Replaces schedule.csv atomically and makes `file` the current table.
    fn write_file(
        &self,
        table: &mut Table,
        file: ScheduleFile,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let path = &self.opts.schedule;
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source| ScheduleError::Io { context, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create the directory of"))?;
        }
        crate::fsutil::write_atomic(path, &csv::render(&file.lines)).map_err(io("cannot write"))?;
        table.fingerprint = std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m));
        table.file = file;
        table.earliest = None;
        table.ensure_runs(now);
        Ok(())
    }

    fn flush(&self) -> Result<(), HistoryError> {
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

    /// Records how a dispatched job ended.
    fn finish(&self, job: &Job, previous_run: Option<DateTime<Utc>>, outcome: Outcome) {
        {
            let mut table = self.lock_table();
            if let Some(run) = table.runs.get_mut(&job.key) {
                run.running = false;
                match &outcome {
                    // It did not run: its occurrence is still owed.
                    Outcome::NotStarted => {
                        run.record.last_run = previous_run;
                        table.earliest = None;
                    }
                    Outcome::Done { result, elapsed } => {
                        run.record.last_result = Some(match result {
                            Ok(summary) => format!("ok: {summary}"),
                            Err(e) => format!("error: {e}"),
                        });
                        run.record.last_ok = Some(result.is_ok());
                        run.record.last_duration_ms =
                            Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
                    }
                }
            }
        }
        match &outcome {
            Outcome::NotStarted => tracing::info!(
                volume = job.name(),
                action = job.action_text(),
                "scheduled job not started: the scheduler is stopping"
            ),
            Outcome::Done {
                result: Ok(summary),
                elapsed,
            } => tracing::info!(
                volume = job.name(),
                action = job.action_text(),
                ms = elapsed.as_millis() as u64,
                result = %summary,
                "scheduled job done"
            ),
            Outcome::Done {
                result: Err(e),
                elapsed,
            } => tracing::warn!(
                volume = job.name(),
                action = job.action_text(),
                ms = elapsed.as_millis() as u64,
                error = %e,
                "scheduled job failed"
            ),
        }
        self.mark_dirty();
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// A fixed set of worker threads fed by a FIFO queue of dispatched jobs.
struct Pool {
    queue: Arc<Queue>,
    workers: usize,
}

/// The jobs waiting for a worker of one pool.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<RunGuard>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pool {
    /// Starts `size` threads. They hold no reference to the scheduler, so
    /// they exit once it is dropped (or the pool closed) and the queue is
    /// empty.
    fn start(name: &str, size: usize) -> Pool {
        let queue = Arc::new(Queue::default());
        let mut workers = 0;
        for n in 0..size {
            let queue = queue.clone();
            match std::thread::Builder::new()
                .name(format!("bv-sched-{name}-{n}"))
                .spawn(move || work(&queue))
            {
                Ok(_) => workers += 1,
                Err(e) => {
                    tracing::error!(pool = name, error = %e, "cannot start a scheduler worker thread")
                }
            }
        }
        Pool { queue, workers }
    }

    /// Queues jobs; those the pool cannot run record why when dropped.
    fn push_all(&self, mut guards: Vec<RunGuard>) {
        if guards.is_empty() {
            return;
        }
        if self.workers == 0 {
            for guard in &mut guards {
                guard.outcome = Outcome::Done {
                    result: Err(
                        "internal error: no scheduler worker thread could be started".into(),
                    ),
                    elapsed: Duration::ZERO,
                };
            }
            return;
        }
        let count = guards.len();
        let refused = {
            let mut state = self.queue.lock();
            if state.closed {
                guards // dropped below, outside the lock: "not started"
            } else {
                state.jobs.extend(guards);
                Vec::new()
            }
        };
        drop(refused);
        if count >= self.workers {
            self.queue.ready.notify_all();
        } else {
            for _ in 0..count {
                self.queue.ready.notify_one();
            }
        }
    }

    /// Stops taking jobs and drops the queued ones (recorded as not
    /// started). Running jobs go on; idle workers exit.
    fn close(&self) {
        let dropped: Vec<RunGuard> = {
            let mut state = self.queue.lock();
            state.closed = true;
            state.jobs.drain(..).collect()
        };
        self.queue.ready.notify_all();
        drop(dropped);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close();
    }
}

/// A worker thread: runs queued jobs one at a time until the pool closes.
fn work(queue: &Queue) {
    loop {
        let next = {
            let mut state = queue.lock();
            loop {
                if let Some(guard) = state.jobs.pop_front() {
                    break Some(guard);
                }
                if state.closed {
                    break None;
                }
                state = queue
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(mut guard) = next else {
            return;
        };
        if guard.inner.stopping.load(Ordering::SeqCst) {
            continue; // dropped: not started
        }
        let job = guard.job.clone();
        tracing::info!(
            volume = job.name(),
            action = job.action_text(),
            "scheduled job started"
        );
        let started = Instant::now();
        let actions = guard.inner.actions.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            jobs::run(actions.as_ref(), job.name(), &job.action).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| Err("internal error: the job panicked".into()));
        guard.outcome = Outcome::Done {
            result,
            elapsed: started.elapsed(),
        };
    }
}

/// `rename` that never replaces: schedule.csv and its .disabled twin both
/// existing means someone has to decide which one is right.
fn rename_no_replace(opts: &SchedulerOptions, from: &Path, to: &Path) -> Result<(), ScheduleError> {
    let both = || ScheduleError::BothFiles {
        csv: opts.schedule.clone(),
        disabled: opts.disabled.clone(),
    };
    match crate::fsutil::rename_noreplace(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(both()),
        // Filesystems without RENAME_NOREPLACE: check, then rename (the
        // daemon is the only writer, and holds the table lock).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if to.exists() {
                return Err(both());
            }
            std::fs::rename(from, to).map_err(|source| ScheduleError::Io {
                context: format!("cannot rename {} to {}", from.display(), to.display()),
                source,
            })
        }
        Err(source) => Err(ScheduleError::Io {
            context: format!("cannot rename {} to {}", from.display(), to.display()),
            source,
        }),
    }
}
