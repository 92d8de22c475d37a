//! One dispatched job, from the tick that found it due to its line in the
//! history: handed to its pool (local or remote, see [`super::pool`]), run
//! through [`super::jobs::run`], and its outcome recorded however it ends
//! (done, failed, panicked, dropped from a closed queue): a job never stays
//! "running". It also holds [`Inner`], the state the scheduler's handles
//! and every dispatched job share (a job's guard holds it to record its
//! end).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::pool::{Pool, Task};
use super::table::{DueJob, Outcome, Table};
use super::{jobs, Clock, Job, JobActions, JobError, SchedulerOptions};

/// The state every clone of a [`Scheduler`] and every dispatched job share.
pub(super) struct Inner {
    pub(super) opts: SchedulerOptions,
    pub(super) actions: Arc<dyn JobActions>,
    pub(super) clock: Arc<dyn Clock>,
    table: Mutex<Table>,
    pub(super) local: Pool<RunGuard>,
    pub(super) remote: Pool<RunGuard>,
    /// The history changed since it was last written.
    pub(super) dirty: AtomicBool,
    /// Serializes history writes so an older snapshot never lands last.
    pub(super) flush_lock: Mutex<()>,
    /// Wakes the history writer.
    pub(super) persist: Notify,
    /// The schedule changed through the API: tick now.
    pub(super) wake: Notify,
    pub(super) stopping: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    /// Notified when `in_flight` drops to zero.
    pub(super) idle: Notify,
}

impl Inner {
    /// The shared state, with both pools started.
    pub(super) fn new(
        opts: SchedulerOptions,
        actions: Arc<dyn JobActions>,
        clock: Arc<dyn Clock>,
        table: Table,
    ) -> Inner {
        let workers = opts.workers.max(1);
        Inner {
            actions,
            clock,
            table: Mutex::new(table),
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
        }
    }

    pub(super) fn lock_table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A dispatched job, from its queue to its worker. Dropping it records the
/// outcome however the job ends (done, failed, dropped from a closed queue,
/// unwinding).
pub(super) struct RunGuard {
    inner: Arc<Inner>,
    job: Arc<Job>,
    previous_run: Option<DateTime<Utc>>,
    outcome: Outcome,
}

impl Task for RunGuard {
    fn run(&mut self) {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return; // dropped: not started
        }
        let job = &self.job;
        tracing::info!(
            volume = job.name(),
            action = job.action_text(),
            "scheduled job started"
        );
        let started = Instant::now();
        let actions = self.inner.actions.as_ref();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            jobs::run(actions, job.name(), &job.action)
        }))
        .unwrap_or_else(|_| Err(JobError::Internal("the job panicked")));
        self.outcome = Outcome::Done {
            result,
            elapsed: started.elapsed(),
        };
    }

    fn refuse(&mut self) {
        self.outcome = Outcome::Done {
            result: Err(JobError::Internal(
                "no scheduler worker thread could be started",
            )),
            elapsed: Duration::ZERO,
        };
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut self.outcome, Outcome::NotStarted);
        self.inner.finish(&self.job, self.previous_run, outcome);
    }
}

impl Inner {
    /// Hands due jobs (already marked running) to their pools, in order:
    /// one queue lock and one wake-up per pool, however many jobs.
    pub(super) fn dispatch(self: &Arc<Self>, due_jobs: Vec<DueJob>) {
        if due_jobs.is_empty() {
            return;
        }
        self.in_flight.fetch_add(due_jobs.len(), Ordering::SeqCst);
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for (job, previous_run) in due_jobs {
            let queue = if job.action.is_remote() {
                &mut remote
            } else {
                &mut local
            };
            queue.push(RunGuard {
                inner: self.clone(),
                job,
                previous_run,
                outcome: Outcome::NotStarted,
            });
        }
        self.local.push_all(local);
        self.remote.push_all(remote);
    }

    /// Records how a dispatched job ended.
    fn finish(&self, job: &Job, previous_run: Option<DateTime<Utc>>, outcome: Outcome) {
        if let Outcome::Done { result, elapsed } = &outcome {
            crate::metrics::record_job(&job.action, result.is_ok(), *elapsed);
        }
        self.lock_table().record(&job.key, previous_run, &outcome);
        log(job, &outcome);
        self.mark_dirty();
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

fn log(job: &Job, outcome: &Outcome) {
    match outcome {
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
}
