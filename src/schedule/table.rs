//! The job table: schedule.csv as last read, every job's history and
//! whether it is in flight, and which jobs are due.
//!
//! It owns the scheduler's view of its files. schedule.csv is re-parsed
//! only when its identity (device, inode, size, mtime, ctime) changed, so
//! hand edits are picked up at the next tick while an unchanged file costs
//! one open+fstat; the API's changes replace it atomically. The history
//! (see [`super::history`]) is loaded once, at start.
//!
//! Due jobs: each active job's due time is computed from its history. The
//! earliest due time is kept, so a tick where nothing changed and nothing
//! is due returns without looking at the jobs. A job still in flight when
//! it is due again is skipped and logged, never queued (buttervolume issue
//! #22: an outage produced a burst of snapshots); the skipped occurrence
//! counts as consumed, so the next one is a full period later.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::csv::{self, ScheduleFile};
use super::history::{self, RunRecord};
use super::self_host::SelfLook;
use super::timer::Rounds;
use super::{Job, JobError, JobKey, ScheduleError, SchedulerOptions};

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

/// How a dispatched job ended.
pub(super) enum Outcome {
    /// Never started (the scheduler stopped first).
    NotStarted,
    Done {
        result: Result<String, JobError>,
        elapsed: Duration,
    },
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
#[derive(Debug, Clone, Default)]
pub(super) struct JobRun {
    pub(super) record: RunRecord,
    pub(super) running: bool,
}

/// A due job on its way to a pool, with the last run it replaced (given
/// back if it never starts).
pub(super) type DueJob = (Arc<Job>, Option<DateTime<Utc>>);

pub(super) struct Table {
    pub(super) file: ScheduleFile,
    /// The scheduler's rounds: when a job that never ran is due.
    pub(super) rounds: Rounds,
    /// `None`: no file (or not read yet).
    fingerprint: Option<Fingerprint>,
    pub(super) paused: bool,
    pub(super) runs: HashMap<JobKey, JobRun>,
    /// The earliest due time of the active jobs as of the last full
    /// evaluation (`Some(None)`: no active job), `None` when unknown. Lets
    /// a tick with nothing new and nothing due skip the evaluation; every
    /// change of the jobs or of a due time resets it.
    earliest: Option<Option<DateTime<Utc>>>,
}

/// What reading schedule.csv found.
enum Reread {
    Missing,
    /// Unreadable (logged) or unchanged: keep the table as it is.
    Keep,
    Changed(Fingerprint, Vec<u8>),
}

impl Table {
    /// A table with the history of `opts` loaded (an unreadable history is
    /// logged and ignored); schedule.csv is read at the first refresh. The
    /// scheduler starts at `start`: its first round is TIMER later.
    pub(super) fn load(opts: &SchedulerOptions, start: DateTime<Utc>) -> Table {
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
        Table {
            file: ScheduleFile::default(),
            rounds: Rounds::new(start, opts.tick),
            fingerprint: None,
            paused: false,
            runs,
            earliest: None,
        }
    }

    /// Brings the table up to date with the files: global pause, and the
    /// CSV re-parsed if (and only if) it changed.
    pub(super) fn refresh(&mut self, opts: &SchedulerOptions, now: DateTime<Utc>) {
        let paused = opts.disabled.exists();
        if paused != self.paused {
            self.paused = paused;
            if paused {
                tracing::info!("Schedule is globally paused");
            }
        }
        if paused {
            return;
        }
        match read_if_changed(&opts.schedule, self.fingerprint) {
            Reread::Keep => {}
            Reread::Missing => {
                if self.fingerprint.take().is_some() {
                    tracing::info!(path = %opts.schedule.display(), "no schedule file: no job to run");
                }
                self.file = ScheduleFile::default();
                self.earliest = None;
            }
            Reread::Changed(fingerprint, bytes) => {
                self.replace(csv::parse(&bytes), Some(fingerprint), now);
                report_invalid(&opts.schedule, &self.file);
                tracing::info!(
                    path = %opts.schedule.display(),
                    jobs = self.file.jobs().count(),
                    "schedule loaded"
                );
            }
        }
    }

