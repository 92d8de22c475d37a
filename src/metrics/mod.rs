//! Prometheus metrics: what is counted as it happens, what is read at
//! scrape time, and the optional listener that serves them
//! (`METRICS_ADDR`, off by default; see [`listener`]).
//!
//! Counted as it happens, in one process-wide [`Registry`] (reset when the
//! daemon restarts, as Prometheus expects of counters): requests on the
//! plugin socket per endpoint ([`record_request`], called from the one
//! place every request passes), bytes sent to and pulled from peers
//! ([`record_send`], [`record_pull`]), scheduled job durations and
//! failures per kind of action ([`record_job`]).
//!
//! Read at scrape time: everything [`crate::status`] shows (snapshot
//! counts, newest snapshot ages, per-peer last success and lag, sizes,
//! problems) and what peers did through the forced command, counted from
//! its log ([`peer_log`]). README has the table of names, types and labels.

mod backups;
mod cluster;
pub mod exposition;
pub mod listener;
pub mod peer_log;

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use exposition::{Exposition, Histogram, Kind};
use peer_log::{refusal_kinds, PeerCounts};

use crate::api::{ProblemKind, StatusReply};
use crate::schedule::Action;

/// Buckets of request durations, in seconds (a send through the socket can
/// take hours).
const REQUEST_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
    3600.0,
];

/// Buckets of job durations, in seconds.
const JOB_BUCKETS: [f64; 13] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

/// The kinds of scheduled action, as the `action` label spells them.
pub const ACTION_KINDS: [&str; 6] = [
    "snapshot",
    "replicate",
    "purge",
    "synchronize",
    "backup",
    "check-backups",
];

/// The `action` label of a scheduled action.
pub fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::Snapshot => "snapshot",
        Action::Replicate { .. } => "replicate",
        Action::Purge { .. } => "purge",
        Action::Synchronize { .. } => "synchronize",
        Action::Backup { .. } => "backup",
        Action::CheckBackups { .. } => "check-backups",
    }
}

