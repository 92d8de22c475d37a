//! `buttervolume status`: what an operator needs to see about every volume
//! of this node, problems first. The Status endpoint and the metrics
//! listener both show what [`collect`] computes (the listener through
//! [`ScanCache`]: one scan a second at most, however many scrapes).
//!
//! Where each figure comes from (nothing here writes anything):
//!
//! - snapshots, "newest" and its age: [`crate::snapshots::by_creation`]'s
//!   order (btrfs
//!   creation order, never names or clocks); the age is counted from the
//!   snapshot's creation time on this node (`otime`);
//! - peers: the sent markers `<volume>@<ts>@<peer>`, recorded only after a
//!   peer confirmed a send (or after a receive from it), and the hosts of
//!   the volume's `replicate:` jobs. Per peer: the last successful
//!   replication is the newest marker's creation time; the **lag** is how
//!   long this node has held a snapshot the peer lacks: 0 when the peer
//!   holds the newest snapshot, else `now` minus the creation time of the
//!   oldest snapshot made here (not received: those exist where they came
//!   from) after the one the peer holds (after none, when it holds none). It is 0 right after a send and grows from the
//!   moment a snapshot is taken and not sent;
//! - jobs, running jobs and the last error: the scheduler's listing
//!   ([`Listing`]);
//! - size: [`SizeCache`], measured in the background (see `size`), never
//!   while a request waits.
//!
//! Problems, worst first ([`ProblemKind`]): a job whose last run failed; a
//! send that failed (the last one of the volume to that peer, kept in
//! memory by [`crate::replication::progress`]); a
//! `replicate:<peer>` job without any successful send; a peer whose lag is
//! more than twice its replicate job's period; jobs for a volume that does
//! not exist; the schedule paused, unreadable or with skipped lines.
//!
//! Cost: one scan of the volumes dir, one of the snapshots dir
//! ([`snapshots::by_creation_of_each`]), one subvolume-info call per volume and per
//! snapshot and marker, plus the scheduler's listing. The figures are in
//! BENCHMARKS.md.

mod backups;
mod cache;
mod problems;
mod size;
#[cfg(test)]
mod tests;

pub use cache::{ScanCache, SCAN_TTL};
use problems::{key_problems, schedule_problems};
pub use size::{walk_size, SizeCache};

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{JobStatus, PeerStatus, Problem, ProblemKind, StatusReply, VolumeStatus};
use crate::names;
use crate::replication::progress::SendFailure;
use crate::schedule::{Action, JobView, Listing, ScheduleError, Scheduler, Timer};
use crate::snapshots::{self, Placed};
use crate::volumes::{VolumeError, VolumeStore};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Volumes(#[from] VolumeError),
}

/// What the scheduler said, for [`collect`].
#[derive(Debug, Clone)]
pub enum ScheduleState {
    Listed(Listing),
    Paused,
    Unreadable(String),
}

impl ScheduleState {
    /// The scheduler's listing now.
    pub fn of(scheduler: &Scheduler) -> ScheduleState {
        match scheduler.list() {
            Ok(listing) => ScheduleState::Listed(listing),
            Err(ScheduleError::GloballyPaused) => ScheduleState::Paused,
            Err(e) => ScheduleState::Unreadable(e.to_string()),
        }
    }

    fn jobs(&self) -> &[JobView] {
        match self {
            ScheduleState::Listed(listing) => &listing.jobs,
            _ => &[],
        }
    }
}

/// The daemon's status now: [`collect`] at the current time, then the
/// size measurements it found out of date are started in the background.
/// Blocking.
pub fn gather(
    store: &Arc<VolumeStore>,
    scheduler: &Scheduler,
    sizes: &Arc<SizeCache>,
) -> Result<StatusReply, StatusError> {
    let schedule = ScheduleState::of(scheduler);
    let status = collect(store, &schedule, sizes, Utc::now())?;
    sizes.measure_in_background(store.clone());
    Ok(status)
}