    /// Replaces schedule.csv atomically and makes `file` the current table.
    pub(super) fn write_file(
        &mut self,
        opts: &SchedulerOptions,
        file: ScheduleFile,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let path = &opts.schedule;
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source| ScheduleError::Io { context, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create the directory of"))?;
        }
        crate::fsutil::write_atomic(path, &csv::render(&file.lines)).map_err(io("cannot write"))?;
        let fingerprint = std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m));
        self.replace(file, fingerprint, now);
        Ok(())
    }

    /// Makes `file` the current table; every job gets a history entry.
    fn replace(
        &mut self,
        file: ScheduleFile,
        fingerprint: Option<Fingerprint>,
        now: DateTime<Utc>,
    ) {
        self.file = file;
        self.fingerprint = fingerprint;
        self.earliest = None;
        for job in self.file.jobs() {
            ensure_run(&mut self.runs, &job.key, now);
        }
    }

    /// Marks every due job running and returns them in schedule.csv order;
    /// counts skips and the next due time in `report`.
    /// Lines `me` ignores ([`super::self_host`]) are never due.
    pub(super) fn take_due(
        &mut self,
        now: DateTime<Utc>,
        me: &SelfLook,
        report: &mut TickReport,
    ) -> Vec<DueJob> {
        if let Some(earliest) = self.earliest {
            if earliest.is_none_or(|due| due > now) {
                report.next_due = earliest;
                return Vec::new();
            }
        }
        let mut due_jobs = Vec::new();
        for job in self.file.jobs() {
            if !job.active || !me.runs_here(job) {
                continue;
            }
            // One lookup in the common case; refresh() created the
            // entries, this only covers a history lost meanwhile.
            let run = match self.runs.get_mut(&job.key) {
                Some(run) => run,
                None => match ensure_run(&mut self.runs, &job.key, now) {
                    Some(run) => run,
                    None => continue,
                },
            };
            let next = consume_if_due(job, run, &self.rounds, now, report, &mut due_jobs);
            report.next_due = match (report.next_due, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.earliest = Some(report.next_due);
        due_jobs
    }

    /// Records how a dispatched job ended in its history.
    pub(super) fn record(
        &mut self,
        key: &JobKey,
        previous_run: Option<DateTime<Utc>>,
        outcome: &Outcome,
    ) {
        let Some(run) = self.runs.get_mut(key) else {
            return;
        };
        run.running = false;
        match outcome {
            // It did not run: its occurrence is still owed.
            Outcome::NotStarted => {
                run.record.last_run = previous_run;
                self.earliest = None;
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

/// If `job` is due at `now`: dispatches it (into `due_jobs`) or, when still
/// in flight, skips it. Returns its next due time.
fn consume_if_due(
    job: &Arc<Job>,
    run: &mut JobRun,
    rounds: &Rounds,
    now: DateTime<Utc>,
    report: &mut TickReport,
    due_jobs: &mut Vec<DueJob>,
) -> Option<DateTime<Utc>> {
    let seen = run.record.seen.unwrap_or(now);
    let due = job.timer.next_due(run.record.base(), seen, rounds)?;
    if due > now {
        return Some(due);
    }
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
    job.timer.next_due(Some(now), seen, rounds)
}

/// The entry of `key`, created (first seen `now`) if missing. Looks up
/// before inserting so the common case allocates nothing.
fn ensure_run<'a>(
    runs: &'a mut HashMap<JobKey, JobRun>,
    key: &JobKey,
    now: DateTime<Utc>,
) -> Option<&'a mut JobRun> {
    if !runs.contains_key(key) {
        runs.insert(key.clone(), JobRun::default());
    }
    let run = runs.get_mut(key)?;
    run.record.seen.get_or_insert(now);
    Some(run)
}

/// Reads schedule.csv unless its fingerprint is `known`; a file that cannot
/// be read is logged and the last one read kept.
fn read_if_changed(path: &Path, known: Option<Fingerprint>) -> Reread {
    let keep = |e: std::io::Error| {
        tracing::warn!(path = %path.display(), error = %e, "cannot read the schedule, keeping the last one read");
        Reread::Keep
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Reread::Missing,
        Err(e) => return keep(e),
    };
    let fingerprint = match file.metadata() {
        Ok(meta) => Fingerprint::of(&meta),
        Err(e) => return keep(e),
    };
    if known == Some(fingerprint) {
        return Reread::Keep;
    }
    let mut bytes = Vec::with_capacity(fingerprint.size as usize);
    match file.read_to_end(&mut bytes) {
        Ok(_) => Reread::Changed(fingerprint, bytes),
        Err(e) => keep(e),
    }
}

/// Logs the lines that are skipped, once per version of the file.
fn report_invalid(path: &Path, file: &ScheduleFile) {
    for bad in file.invalid() {
        tracing::warn!(
            path = %path.display(),
            line = bad.number,
            text = %String::from_utf8_lossy(&bad.raw),
            error = %bad.error,
            "schedule line skipped (kept in the file as is)"
        );
    }
}

/// `rename` that never replaces: schedule.csv and its .disabled twin both
/// existing means someone has to decide which one is right.
pub(super) fn rename_no_replace(
    opts: &SchedulerOptions,
    from: &Path,
    to: &Path,
) -> Result<(), ScheduleError> {
    let both = || ScheduleError::BothFiles {
        csv: opts.schedule.clone(),
        disabled: opts.disabled.clone(),
    };
    let io = |source| ScheduleError::Io {
        context: format!("cannot rename {} to {}", from.display(), to.display()),
        source,
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
            std::fs::rename(from, to).map_err(io)
        }
        Err(source) => Err(io(source)),
    }
}
