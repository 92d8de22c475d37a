//! Unit tests of the status computation against the recording fake
//! ([`crate::subvolumes::fake`]): no root, no btrfs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::schedule::InvalidView;
use crate::subvolumes::fake::FakeSubvolumes;
use crate::subvolumes::Subvolumes;

struct Fixture {
    _dir: tempfile::TempDir,
    fs: Arc<FakeSubvolumes>,
    store: VolumeStore,
    sizes: SizeCache,
    now: DateTime<Utc>,
}

fn fixture() -> Fixture {
    let (dir, fs, store) = crate::subvolumes::fake::store();
    Fixture {
        _dir: dir,
        fs,
        store,
        sizes: SizeCache::default(),
        now: DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    }
}

impl Fixture {
    fn volume(&self, name: &str) -> PathBuf {
        self.store.create(name, &HashMap::new()).unwrap();
        self.store.existing(name).unwrap()
    }

    fn snapshot_path(&self, name: &str) -> PathBuf {
        self.store.config().snapshots_path.join(name)
    }

    /// A snapshot named `name` of its volume, created `age` seconds before
    /// `now` (creation order: the order of the calls, whatever the names).
    fn snapshot(&self, name: &str, age: i64) {
        let source = self.store.existing(names::volume_of(name)).unwrap();
        let dest = self.snapshot_path(name);
        self.fs.snapshot(&source, &dest, true).unwrap();
        self.fs.set_otime(&dest, self.now.timestamp() - age);
    }

    /// The sent marker `<snapshot>@<host>`, recorded `age` seconds ago.
    fn marker(&self, snapshot: &str, host: &str, age: i64) {
        let dest = self.snapshot_path(&format!("{snapshot}@{host}"));
        self.fs
            .snapshot(&self.snapshot_path(snapshot), &dest, true)
            .unwrap();
        self.fs.set_otime(&dest, self.now.timestamp() - age);
    }

    fn collect(&self, schedule: &ScheduleState) -> StatusReply {
        collect(&self.store, schedule, &self.sizes, self.now).unwrap()
    }

    fn at(&self, seconds_ago: i64) -> DateTime<Utc> {
        self.now - TimeDelta::seconds(seconds_ago)
    }
}

fn job(volume: &str, action: &str, timer: &str) -> JobView {
    JobView {
        name: volume.into(),
        action: action.into(),
        timer: timer.into(),
        active: true,
        next_run: None,
        last_run: None,
        last_result: None,
        last_ok: None,
        last_duration_ms: None,
        running: false,
        skips: 0,
        ignored_here: false,
    }
}

fn listed(jobs: Vec<JobView>) -> ScheduleState {
    ScheduleState::Listed(Listing {
        jobs,
        invalid: Vec::new(),
    })
}

fn volume<'a>(status: &'a StatusReply, name: &str) -> &'a VolumeStatus {
    status.volumes.iter().find(|v| v.name == name).unwrap()
}

#[test]
fn newest_is_creation_order_and_lag_is_zero_when_the_peer_has_it() {
    let f = fixture();
    f.volume("db");
    // Created first, but dated later by its name: not the newest.
    f.snapshot("db@2099-01-01T00:00:00.000000", 300);
    f.snapshot("db@2026-03-01T11:58:00.000000", 120);
    f.marker("db@2026-03-01T11:58:00.000000", "10.1.0.2", 100);
    let status = f.collect(&listed(vec![]));
    let db = volume(&status, "db");
    assert_eq!(db.snapshots, 2, "markers are not snapshots");
    assert_eq!(
        db.newest_snapshot.as_deref(),
        Some("db@2026-03-01T11:58:00.000000")
    );
    assert_eq!(db.newest_snapshot_age_seconds, Some(120));
    assert_eq!(db.newest_snapshot_created, Some(f.at(120)));
    assert_eq!(db.follow.as_deref(), Some("off"), "no replicate line");
    assert_eq!(db.peers.len(), 1);
    let peer = &db.peers[0];
    assert_eq!(peer.host, "10.1.0.2");
    assert_eq!(
        peer.sent_snapshot.as_deref(),
        Some("db@2026-03-01T11:58:00.000000")
    );
    assert_eq!(peer.last_success, Some(f.at(100)));
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (0, 0));
    assert!(status.problems.is_empty(), "{:?}", status.problems);
}