/// The status of every volume of `store` at `now`. Volumes whose size is
/// unknown or out of date are queued in `sizes` (measured by
/// [`SizeCache::measure_pending`]).
pub fn collect(
    store: &VolumeStore,
    schedule: &ScheduleState,
    sizes: &SizeCache,
    now: DateTime<Utc>,
) -> Result<StatusReply, StatusError> {
    let volumes = store.list()?;
    sizes.retain(&volumes);
    let mut problems = schedule_problems(schedule, &volumes);
    problems.extend(key_problems(store.config()));
    let cluster = store.cluster().map(|c| crate::cluster::report::status(c));
    if let Some(c) = &cluster {
        problems.extend(crate::cluster::report::problems(c));
    }
    let mut jobs_of: BTreeMap<&str, Vec<&JobView>> = BTreeMap::new();
    for job in schedule.jobs() {
        jobs_of.entry(job.name.as_str()).or_default().push(job);
    }
    let mut placed =
        snapshots::by_creation_of_each(store.fs(), &store.config().snapshots_path, &volumes);
    let mut out = Vec::with_capacity(volumes.len());
    let backup_records = backups::records(store);
    problems.extend(backups::check_problems(&backup_records));
    for name in &volumes {
        let jobs = jobs_of.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let placed = placed.remove(name).unwrap_or_default();
        let mut volume = volume_status(store, sizes, name, placed, jobs, now);
        volume.backups = backups::of_volume(&backup_records, name, jobs, now);
        problems.extend(volume_problems(store, &volume, jobs, now));
        problems.extend(backups::problems(&volume, jobs, now));
        out.push(volume);
    }
    problems.sort_by(|a, b| {
        (a.kind, &a.volume, &a.peer, &a.message).cmp(&(b.kind, &b.volume, &b.peer, &b.message))
    });
    // Volumes with a problem first, each group by name (already sorted).
    out.sort_by_key(|v| {
        !problems
            .iter()
            .any(|p| p.volume.as_deref() == Some(v.name.as_str()))
    });
    Ok(StatusReply {
        now,
        problems,
        volumes: out,
        schedule_paused: matches!(schedule, ScheduleState::Paused),
        cluster,
    })
}

/// A snapshot's creation time on this node.
fn created(placed: &Placed) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(placed.identity.otime, 0)
}

fn seconds_since(t: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - t).num_seconds().max(0)
}

fn volume_status(
    store: &VolumeStore,
    sizes: &SizeCache,
    name: &str,
    placed: Vec<Placed>,
    jobs: &[&JobView],
    now: DateTime<Utc>,
) -> VolumeStatus {
    let (markers, snaps): (Vec<Placed>, Vec<Placed>) =
        placed.into_iter().partition(|p| names::is_marker(&p.name));
    let newest = snaps.last();
    let newest_created = newest.and_then(created);
    let size = store
        .existing(name)
        .ok()
        .and_then(|path| store.fs().identity(&path).ok())
        .map(|id| sizes.lookup(name, id.generation));
    let (size_bytes, size_measured_at, size_stale) = match size.flatten() {
        Some(seen) => (Some(seen.bytes), Some(seen.measured_at), seen.stale),
        None => (None, None, true),
    };
    let mut running_jobs: Vec<String> = jobs
        .iter()
        .filter(|j| j.running)
        .map(|j| j.action.clone())
        .collect();
    running_jobs.sort();
    let failed_sends = store.send_failures().of(name);
    let job_error = jobs
        .iter()
        .filter(|j| j.last_ok == Some(false))
        .max_by_key(|j| j.last_run)
        .map(|j| (j.last_run, format!("{}: {}", j.action, failure_text(j))));
    let send_error = failed_sends
        .iter()
        .max_by_key(|(_, f)| f.at)
        .map(|(peer, f)| (Some(f.at), format!("send to {peer}: {}", f.message)));
    let last_error = job_error
        .into_iter()
        .chain(send_error)
        .max_by_key(|(at, _)| *at)
        .map(|(_, error)| error);
    VolumeStatus {
        name: name.to_string(),
        size_bytes,
        size_measured_at,
        size_stale,
        snapshots: snaps.len(),
        newest_snapshot: newest.map(|p| p.name.clone()),
        newest_snapshot_created: newest_created,
        newest_snapshot_age_seconds: newest_created.map(|t| seconds_since(t, now)),
        peers: peers(&snaps, &markers, jobs, &failed_sends, now),
        follow: follow_state(store, name, jobs),
        jobs: jobs.iter().map(|j| job_status(j)).collect(),
        running_jobs,
        last_error,
        backups: Vec::new(),
        owner: store.cluster().and_then(|c| {
            let r = c.local().owner(name)?;
            let state = if r.mounted { "in use" } else { "released" };
            Some(format!("{} epoch {}, {state}", r.node, r.epoch))
        }),
    }
}

