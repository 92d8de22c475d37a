//! Rounds on the hand clock: due or not, new jobs, what each action runs,
//! failures, unchanged volumes, idle followers.

use super::*;

#[tokio::test]
async fn due_and_not_due() {
    let h = Harness::new();
    assert_eq!(h.schedule("snapshot", "60", "db"), Change::Added);
    assert_eq!(h.schedule("purge:1h:1d", "1440", "db"), Change::Added);
    // Never run: due at the first tick, like the reference.
    let r = h.tick_at(t0()).await;
    assert_eq!(r.dispatched, 2);
    assert_eq!(r.next_due, Some(t0() + minutes(60)));
    assert_eq!(h.tick_at(t0() + minutes(59)).await.dispatched, 0);
    assert_eq!(h.fake.count("snapshot db"), 1);
    assert_eq!(h.tick_at(t0() + minutes(60)).await.dispatched, 1);
    assert_eq!(h.fake.count("snapshot db"), 2);
    assert_eq!(h.fake.count("purge db 1h:1d"), 1);
    // Measured from the last run, not from a fixed grid.
    assert_eq!(h.tick_at(t0() + minutes(119)).await.dispatched, 0);
    assert_eq!(h.tick_at(t0() + minutes(120)).await.dispatched, 1);
    assert_eq!(h.tick_at(t0() + minutes(1440)).await.dispatched, 2);

    let job = h.job("db", "snapshot");
    assert_eq!(job.last_run, Some(t0() + minutes(1440)));
    assert_eq!(job.next_run, Some(t0() + minutes(1500)));
    assert_eq!(job.last_result.as_deref(), Some("ok: snapshot db@snap"));
    assert_eq!(job.last_ok, Some(true));
    assert!(job.last_duration_ms.is_some());
    assert!(!job.running);
}

/// Issue 21: a job scheduled between two rounds first runs at the next
/// round (up to TIMER later), as in the reference, whose loop sleeps TIMER
/// before each run of its jobs; never at the moment it is scheduled. Only
/// a job that never ran waits: after its first run, its own timer counts.
#[tokio::test]
async fn a_new_job_first_runs_at_the_next_round() {
    let h = Harness::new();
    assert_eq!(h.tick_at(t0()).await.dispatched, 0);
    let scheduled = t0() + TimeDelta::seconds(10);
    h.clock.set(scheduled);
    h.schedule("snapshot", "60", "db");
    let r = h.tick_at(scheduled).await;
    assert_eq!(r.dispatched, 0, "ran at the moment it was scheduled");
    assert_eq!(r.next_due, Some(t0() + ROUND));
    assert_eq!(h.job("db", "snapshot").next_run, Some(t0() + ROUND));
    assert_eq!(
        h.tick_at(t0() + ROUND - TimeDelta::seconds(1))
            .await
            .dispatched,
        0
    );
    assert_eq!(h.fake.count("snapshot db"), 0);
    assert_eq!(h.tick_at(t0() + ROUND).await.dispatched, 1);
    assert_eq!(h.fake.count("snapshot db"), 1);
    // Then every 60 minutes from that run, not on the rounds.
    assert_eq!(
        h.job("db", "snapshot").next_run,
        Some(t0() + ROUND + minutes(60))
    );
    // Scheduled again with another timer: it has run, so no new wait.
    h.schedule("snapshot", "30", "db");
    assert_eq!(
        h.job("db", "snapshot").next_run,
        Some(t0() + ROUND + minutes(30))
    );
}

#[tokio::test]
async fn every_action_runs_what_it_says() {
    let h = Harness::new();
    h.schedule("snapshot", "1", "a");
    h.schedule("replicate:peer", "1", "b");
    h.schedule("purge:1h:1d", "1", "c");
    h.schedule("synchronize:h1,h2", "1", "d");
    h.tick_at(t0()).await;
    let mut calls = h.fake.calls();
    calls.sort();
    assert_eq!(
        calls,
        [
            "purge c 1h:1d",
            "send b@snap peer",
            "snapshot a",
            "snapshot b",
            "snapshot d",
            "sync d h1,h2"
        ]
    );
    assert_eq!(
        h.job("b", "replicate:peer").last_result.as_deref(),
        Some("ok: sent b@snap to peer")
    );
}

