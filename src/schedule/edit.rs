//! What one `VolumeDriver.Schedule` request does to the lines of
//! schedule.csv, as the reference does it: add or update (and activate),
//! delete, pause or resume one job, every other line (bad ones included)
//! kept as it is. Pure: [`super::Scheduler::schedule`] validates the
//! request first and writes the result.

use std::sync::Arc;

use super::csv::Line;
use super::{Job, JobKey, ScheduleError, TimerCommand};

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

/// Applies `command` (parsed from `timer`) to the job `key` in `lines`.
pub(super) fn apply(
    lines: &mut Vec<Line>,
    key: &JobKey,
    timer: &str,
    command: TimerCommand,
) -> Result<Change, ScheduleError> {
    Ok(match command {
        TimerCommand::Set(_) => {
            let job = Job::parse(&key.0, &key.1, timer, true)?;
            set(lines, key, Arc::new(job))
        }
        TimerCommand::Delete => delete(lines, key),
        TimerCommand::Pause => set_active(lines, key, false),
        TimerCommand::Resume => set_active(lines, key, true),
    })
}

fn is_job(line: &Line, key: &JobKey) -> bool {
    matches!(line, Line::Job(j) if &j.key == key)
}

fn is_invalid_job(line: &Line, key: &JobKey) -> bool {
    matches!(line, Line::Invalid(i) if i.key.as_ref() == Some(key))
}

/// Adds the job or updates its line in place.
fn set(lines: &mut Vec<Line>, key: &JobKey, job: Arc<Job>) -> Change {
    match lines.iter().position(|l| is_job(l, key)) {
        Some(i) => match &lines[i] {
            Line::Job(old) if old.active && old.timer_text == job.timer_text => Change::Unchanged,
            _ => {
                lines[i] = Line::Job(job);
                Change::Updated
            }
        },
        None => match lines.iter().position(|l| is_invalid_job(l, key)) {
            // An explicit schedule of a job whose line is broken replaces
            // that line.
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

/// Removes the job's lines, a broken one included.
fn delete(lines: &mut Vec<Line>, key: &JobKey) -> Change {
    let before = lines.len();
    lines.retain(|l| !(is_job(l, key) || is_invalid_job(l, key)));
    if lines.len() == before {
        Change::Unchanged
    } else {
        Change::Removed
    }
}

/// Pauses or resumes the job; the reference silently does nothing for a
/// job that does not exist, and so do we.
fn set_active(lines: &mut [Line], key: &JobKey, active: bool) -> Change {
    let Some(i) = lines.iter().position(|l| is_job(l, key)) else {
        return Change::Unchanged;
    };
    match &lines[i] {
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
    }
}