#[test]
fn lag_is_the_age_of_the_oldest_snapshot_the_peer_lacks() {
    let f = fixture();
    f.volume("db");
    f.snapshot("db@1", 4000);
    f.marker("db@1", "a", 3900);
    f.snapshot("db@2", 3000);
    f.snapshot("db@3", 10);
    let status = f.collect(&listed(vec![]));
    let peer = &volume(&status, "db").peers[0];
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (3000, 2));
    // A marker whose snapshot is gone (deleted by hand) still places the
    // peer: right after the marker was made.
    std::fs::remove_dir_all(f.snapshot_path("db@1")).unwrap();
    let status = f.collect(&listed(vec![]));
    let peer = &volume(&status, "db").peers[0];
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (3000, 2));
    // A snapshot dated in the future (clock skew) counts as 0, never less.
    f.snapshot("db@4", -50);
    f.marker("db@3", "a", 5);
    let status = f.collect(&listed(vec![]));
    let peer = &volume(&status, "db").peers[0];
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (0, 1));
}

#[test]
fn a_failed_job_comes_first_with_its_error() {
    let f = fixture();
    f.volume("aaa");
    f.volume("zzz");
    f.snapshot("zzz@1", 60);
    let mut failed = job("zzz", "snapshot", "60");
    failed.last_run = Some(f.at(300));
    failed.last_ok = Some(false);
    failed.last_result = Some("error: snapshot failed: no space left on device".into());
    let mut ok = job("zzz", "purge:1h:1d", "60");
    ok.last_run = Some(f.at(30));
    ok.last_ok = Some(true);
    ok.running = true;
    let status = f.collect(&listed(vec![failed, ok]));
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    let problem = &status.problems[0];
    assert_eq!(problem.kind, ProblemKind::JobFailed);
    assert_eq!(problem.volume.as_deref(), Some("zzz"));
    assert_eq!(
        problem.message,
        "snapshot: last run 5 min ago failed: snapshot failed: no space left on device"
    );
    let names: Vec<&str> = status.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["zzz", "aaa"], "problems first");
    let zzz = volume(&status, "zzz");
    assert_eq!(
        zzz.last_error.as_deref(),
        Some("snapshot: snapshot failed: no space left on device")
    );
    assert_eq!(zzz.running_jobs, ["purge:1h:1d"]);
    assert_eq!(zzz.jobs.len(), 2);
}

/// A `replicate:` line naming this node (one Swarm definition for both
/// nodes of a pair) is ignored here: no peer, no "never sent" problem.
#[test]
fn a_replicate_line_naming_this_node_is_no_peer_and_no_problem() {
    let f = fixture();
    f.volume("data");
    f.snapshot("data@1", 500);
    let mut mine = job("data", "replicate:me", "1");
    mine.ignored_here = true;
    let status = f.collect(&listed(vec![mine]));
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    assert!(volume(&status, "data").peers.is_empty());
}