/// `off`, or `on <peer>` with whether a container uses it here, then the
/// last follow failure ([`crate::follow::last_failure`]).
fn follow_state(store: &VolumeStore, name: &str, jobs: &[&JobView]) -> Option<String> {
    let peer = jobs.iter().filter(|j| j.active).find_map(|j| {
        j.action
            .strip_prefix("replicate:")
            .filter(|_| replicate_host(j).is_some())
    });
    let Some(peer) = peer.filter(|_| crate::follow::enabled(store, name)) else {
        return Some("off".into());
    };
    let here = match store.mount_count(name) {
        0 => "idle here",
        _ => "in use here",
    };
    Some(match crate::follow::last_failure(store, name) {
        Some(failure) => format!("on {peer}, {here}; last step failed: {failure}"),
        None => format!("on {peer}, {here}"),
    })
}

/// The peers of a volume: marker hosts and `replicate:` job hosts.
fn peers(
    snaps: &[Placed],
    markers: &[Placed],
    jobs: &[&JobView],
    failed: &BTreeMap<String, SendFailure>,
    now: DateTime<Utc>,
) -> Vec<PeerStatus> {
    // The newest marker of each host (markers are oldest first); `None`:
    // a job's host without any.
    let mut newest_marker: BTreeMap<&str, Option<&Placed>> = BTreeMap::new();
    for marker in markers {
        if let Some(host) = names::marker_host(&marker.name) {
            newest_marker.insert(names::peer_of(host), Some(marker));
        }
    }
    let mut timers: BTreeMap<&str, &str> = BTreeMap::new();
    for job in jobs {
        if let Some(host) = replicate_host(job) {
            newest_marker.entry(host).or_insert(None);
            timers.insert(host, job.timer.as_str());
        }
    }
    for host in failed.keys() {
        newest_marker.entry(host).or_insert(None);
    }
    newest_marker
        .into_iter()
        .map(|(host, sent)| {
            // Where the peer's snapshot is in creation order: its own place
            // when it is still here, else the marker's (made right after).
            let held_at = sent.map(|m| {
                let source = names::marker_source(&m.name);
                snaps
                    .iter()
                    .find(|s| s.name == source)
                    .map_or(m.order(), Placed::order)
            });
            // Made here: a received snapshot exists on the node it came
            // from already (the peer itself, when it pushed it here).
            let unsent: Vec<&Placed> = snaps
                .iter()
                .filter(|s| s.identity.received_uuid.is_none())
                .filter(|s| held_at.is_none_or(|at| s.order() > at))
                .collect();
            let failure = failed.get(host);
            let lag_seconds = unsent
                .first()
                .and_then(|s| created(s))
                .map_or(0, |t| seconds_since(t, now));
            PeerStatus {
                host: host.to_string(),
                sent_snapshot: sent.map(|m| names::marker_source(&m.name).to_string()),
                last_success: sent.and_then(created),
                lag_seconds,
                unsent_snapshots: unsent.len(),
                replicate_timer: timers.get(host).map(|t| t.to_string()),
                last_failure: failure.map(|f| f.message.clone()),
                last_failure_at: failure.map(|f| f.at),
            }
        })
        .collect()
}