/// `jobs::run` alone: what each action calls, in order.
#[test]
fn each_action_calls_what_the_reference_calls() {
    let fake = Fake::default();
    let run = |action: &str| jobs::run(&fake, "db", &Action::parse(action).unwrap()).unwrap();
    assert_eq!(run("snapshot"), "snapshot db@snap");
    assert_eq!(run("replicate:h"), "sent db@snap to h");
    assert_eq!(run("purge:1h:1d"), "purged 1 snapshot(s)");
    assert_eq!(
        run("synchronize:a,b"),
        "snapshot db@snap, synchronized from a,b"
    );
    assert_eq!(
        fake.calls(),
        [
            "snapshot db",
            "snapshot db",
            "send db@snap h",
            "purge db 1h:1d",
            "snapshot db",
            "sync db a,b"
        ]
    );
}

/// `jobs::run` alone: a failure says which step failed and why, in the
/// words the history and the listing show after `error: `, and keeps the
/// action's own error as its source.
#[test]
fn a_failed_job_says_what_happened() {
    let fake = Fake::default();
    fake.removed
        .lock()
        .unwrap()
        .extend(["gone", "db>h", "db<a,b"].map(String::from));
    let run = |volume: &str, action: &str| {
        jobs::run(&fake, volume, &Action::parse(action).unwrap()).unwrap_err()
    };
    let err = run("db", "replicate:h");
    assert_eq!(
        err.to_string(),
        "snapshot db@snap taken, but sending it to h failed: db>h: no such volume"
    );
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("db>h: no such volume"));
    // The snapshot the failed replication took is removed (upstream #95).
    assert!(fake.calls().contains(&"remove db@snap".to_string()));
    assert_eq!(
        run("db", "synchronize:a,b").to_string(),
        "snapshot db@snap taken, but synchronizing from a,b failed: db<a,b: no such volume"
    );
    assert_eq!(
        run("gone", "purge:1h:1d").to_string(),
        "purge failed: gone: no such volume"
    );
    // No pull into a volume that could not be snapshotted.
    let err = run("gone", "synchronize:h");
    assert!(matches!(err, JobError::Snapshot(_)), "{err:?}");
    assert_eq!(err.to_string(), "snapshot failed: gone: no such volume");
    assert!(!fake.calls().iter().any(|c| c.starts_with("sync gone")));
}

/// An unchanged volume: the snapshot job says so, a replication sends the
/// snapshot that holds its state, and a failed one removes nothing it did
/// not take.
#[test]
fn unchanged_volumes_cost_no_snapshot() {
    let fake = Fake::default();
    fake.unchanged.lock().unwrap().insert("db".into());
    let run = |action: &str| jobs::run(&fake, "db", &Action::parse(action).unwrap());
    assert_eq!(run("snapshot").unwrap(), "unchanged since db@snap");
    assert_eq!(run("replicate:h").unwrap(), "sent db@snap to h");
    // Sent and still unchanged: nothing to do, the peer is not asked.
    assert_eq!(
        run("replicate:h").unwrap(),
        "unchanged since db@snap, already on h"
    );
    assert_eq!(fake.count("send db@snap h"), 1, "{:?}", fake.calls());
    // Another peer has not got it yet.
    assert_eq!(run("replicate:k").unwrap(), "sent db@snap to k");
    fake.removed.lock().unwrap().insert("db>j".into());
    assert!(run("replicate:j").is_err());
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("remove")),
        "{:?}",
        fake.calls()
    );
}

/// A replicate round of an idle follower pulls and never snapshots or
/// sends.
#[test]
fn an_idle_follower_pulls_instead_of_pushing() {
    let fake = Fake::default();
    fake.idle.lock().unwrap().insert("db".into());
    let summary = jobs::run(&fake, "db", &Action::parse("replicate:h").unwrap()).unwrap();
    assert_eq!(summary, "idle, pulled: db from h is already here");
    assert_eq!(fake.calls(), vec!["prefetch db h".to_string()]);
}