#[test]
fn replicate_never_sent_and_lagging_peers_are_problems() {
    let f = fixture();
    for v in ["fresh", "late", "fine", "paused"] {
        f.volume(v);
    }
    // Scheduled, never sent: the peer lacks every snapshot.
    f.snapshot("fresh@1", 500);
    // Sent once, then 3 h of snapshots not sent, with a 60 min timer.
    f.snapshot("late@1", 4 * 3600);
    f.marker("late@1", "p", 4 * 3600);
    f.snapshot("late@2", 3 * 3600);
    // Behind by 1 h with a 60 min timer: within twice the period.
    f.snapshot("fine@1", 2 * 3600);
    f.marker("fine@1", "p", 2 * 3600);
    f.snapshot("fine@2", 3600);
    // Paused jobs are the operator's decision: no problem.
    f.snapshot("paused@1", 100);
    let mut paused = job("paused", "replicate:p", "60");
    paused.active = false;
    let status = f.collect(&listed(vec![
        job("fresh", "replicate:p", "60"),
        job("late", "replicate:p", "60"),
        job("fine", "replicate:p", "60"),
        paused,
    ]));
    let kinds: Vec<(ProblemKind, &str)> = status
        .problems
        .iter()
        .map(|p| (p.kind, p.volume.as_deref().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::NeverSent, "fresh"),
            (ProblemKind::PeerLagging, "late")
        ]
    );
    assert_eq!(
        status.problems[1].message,
        "p lags 3 h behind (1 snapshot(s) not sent), more than twice the replicate timer (60 min)"
    );
    let fresh = &volume(&status, "fresh").peers[0];
    assert_eq!(fresh.sent_snapshot, None);
    assert_eq!(fresh.last_success, None);
    assert_eq!((fresh.lag_seconds, fresh.unsent_snapshots), (500, 1));
    assert_eq!(fresh.replicate_timer.as_deref(), Some("60"));
    assert_eq!(volume(&status, "fine").peers[0].lag_seconds, 3600);
    assert_eq!(volume(&status, "paused").peers[0].host, "p");
}

#[test]
fn schedule_wide_problems() {
    let f = fixture();
    f.volume("db");
    let status = f.collect(&ScheduleState::Paused);
    assert!(status.schedule_paused);
    assert_eq!(status.problems[0].kind, ProblemKind::SchedulePaused);
    let status = f.collect(&ScheduleState::Unreadable("EACCES".into()));
    assert_eq!(status.problems[0].kind, ProblemKind::ScheduleUnreadable);
    let listing = Listing {
        jobs: vec![
            job("gone", "snapshot", "60"),
            job("gone", "replicate:p", "60"),
        ],
        invalid: vec![InvalidView {
            line: 3,
            text: "x".into(),
            error: "bad timer".into(),
        }],
    };
    let status = f.collect(&ScheduleState::Listed(listing));
    let kinds: Vec<ProblemKind> = status.problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [ProblemKind::MissingVolume, ProblemKind::InvalidScheduleLine]
    );
    assert_eq!(
        status.problems[0].message,
        "jobs are scheduled for gone, which does not exist here: snapshot, replicate:p"
    );
    assert_eq!(status.volumes.len(), 1);
}

#[test]
fn periods_of_minute_and_cron_timers() {
    let f = fixture();
    assert_eq!(period("90", f.now), Some(TimeDelta::minutes(90)));
    assert_eq!(period("cron:0 3 * * *", f.now), Some(TimeDelta::days(1)));
    assert_eq!(period("nonsense", f.now), None);
}

#[test]
fn sizes_are_measured_once_per_change_and_never_during_collect() {
    let f = fixture();
    let path = f.volume("db");
    std::fs::write(path.join("data"), vec![7u8; 256 << 10]).unwrap();
    let status = f.collect(&listed(vec![]));
    let db = volume(&status, "db");
    assert_eq!((db.size_bytes, db.size_stale), (None, true));
    assert_eq!(f.sizes.pending(), ["db"]);
    f.sizes.measure_pending(&f.store);
    assert!(f.sizes.pending().is_empty());
    let measured = volume(&f.collect(&listed(vec![])), "db")
        .size_bytes
        .unwrap();
    assert!(measured >= 256 << 10, "{measured}");
    // Unchanged (same generation): not queued again.
    assert!(f.sizes.pending().is_empty());
    // Written to: the old figure, marked stale, and queued.
    f.fs.touch(&path);
    let db = f.collect(&listed(vec![]));
    let db = volume(&db, "db");
    assert_eq!((db.size_bytes, db.size_stale), (Some(measured), true));
    assert_eq!(f.sizes.pending(), ["db"]);
    // Removed volumes are forgotten.
    f.store.remove("db").unwrap();
    f.collect(&listed(vec![]));
    assert!(f.sizes.pending().is_empty());
}