#[derive(Debug, Default, Clone)]
struct Counters {
    /// (endpoint, ok) → requests.
    requests: BTreeMap<(&'static str, bool), u64>,
    request_seconds: BTreeMap<&'static str, Histogram>,
    /// Peer → stream bytes sent.
    sent_bytes: BTreeMap<String, u64>,
    /// Peer → stream bytes pulled from it.
    pulled_bytes: BTreeMap<String, u64>,
    /// Peer → SSH sessions opened to it.
    ssh_sessions: BTreeMap<String, u64>,
    job_seconds: BTreeMap<&'static str, Histogram>,
    job_failures: BTreeMap<&'static str, u64>,
}

/// The counters of this process.
#[derive(Debug, Default)]
pub struct Registry {
    counters: Mutex<Counters>,
    peer_log: peer_log::PeerLog,
}

/// Global on purpose: counters are bumped from deep inside requests,
/// transfers and jobs, and Prometheus reads one page per process; the
/// node's state proper is passed with the store ([`crate::volumes`]).
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request on the plugin socket, answered in `elapsed`; `endpoint` is
/// its label ([`crate::api::endpoint::label`]: a known endpoint's path or
/// `other`, so a client's unknown paths never make new series).
pub fn record_request(endpoint: &'static str, ok: bool, elapsed: Duration) {
    let mut counters = registry().lock();
    *counters.requests.entry((endpoint, ok)).or_default() += 1;
    counters
        .request_seconds
        .entry(endpoint)
        .or_insert_with(|| Histogram::new(&REQUEST_BUCKETS))
        .observe(elapsed.as_secs_f64());
}

/// A completed send of `bytes` stream bytes to `peer`.
pub fn record_send(peer: &str, bytes: u64) {
    *registry()
        .lock()
        .sent_bytes
        .entry(peer.to_string())
        .or_default() += bytes;
}

/// A completed pull of `bytes` stream bytes from `peer`.
pub fn record_pull(peer: &str, bytes: u64) {
    *registry()
        .lock()
        .pulled_bytes
        .entry(peer.to_string())
        .or_default() += bytes;
}

/// An SSH session to `peer` was opened (not one reused).
pub fn record_session_opened(peer: &str) {
    *registry()
        .lock()
        .ssh_sessions
        .entry(peer.to_string())
        .or_default() += 1;
}

/// A scheduled job that ran for `elapsed` and succeeded or not.
pub fn record_job(action: &Action, ok: bool, elapsed: Duration) {
    let kind = action_kind(action);
    let mut counters = registry().lock();
    counters
        .job_seconds
        .entry(kind)
        .or_insert_with(|| Histogram::new(&JOB_BUCKETS))
        .observe(elapsed.as_secs_f64());
    if !ok {
        *counters.job_failures.entry(kind).or_default() += 1;
    }
}

/// The metrics page: the registry's counters, the forced command's log
/// (`log` in STATE_PATH) and `status`. Blocking (reads the log).
pub fn render(status: &StatusReply, log: &std::path::Path) -> String {
    let counters = registry().lock().clone();
    let peers = registry().peer_log.update(log);
    let mut page = Exposition::default();
    status_metrics(&mut page, status);
    job_metrics(&mut page, &counters, status);
    transfer_metrics(&mut page, &counters, &peers);
    request_metrics(&mut page, &counters);
    page.finish()
}

fn status_metrics(page: &mut Exposition, status: &StatusReply) {
    const VOLUMES: &str = "buttervolume_volumes";
    page.family(VOLUMES, Kind::Gauge, "Volumes on this node.");
    page.sample(VOLUMES, &[], status.volumes.len() as f64);

    const READ_AT: &str = "buttervolume_status_timestamp_seconds";
    page.family(
        READ_AT,
        Kind::Gauge,
        "Unix time the status figures of this page were read (one read serves the scrapes of a second).",
    );
    page.sample(READ_AT, &[], status.now.timestamp_millis() as f64 / 1000.0);

    const SNAPSHOTS: &str = "buttervolume_volume_snapshots";
    page.family(
        SNAPSHOTS,
        Kind::Gauge,
        "Snapshots of the volume on this node (sent markers not counted).",
    );
    for v in &status.volumes {
        page.sample(SNAPSHOTS, &[("volume", &v.name)], v.snapshots as f64);
    }

    const AGE: &str = "buttervolume_volume_newest_snapshot_age_seconds";
    page.family(
        AGE,
        Kind::Gauge,
        "Age of the volume's newest snapshot (btrfs creation order), from its creation on this node; absent without snapshots.",
    );
    for v in &status.volumes {
        if let Some(age) = v.newest_snapshot_age_seconds {
            page.sample(AGE, &[("volume", &v.name)], age as f64);
        }
    }

    const SIZE: &str = "buttervolume_volume_size_bytes";
    page.family(
        SIZE,
        Kind::Gauge,
        "Allocated bytes of the volume as du counts them, last background measurement; absent until measured.",
    );
    for v in &status.volumes {
        if let Some(bytes) = v.size_bytes {
            page.sample(SIZE, &[("volume", &v.name)], bytes as f64);
        }
    }

    peer_metrics(page, status);
    backups::render(page, status);
    cluster::render(page, status);

    const PROBLEMS: &str = "buttervolume_problems";
    page.family(
        PROBLEMS,
        Kind::Gauge,
        "Problems buttervolume status shows, by kind.",
    );
    for kind in ProblemKind::ALL {
        let count = status.problems.iter().filter(|p| p.kind == kind).count();
        page.sample(PROBLEMS, &[("kind", kind.as_str())], count as f64);
    }
}

fn peer_metrics(page: &mut Exposition, status: &StatusReply) {
    const LAST: &str = "buttervolume_replication_last_success_timestamp_seconds";
    page.family(
        LAST,
        Kind::Gauge,
        "When the newest sent marker of the volume for the peer was recorded (Unix time); absent when never sent.",
    );
    for v in &status.volumes {
        for p in &v.peers {
            if let Some(t) = p.last_success {
                let labels = [("volume", v.name.as_str()), ("peer", p.host.as_str())];
                page.sample(LAST, &labels, t.timestamp() as f64);
            }
        }
    }
    const LAG: &str = "buttervolume_replication_lag_seconds";
    page.family(
        LAG,
        Kind::Gauge,
        "How long this node has held a snapshot of the volume the peer lacks: 0 when the peer holds the newest, else the age of the oldest snapshot created after the one it holds.",
    );
    for v in &status.volumes {
        for p in &v.peers {
            let labels = [("volume", v.name.as_str()), ("peer", p.host.as_str())];
            page.sample(LAG, &labels, p.lag_seconds as f64);
        }
    }
    const UNSENT: &str = "buttervolume_replication_unsent_snapshots";
    page.family(
        UNSENT,
        Kind::Gauge,
        "Snapshots of the volume created after the newest one the peer holds.",
    );
    for v in &status.volumes {
        for p in &v.peers {
            let labels = [("volume", v.name.as_str()), ("peer", p.host.as_str())];
            page.sample(UNSENT, &labels, p.unsent_snapshots as f64);
        }
    }
}

fn job_metrics(page: &mut Exposition, counters: &Counters, status: &StatusReply) {
    const DURATION: &str = "buttervolume_job_duration_seconds";
    page.family(
        DURATION,
        Kind::Histogram,
        "Duration of the scheduled jobs that ran since the daemon started, by kind of action.",
    );
    for kind in ACTION_KINDS {
        let empty = Histogram::new(&JOB_BUCKETS);
        let h = counters.job_seconds.get(kind).unwrap_or(&empty);
        page.histogram(DURATION, &[("action", kind)], h);
    }
    const FAILURES: &str = "buttervolume_job_failures_total";
    page.family(
        FAILURES,
        Kind::Counter,
        "Scheduled jobs that failed since the daemon started, by kind of action.",
    );
    for kind in ACTION_KINDS {
        let n = counters.job_failures.get(kind).copied().unwrap_or(0);
        page.sample(FAILURES, &[("action", kind)], n as f64);
    }
    const LAST_OK: &str = "buttervolume_job_last_success";
    page.family(
        LAST_OK,
        Kind::Gauge,
        "1 when the job's last run succeeded, 0 when it failed (from the persisted run history); absent before its first run.",
    );
    const RUNNING: &str = "buttervolume_job_running";
    let mut running = Vec::new();
    for v in &status.volumes {
        for job in &v.jobs {
            let labels = [("volume", v.name.as_str()), ("job", job.action.as_str())];
            if let Some(ok) = job.last_ok {
                page.sample(LAST_OK, &labels, if ok { 1.0 } else { 0.0 });
            }
            running.push((v.name.as_str(), job.action.as_str(), job.running));
        }
    }
    page.family(RUNNING, Kind::Gauge, "1 while the job runs.");
    for (volume, job, is_running) in running {
        let value = if is_running { 1.0 } else { 0.0 };
        page.sample(RUNNING, &[("volume", volume), ("job", job)], value);
    }
    const PAUSED: &str = "buttervolume_schedule_paused";
    page.family(PAUSED, Kind::Gauge, "1 while the whole schedule is paused.");
    page.sample(PAUSED, &[], if status.schedule_paused { 1.0 } else { 0.0 });
}

fn transfer_metrics(page: &mut Exposition, counters: &Counters, peers: &PeerCounts) {
    const SENT: &str = "buttervolume_sent_bytes_total";
    page.family(
        SENT,
        Kind::Counter,
        "Send stream bytes that peers confirmed, since the daemon started.",
    );
    for (peer, bytes) in &counters.sent_bytes {
        page.sample(SENT, &[("peer", peer)], *bytes as f64);
    }
    const RECEIVED: &str = "buttervolume_received_bytes_total";
    page.family(
        RECEIVED,
        Kind::Counter,
        "Send stream bytes that landed here: mode=pull since the daemon started, mode=push (peers' sends, peer = their address) from the forced command's log.",
    );
    for (peer, bytes) in &counters.pulled_bytes {
        page.sample(RECEIVED, &[("peer", peer), ("mode", "pull")], *bytes as f64);
    }
    for (peer, bytes) in &peers.received_bytes {
        page.sample(RECEIVED, &[("peer", peer), ("mode", "push")], *bytes as f64);
    }
    const SESSIONS: &str = "buttervolume_ssh_sessions_opened_total";
    page.family(
        SESSIONS,
        Kind::Counter,
        "SSH sessions (libssh2) opened to peers since the daemon started; kept sessions are reused, so this grows by about one per peer, not one per transfer. Full sends run their own ssh client, not counted here.",
    );
    for (peer, n) in &counters.ssh_sessions {
        page.sample(SESSIONS, &[("peer", peer)], *n as f64);
    }
    const REFUSALS: &str = "buttervolume_peer_refusals_total";
    page.family(
        REFUSALS,
        Kind::Counter,
        "Peer requests the forced command refused, from its log: kind=command (outside the protocol), stream (a send stream the confinement rule refused), delete, send.",
    );
    for kind in refusal_kinds() {
        let n = peers.refusals.get(kind).copied().unwrap_or(0);
        page.sample(REFUSALS, &[("kind", kind)], n as f64);
    }
    const FAILED: &str = "buttervolume_peer_receive_failures_total";
    page.family(
        FAILED,
        Kind::Counter,
        "Peers' streams that did not land for another reason than a refusal (cut short, disk full...), from the forced command's log.",
    );
    page.sample(FAILED, &[], peers.receive_failures as f64);
}

fn request_metrics(page: &mut Exposition, counters: &Counters) {
    const REQUESTS: &str = "buttervolume_requests_total";
    page.family(
        REQUESTS,
        Kind::Counter,
        "Requests answered on the plugin socket since the daemon started, by endpoint and outcome (ok, error).",
    );
    for ((endpoint, ok), n) in &counters.requests {
        let outcome = if *ok { "ok" } else { "error" };
        let labels = [("endpoint", *endpoint), ("outcome", outcome)];
        page.sample(REQUESTS, &labels, *n as f64);
    }
    const DURATION: &str = "buttervolume_request_duration_seconds";
    page.family(
        DURATION,
        Kind::Histogram,
        "Time to answer a request on the plugin socket, by endpoint.",
    );
    for (endpoint, h) in &counters.request_seconds {
        page.histogram(DURATION, &[("endpoint", endpoint)], h);
    }
}

#[cfg(test)]
mod tests;