/// The peer of a `replicate:` job ([`names::peer_of`]): `replicate:root@peer`
/// is peer `peer`, as are its markers `<vol>@<ts>@root@peer`.
/// `None` too for a line naming this node, ignored here.
fn replicate_host(job: &JobView) -> Option<&str> {
    if job.ignored_here {
        return None;
    }
    match Action::parse(&job.action) {
        Ok(Action::Replicate { .. }) => job.action.strip_prefix("replicate:").map(names::peer_of),
        _ => None,
    }
}

fn job_status(job: &JobView) -> JobStatus {
    JobStatus {
        action: job.action.clone(),
        timer: job.timer.clone(),
        active: job.active,
        running: job.running,
        last_run: job.last_run,
        next_run: job.next_run,
        last_ok: job.last_ok,
        last_result: job.last_result.clone(),
        last_duration_ms: job.last_duration_ms,
    }
}

/// A failed job's result without the history's `error: ` prefix.
fn failure_text(job: &JobView) -> &str {
    let result = job.last_result.as_deref().unwrap_or("failed");
    result.strip_prefix("error: ").unwrap_or(result)
}

/// The time between two occurrences of a timer (its first two after `now`).
pub fn period(timer: &str, now: DateTime<Utc>) -> Option<TimeDelta> {
    let timer = Timer::parse(timer).ok()?;
    let first = timer.next_after(now)?;
    let second = timer.next_after(first)?;
    Some(second - first)
}

/// A duration for people: `45 s`, `12 min`, `5 h`, `3 d`.
pub fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

fn volume_problems(
    store: &VolumeStore,
    volume: &VolumeStatus,
    jobs: &[&JobView],
    now: DateTime<Utc>,
) -> Vec<Problem> {
    let problem = |kind, peer: Option<&str>, message: String| Problem {
        kind,
        volume: Some(volume.name.clone()),
        peer: peer.map(str::to_string),
        message,
    };
    let mut out = Vec::new();
    if let Some(failure) = crate::follow::last_failure(store, &volume.name) {
        out.push(problem(ProblemKind::FollowFailed, None, failure));
    }
    for job in jobs.iter().filter(|j| j.last_ok == Some(false)) {
        let when = job
            .last_run
            .map(|t| format!(" {} ago", human_duration(seconds_since(t, now))))
            .unwrap_or_default();
        out.push(problem(
            ProblemKind::JobFailed,
            replicate_host(job),
            format!(
                "{}: last run{when} failed: {}",
                job.action,
                failure_text(job)
            ),
        ));
    }
    for peer in &volume.peers {
        let (Some(failure), Some(at)) = (&peer.last_failure, peer.last_failure_at) else {
            continue;
        };
        let job_says_it = jobs
            .iter()
            .any(|j| j.last_ok == Some(false) && replicate_host(j) == Some(peer.host.as_str()));
        if !job_says_it {
            out.push(problem(
                ProblemKind::SendFailed,
                Some(&peer.host),
                format!(
                    "the last send to {} ({} ago) failed: {failure}",
                    peer.host,
                    human_duration(seconds_since(at, now))
                ),
            ));
        }
    }
    for job in jobs.iter().filter(|j| j.active) {
        let Some(host) = replicate_host(job) else {
            continue;
        };
        let Some(peer) = volume.peers.iter().find(|p| p.host == host) else {
            continue;
        };
        if peer.sent_snapshot.is_none() {
            let next = job
                .next_run
                .map(|t| {
                    format!(
                        " (next run {})",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                })
                .unwrap_or_default();
            out.push(problem(
                ProblemKind::NeverSent,
                Some(host),
                format!(
                    "{}: replication to {host} is scheduled but no send ever succeeded{next}",
                    job.action
                ),
            ));
            continue;
        }
        let Some(period) = period(&job.timer, now) else {
            continue;
        };
        if peer.lag_seconds > 2 * period.num_seconds() {
            out.push(problem(
                ProblemKind::PeerLagging,
                Some(host),
                format!(
                    "{host} lags {} behind ({} snapshot(s) not sent), more than twice the replicate timer ({})",
                    human_duration(peer.lag_seconds),
                    peer.unsent_snapshots,
                    human_duration(period.num_seconds())
                ),
            ));
        }
    }
    out
}