#[test]
fn walk_counts_hard_links_once_and_skips_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::write(root.join("d/a"), vec![1u8; 64 << 10]).unwrap();
    let one = walk_size(root).unwrap();
    std::fs::hard_link(root.join("d/a"), root.join("b")).unwrap();
    assert_eq!(walk_size(root).unwrap(), one);
    std::os::unix::fs::symlink("/etc", root.join("l")).unwrap();
    let with_link = walk_size(root).unwrap();
    assert!(
        with_link < one + (64 << 10),
        "the symlink's target is not walked"
    );
    assert!(walk_size(&root.join("missing")).is_err());
}

#[test]
fn a_failed_follow_step_is_the_first_problem_until_one_succeeds() {
    let f = fixture();
    f.volume("fw");
    let failure = crate::follow::FollowError::SplitBrain {
        volume: "fw".into(),
        peer: "h".into(),
        ours: "fw@1".into(),
        theirs: "fw@2".into(),
    };
    crate::follow::record(&f.store, "fw", Err(&failure));
    let status = f.collect(&listed(vec![job("fw", "replicate:h", "60")]));
    assert_eq!(status.problems[0].kind, ProblemKind::FollowFailed);
    assert_eq!(status.problems[0].message, failure.to_string());
    let state = volume(&status, "fw").follow.clone().unwrap();
    assert!(
        state.starts_with("on h, idle here; last step failed: fw moved on"),
        "{state}"
    );
    crate::follow::record(&f.store, "fw", Ok(()));
    let status = f.collect(&listed(vec![job("fw", "replicate:h", "60")]));
    assert!(status
        .problems
        .iter()
        .all(|p| p.kind != ProblemKind::FollowFailed));
}

#[test]
fn the_reply_round_trips_as_json() {
    let f = fixture();
    f.volume("db");
    f.snapshot("db@1", 10);
    f.marker("db@1", "h", 5);
    let status = f.collect(&listed(vec![job("db", "replicate:h", "60")]));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        json["Volumes"][0]["Peers"][0]["LastSuccess"],
        "2026-03-01T11:59:55Z"
    );
    assert_eq!(json["Volumes"][0]["Follow"], "on h, idle here");
    let back: StatusReply = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}

#[test]
fn one_scan_groups_each_volumes_snapshots_in_creation_order() {
    let f = fixture();
    for v in ["db", "db2", "d"] {
        f.volume(v);
    }
    f.snapshot("db2@1", 10);
    f.snapshot("db@9", 10);
    f.snapshot("db@1", 10);
    f.marker("db@9", "h", 5);
    f.snapshot("d@x", 10);
    // Not subvolumes, hidden, or of no volume here: none of them listed.
    let dir = f.store.config().snapshots_path.clone();
    std::fs::create_dir(dir.join("db@plain-dir")).unwrap();
    f.fs.snapshot(&f.store.existing("db").unwrap(), &dir.join(".recv.1"), true)
        .unwrap();
    f.volume("gone");
    f.snapshot("gone@1", 10);
    let volumes = vec!["d".to_string(), "db".into(), "db2".into()];
    let grouped = crate::snapshots::by_creation_of_each(f.store.fs(), &dir, &volumes);
    assert_eq!(grouped.len(), 3);
    let names = |v: &str| -> Vec<String> { grouped[v].iter().map(|p| p.name.clone()).collect() };
    // Creation order, not names; markers included; nothing of "gone".
    assert_eq!(names("db"), ["db@9", "db@1", "db@9@h"]);
    assert_eq!(names("db2"), ["db2@1"]);
    assert_eq!(names("d"), ["d@x"]);
    // The one-volume form is the same scan, markers dropped on request.
    let plain = crate::snapshots::by_creation(f.store.fs(), &dir, "db", false);
    let plain: Vec<&str> = plain.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(plain, ["db@9", "db@1"]);
}

mod peers;
