//! The built-in job scheduler: what keeps every volume snapshotted,
//! replicated to its passive node and purged without anyone running a
//! command.
//!
//! It owns `schedule.csv` (the reference's file, byte-compatible, so a node
//! keeps its schedule when it switches plugins), the run history persisted
//! beside it, and the tick loop that dispatches due jobs. Split by concern:
//!
//! - [`timer`]: when a job is due (`<minutes>` or `cron:<expr>`);
//! - [`action`]: what a job does (`snapshot`, `replicate:<host>`,
//!   `purge:<pattern>`, `synchronize:<h1>[,<h2>...]`) and its validation;
//! - [`csv`]: reading and writing schedule.csv like Python's csv module,
//!   keeping bad lines verbatim instead of dropping them;
//! - [`history`]: last run, last result and duration of every job, so a
//!   restart neither fires every job at once nor waits a full period;
//! - [`jobs`]: the [`JobActions`] seam between the scheduler and the
//!   volume/replication code (faked in tests), and running one job;
//! - `clock`: where "now" comes from ([`SystemClock`], [`ManualClock`]);
//! - `table`: the job table: schedule.csv re-read when it changed, the
//!   history of every job, which jobs are due and which are skipped;
//! - `scheduler`: the [`Scheduler`] handle, `tick` and the API operations;
//! - `edit`: what one `Schedule` request does to schedule.csv's lines;
//! - `listing`: what `Schedule.List` shows ([`Listing`]);
//! - `dispatch`: one due job's way through a pool and back into the
//!   history, however it ends;
//! - `pool`: the worker threads that run jobs, and why those;
//! - `daemon_loop`: the loop the daemon runs ([`Scheduler::run`]), its
//!   stop, and the coalesced history writes.

pub mod action;
mod clock;
pub mod csv;
mod daemon_loop;
mod dispatch;
mod edit;
pub mod history;
pub mod jobs;
mod listing;
mod pool;
mod scheduler;
pub mod self_host;
mod table;
pub mod timer;
pub mod volume_options;

use std::path::PathBuf;

pub use action::{Action, ActionError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use daemon_loop::{PERSIST_COALESCE, STOP_GRACE};
pub use edit::Change;
pub use jobs::{ActionFailure, JobActions, JobError, StoreActions, Taken};
pub use listing::{InvalidView, JobView, Listing};
pub use scheduler::Scheduler;
pub use self_host::SelfHost;
pub use table::TickReport;
pub use timer::{Timer, TimerCommand, TimerError};

use crate::config::Config;
use crate::names::{self, NameError};

/// The identity of a job, as in the reference: one line per (volume, action).
pub type JobKey = (String, String);

/// The message the reference returns while the schedule is globally paused.
pub const GLOBALLY_PAUSED: &str = "Schedule is globally paused";

/// Worker-pool size of a scheduler built without a configuration.
pub const DEFAULT_WORKERS: usize = crate::config::DEFAULT_SCHEDULE_WORKERS;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("Schedule is globally paused")]
    GloballyPaused,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error(transparent)]
    Timer(#[from] TimerError),
    #[error("both {csv} and {disabled} exist: remove or merge one of them by hand first")]
    BothFiles { csv: PathBuf, disabled: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// One valid line of schedule.csv, with its action and timer parsed.
#[derive(Debug, Clone)]
pub struct Job {
    /// (volume name, action text as stored).
    pub key: JobKey,
    /// The timer as stored (minutes or `cron:<expr>`), listed as given.
    pub timer_text: String,
    pub active: bool,
    pub action: Action,
    pub timer: Timer,
}

impl Job {
    /// Validates every field; the texts are kept as given.
    pub fn parse(
        name: &str,
        action: &str,
        timer: &str,
        active: bool,
    ) -> Result<Job, ScheduleError> {
        let parsed = Job::check(name, action, timer)?;
        Ok(Job::assemble(
            name.to_string(),
            action.to_string(),
            timer,
            active,
            parsed,
        ))
    }

    /// Validates a job's fields, returning its parsed action and timer.
    pub fn check(name: &str, action: &str, timer: &str) -> Result<(Action, Timer), ScheduleError> {
        names::check_volume(name)?;
        Ok((Action::parse(action)?, Timer::parse(timer)?))
    }

    /// Builds a job from fields [`Job::check`] accepted, taking ownership of
    /// the texts (a big schedule is read without copying them again).
    pub fn assemble(
        name: String,
        action: String,
        timer: &str,
        active: bool,
        (parsed_action, parsed_timer): (Action, Timer),
    ) -> Job {
        Job {
            key: (name, action),
            timer_text: timer.trim().to_string(),
            active,
            action: parsed_action,
            timer: parsed_timer,
        }
    }

    pub fn name(&self) -> &str {
        &self.key.0
    }

    pub fn action_text(&self) -> &str {
        &self.key.1
    }
}

/// Where the scheduler keeps its files and how hard it may work.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// schedule.csv (SCHEDULE).
    pub schedule: PathBuf,
    /// The global-pause name of schedule.csv (`<SCHEDULE>.disabled`).
    pub disabled: PathBuf,
    /// The persisted run history, see [`history::path_for`].
    pub history: PathBuf,
    /// The longest sleep between two ticks (TIMER): hand edits of the CSV
    /// are noticed within this delay.
    pub tick: std::time::Duration,
    /// Size of each of the two worker pools (local jobs, remote jobs).
    pub workers: usize,
    /// This node's names: `replicate:` lines naming it are ignored here.
    pub self_host: SelfHost,
}

impl SchedulerOptions {
    /// Options for a schedule file, with the reference's defaults otherwise.
    pub fn for_schedule(schedule: PathBuf) -> SchedulerOptions {
        let mut disabled = schedule.clone().into_os_string();
        disabled.push(".disabled");
        SchedulerOptions {
            history: history::path_for(&schedule),
            disabled: disabled.into(),
            schedule,
            tick: std::time::Duration::from_secs(60),
            workers: DEFAULT_WORKERS,
            self_host: SelfHost::nobody(),
        }
    }

    /// The daemon's options: SCHEDULE, TIMER and SCHEDULE_WORKERS from the
    /// configuration.
    pub fn from_config(config: &Config) -> SchedulerOptions {
        SchedulerOptions {
            tick: std::time::Duration::from_secs(config.timer),
            disabled: config.schedule_disabled(),
            workers: config.schedule_workers,
            self_host: SelfHost::node(&config.cluster.node_name),
            ..SchedulerOptions::for_schedule(config.schedule.clone())
        }
    }
}
