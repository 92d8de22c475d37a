//! The schedule file and the jobs on it: the CSV, bad requests, pauses,
//! restarts, skips, cron timers, failing and slow jobs, the daemon loop.

use super::*;

#[tokio::test]
async fn the_csv_is_the_references() {
    let h = Harness::new();
    h.schedule("snapshot", "60", "db");
    h.schedule("synchronize:h1,h2", "30", "db");
    h.schedule("purge:1h:1d:1w:4w:1y", "1440", "web");
    h.schedule("snapshot", "cron:0 */4 * * *", "web");
    assert_eq!(
        h.csv_text(),
        "db,snapshot,60,True\r\n\
         db,\"synchronize:h1,h2\",30,True\r\n\
         web,purge:1h:1d:1w:4w:1y,1440,True\r\n\
         web,snapshot,cron:0 */4 * * *,True\r\n"
    );
    // Update in place, pause, resume, delete: Python's dict order.
    assert_eq!(h.schedule("snapshot", "15", "db"), Change::Updated);
    assert_eq!(h.schedule("snapshot", "15", "db"), Change::Unchanged);
    assert_eq!(
        h.schedule("synchronize:h1,h2", "pause", "db"),
        Change::Paused
    );
    assert_eq!(
        h.schedule("synchronize:h1,h2", "pause", "db"),
        Change::Unchanged
    );
    assert_eq!(
        h.csv_text(),
        "db,snapshot,15,True\r\n\
         db,\"synchronize:h1,h2\",30,False\r\n\
         web,purge:1h:1d:1w:4w:1y,1440,True\r\n\
         web,snapshot,cron:0 */4 * * *,True\r\n"
    );
    let listed = h.sched.list().unwrap();
    let sync = &listed.jobs[1];
    assert!(!sync.active && sync.next_run.is_none());
    assert_eq!(listed.jobs[3].timer, "cron:0 */4 * * *");
    // Scheduling a paused job with a timer activates it again.
    assert_eq!(h.schedule("synchronize:h1,h2", "30", "db"), Change::Updated);
    assert!(h
        .csv_text()
        .contains("db,\"synchronize:h1,h2\",30,True\r\n"));
    assert_eq!(h.schedule("snapshot", "0", "db"), Change::Removed);
    assert_eq!(
        h.schedule("purge:1h:1d:1w:4w:1y", "delete", "web"),
        Change::Removed
    );
    // Deleting or pausing what does not exist is a no-op, as in the
    // reference (the deploy handler unschedules blindly).
    assert_eq!(h.schedule("snapshot", "0", "nope"), Change::Unchanged);
    assert_eq!(h.schedule("snapshot", "pause", "nope"), Change::Unchanged);
    assert_eq!(
        h.csv_text(),
        "db,\"synchronize:h1,h2\",30,True\r\nweb,snapshot,cron:0 */4 * * *,True\r\n"
    );
}

#[tokio::test]
async fn bad_requests_change_nothing() {
    let h = Harness::new();
    h.schedule("snapshot", "60", "db");
    let before = std::fs::read(h.csv()).unwrap();
    for (action, timer, name, needle) in [
        ("snap", "60", "db", "unknown action"),
        ("replicate:", "60", "db", "invalid host"),
        ("replicate:-oProxyCommand=x", "60", "db", "invalid host"),
        ("replicate:a b", "60", "db", "invalid host"),
        ("synchronize:h1,", "60", "db", "invalid host"),
        ("purge:1h/4:1d", "60", "db", "purge pattern"),
        ("snapshot", "-1", "db", "Invalid timer"),
        ("snapshot", "1.5", "db", "Invalid timer"),
        ("snapshot", "soon", "db", "Invalid timer"),
        ("snapshot", "", "db", "Invalid timer"),
        (
            "snapshot",
            "cron:0 0 * *",
            "db",
            "Invalid timer (cron expression",
        ),
        (
            "snapshot",
            "cron:99 * * * *",
            "db",
            "Invalid timer (cron expression",
        ),
        ("snapshot", "99999999999", "db", "too large"),
        (
            "snapshot",
            "60",
            "../etc",
            "Invalid characters in volume name",
        ),
        ("snapshot", "60", "a@b", "illegal"),
        ("snapshot", "60", "", "required"),
    ] {
        let err = h
            .sched
            .schedule(name, action, timer)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{action} {timer} {name}: {err}");
    }
    assert_eq!(std::fs::read(h.csv()).unwrap(), before);
}

#[tokio::test]
async fn pause_and_resume_one_job() {
    let h = Harness::new();
    h.schedule("snapshot", "60", "db");
    h.schedule("snapshot", "60", "web");
    h.tick_at(t0()).await;
    h.schedule("snapshot", "pause", "db");
    h.tick_at(t0() + minutes(60)).await;
    assert_eq!(h.fake.count("snapshot db"), 1);
    assert_eq!(h.fake.count("snapshot web"), 2);
    h.tick_at(t0() + minutes(200)).await;
    assert_eq!(h.fake.count("snapshot db"), 1);
    // Resumed while overdue: it runs at the next tick, once.
    h.schedule("snapshot", "resume", "db");
    h.tick_at(t0() + minutes(201)).await;
    h.tick_at(t0() + minutes(202)).await;
    assert_eq!(h.fake.count("snapshot db"), 2);
}

#[tokio::test]
async fn global_pause() {
    let h = Harness::new();
    h.schedule("snapshot", "60", "db");
    h.sched.pause_all().unwrap();
    assert!(!h.csv().exists());
    assert!(h.dir.path().join("config/schedule.csv.disabled").exists());
    let r = h.tick_at(t0()).await;
    assert!(r.paused && r.dispatched == 0);
    assert!(h.fake.calls().is_empty());
    assert_eq!(h.sched.list().unwrap_err().to_string(), GLOBALLY_PAUSED);
    let err = h.sched.schedule("db", "snapshot", "5").unwrap_err();
    assert_eq!(err.to_string(), GLOBALLY_PAUSED);
    // Pausing twice is harmless; a stray schedule.csv next to the disabled
    // one is not silently overwritten.
    h.sched.pause_all().unwrap();
    std::fs::write(h.csv(), "other,snapshot,5,True\r\n").unwrap();
    let err = h.sched.pause_all().unwrap_err().to_string();
    assert!(err.contains("both"), "{err}");
    let err = h.sched.resume_all().unwrap_err().to_string();
    assert!(err.contains("both"), "{err}");
    std::fs::remove_file(h.csv()).unwrap();

    h.sched.resume_all().unwrap();
    h.sched.resume_all().unwrap();
    assert_eq!(h.csv_text(), "db,snapshot,60,True\r\n");
    assert_eq!(h.tick_at(t0() + minutes(1)).await.dispatched, 1);
    assert_eq!(h.sched.list().unwrap().jobs.len(), 1);
}

#[tokio::test]
async fn restart_in_the_middle_keeps_the_rhythm() {
    let mut h = Harness::new();
    h.schedule("snapshot", "60", "db");
    h.schedule("purge:1h:1d", "1440", "db");
    h.schedule("snapshot", "cron:*/15 * * * *", "web");
    h.tick_at(t0()).await;
    h.tick_at(t0() + minutes(15)).await;
    assert_eq!(h.fake.calls().len(), 3);
    let history = h.dir.path().join("config/schedule.csv.state.json");

    // Restart 30 minutes later: nothing is overdue, nothing runs.
    h.restart();
    assert!(history.exists());
    assert_eq!(h.tick_at(t0() + minutes(30)).await.dispatched, 1); // web's :30
    assert_eq!(h.fake.count("snapshot db"), 1);
    assert_eq!(h.fake.count("purge db 1h:1d"), 1);
    // ... and db's snapshot does not wait a full period again either.
    assert_eq!(h.tick_at(t0() + minutes(60)).await.dispatched, 2);
    assert_eq!(h.fake.count("snapshot db"), 2);

    // A long outage: each overdue job runs once, not once per missed period.
    h.restart();
    let r = h.tick_at(t0() + minutes(3 * 1440)).await;
    assert_eq!(r.dispatched, 3);
    assert_eq!(h.fake.count("snapshot db"), 3);
    assert_eq!(h.fake.count("purge db 1h:1d"), 2);

    // A job added by hand while the daemon was down is due at the first
    // round after the restart (the first tick here).
    let mut text = h.csv_text();
    text.push_str("new,snapshot,60,True\r\n");
    std::fs::write(h.csv(), text).unwrap();
    h.restart();
    let r = h.tick_at(t0() + minutes(3 * 1440 + 1)).await;
    assert_eq!(r.dispatched, 1);
    assert_eq!(h.fake.count("snapshot new"), 1);
}

#[tokio::test]
async fn a_job_still_running_is_skipped_not_queued() {
    let h = Harness::new();
    h.schedule("snapshot", "10", "slow");
    h.fake.hold("slow");
    h.clock.set(t0());
    assert_eq!(h.sched.tick_at(t0()).dispatched, 1);
    // Due three more times while it runs: skipped each time.
    for m in [10, 20, 30] {
        let r = h.sched.tick_at(t0() + minutes(m));
        assert_eq!((r.dispatched, r.skipped), (0, 1), "at +{m}");
    }
    let job = h.job("slow", "snapshot");
    assert!(job.running);
    assert_eq!(job.skips, 3);
    h.fake.release("slow");
    h.sched.idle().await;
    // The skipped occurrences are consumed: no burst when it ends.
    assert_eq!(h.tick_at(t0() + minutes(35)).await.dispatched, 0);
    assert_eq!(h.fake.count("snapshot slow"), 1);
    assert_eq!(h.tick_at(t0() + minutes(40)).await.dispatched, 1);
    assert_eq!(h.fake.count("snapshot slow"), 2);
}

#[tokio::test]
async fn cron_timers() {
    let h = Harness::new();
    h.schedule("snapshot", "cron:*/15 * * * *", "db");
    h.schedule("snapshot", "cron:@daily", "web");
    // A new cron job waits for its first occurrence.
    let r = h.tick_at(t0() + TimeDelta::seconds(30)).await;
    assert_eq!(r.dispatched, 0);
    assert_eq!(r.next_due, Some(t0() + minutes(15)));
    assert_eq!(h.job("db", "snapshot").next_run, Some(t0() + minutes(15)));
    assert_eq!(h.tick_at(t0() + minutes(14)).await.dispatched, 0);
    assert_eq!(h.tick_at(t0() + minutes(15)).await.dispatched, 1);
    assert_eq!(h.tick_at(t0() + minutes(16)).await.dispatched, 0);
    // A late tick still runs the job once, then the grid resumes.
    assert_eq!(h.tick_at(t0() + minutes(47)).await.dispatched, 1);
    assert_eq!(h.job("db", "snapshot").next_run, Some(t0() + minutes(60)));
    assert_eq!(h.fake.count("snapshot db"), 2);
    assert_eq!(h.fake.count("snapshot web"), 0);
    assert_eq!(h.job("web", "snapshot").timer, "cron:@daily");
}

#[tokio::test]
async fn a_failing_job_does_not_stop_the_others() {
    let h = Harness::new();
    for v in ["a", "gone", "b"] {
        h.schedule("snapshot", "60", v);
        h.schedule("replicate:peer", "60", v);
    }
    h.fake.removed.lock().unwrap().insert("gone".into());
    assert_eq!(h.tick_at(t0()).await.dispatched, 6);
    for v in ["a", "b"] {
        assert_eq!(h.fake.count(&format!("snapshot {v}")), 2);
        assert_eq!(h.fake.count(&format!("send {v}@snap peer")), 1);
        assert_eq!(h.job(v, "snapshot").last_ok, Some(true));
    }
    let failed = h.job("gone", "replicate:peer");
    assert_eq!(failed.last_ok, Some(false));
    let result = failed.last_result.unwrap();
    assert!(
        result.starts_with("error: snapshot failed: gone: no such volume"),
        "{result}"
    );
    // A failed job waits for its next period; it is not retried every tick.
    assert_eq!(h.tick_at(t0() + minutes(1)).await.dispatched, 0);
    assert_eq!(h.tick_at(t0() + minutes(60)).await.dispatched, 6);
}

#[tokio::test]
async fn a_hand_edited_bad_line_is_reported_skipped_and_kept() {
    let h = Harness::new();
    std::fs::create_dir_all(h.csv().parent().unwrap()).unwrap();
    let bad = "web,snapshot,every hour,True";
    std::fs::write(
        h.csv(),
        format!("db,snapshot,60,True\n{bad}\n\"oops,snapshot,60\nweb2,snapshot,5,True\n"),
    )
    .unwrap();
    assert_eq!(h.tick_at(t0()).await.dispatched, 2);
    let listing = h.sched.list().unwrap();
    assert_eq!(listing.jobs.len(), 2);
    assert_eq!(listing.invalid.len(), 2);
    assert_eq!(listing.invalid[0].line, 2);
    assert_eq!(listing.invalid[0].text, bad);
    assert!(
        listing.invalid[0].error.contains("Invalid timer"),
        "{:?}",
        listing.invalid[0]
    );
    // An API write keeps the bad lines verbatim (and goes CRLF).
    h.schedule("snapshot", "30", "new");
    assert_eq!(
        h.csv_text(),
        format!("db,snapshot,60,True\r\n{bad}\r\n\"oops,snapshot,60\r\nweb2,snapshot,5,True\r\nnew,snapshot,30,True\r\n")
    );
    // Scheduling the broken job explicitly replaces its line.
    assert_eq!(h.schedule("snapshot", "60", "web"), Change::Updated);
    assert!(h.csv_text().contains("\r\nweb,snapshot,60,True\r\n"));
    assert_eq!(h.sched.list().unwrap().invalid.len(), 1);
    // A later hand edit is picked up at the next tick.
    let mut text = h.csv_text();
    text.push_str("late,snapshot,5,True\r\n");
    std::fs::write(h.csv(), text).unwrap();
    let r = h.tick_at(t0() + minutes(1)).await;
    assert_eq!(r.dispatched, 3); // late, new, web (web never ran)
    assert_eq!(h.fake.count("snapshot late"), 1);
}

#[tokio::test]
async fn slow_replications_do_not_delay_snapshots_and_pools_are_bounded() {
    let h = Harness::new();
    h.schedule("replicate:far", "60", "big");
    for i in 0..12 {
        h.schedule("snapshot", "60", &format!("v{i}"));
    }
    h.fake.hold("big>far");
    h.clock.set(t0());
    assert_eq!(h.sched.tick_at(t0()).dispatched, 13);
    // Every snapshot completes while the transfer is stuck.
    eventually(
        || (0..12).all(|i| h.fake.count(&format!("snapshot v{i}")) > 0) && h.sched.in_flight() <= 1,
        || format!("the snapshots, held up: {:?}", h.fake.calls()),
    )
    .await;
    assert!(h.job("big", "replicate:far").running);
    // Two pools of 2: at most 2 local jobs + the remote one at once.
    assert!(
        h.fake.max_concurrency() <= 3,
        "{}",
        h.fake.max_concurrency()
    );
    h.fake.release("big>far");
    h.sched.idle().await;
    assert_eq!(h.job("big", "replicate:far").last_ok, Some(true));
}

#[tokio::test]
async fn the_daemon_loop_dispatches_and_saves_history_on_stop() {
    let h = Harness::new();
    h.schedule("snapshot", "60", "db");
    h.schedule("replicate:far", "60", "big");
    h.fake.hold("big>far");
    let mut opts = SchedulerOptions::for_schedule(h.csv());
    opts.tick = Duration::from_millis(50);
    let sched = Scheduler::new(opts.clone(), h.fake.clone(), h.clock.clone());
    // The hand clock does not move by itself: on to the loop's first round.
    h.clock.set(t0() + TimeDelta::from_std(opts.tick).unwrap());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(sched.clone().run(stop_rx));
    eventually(
        || {
            h.fake.count("send big@snap far") > 0
                && h.fake.count("snapshot db") > 0
                && sched.in_flight() == 1
        },
        || {
            format!(
                "the snapshot to end, the transfer to start: {:?}",
                h.fake.calls()
            )
        },
    )
    .await;
    // Stopped, the loop waits for the stuck transfer (up to STOP_GRACE,
    // 25 s); released during that wait, the transfer's result is saved.
    stop.send(true).unwrap();
    let waits = tokio::time::timeout(Duration::from_millis(300), &mut task).await;
    assert!(
        waits.is_err(),
        "the loop ended without waiting for the transfer"
    );
    assert_eq!(sched.in_flight(), 1);
    h.fake.release("big>far");
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the loop stops")
        .unwrap();
    assert_eq!(sched.in_flight(), 0);
    let history: serde_json::Value = serde_json::from_slice(
        &std::fs::read(h.dir.path().join("config/schedule.csv.state.json")).unwrap(),
    )
    .unwrap();
    let jobs = history["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{history}");
    for job in jobs {
        assert_eq!(job["last_ok"], true, "{history}");
        assert!(job["last_run"].is_string());
    }
    // Once stopped, ticks do nothing.
    assert_eq!(sched.tick_at(t0() + minutes(600)).dispatched, 0);
}

#[tokio::test]
async fn stopping_drops_queued_jobs_which_stay_owed() {
    let h = Harness::new();
    h.schedule("snapshot", "60", "a");
    h.schedule("snapshot", "60", "b");
    h.fake.hold("a");
    let mut opts = SchedulerOptions::for_schedule(h.csv());
    opts.workers = 1;
    opts.tick = Duration::from_millis(50);
    let sched = Scheduler::new(opts.clone(), h.fake.clone(), h.clock.clone());
    h.clock.set(t0() + TimeDelta::from_std(opts.tick).unwrap());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sched.clone().run(stop_rx));
    eventually(
        || h.fake.count("snapshot a") == 1,
        || format!("the loop to start a: {:?}", h.fake.calls()),
    )
    .await;
    // b waits behind a in the single worker; stop while it waits: the
    // closed queue drops b (one job fewer in flight) while a still runs.
    assert_eq!(sched.in_flight(), 2);
    stop.send(true).unwrap();
    eventually(
        || sched.in_flight() == 1,
        || "the stop to drop b from the queue".into(),
    )
    .await;
    h.fake.release("a");
    task.await.unwrap();
    assert_eq!(h.fake.count("snapshot b"), 0);
    // After a restart, b is still owed (due at the first round); a is not.
    let restarted = Scheduler::new(opts, h.fake.clone(), h.clock.clone());
    let r = restarted.tick_at(t0() + minutes(1));
    assert_eq!(r.dispatched, 1);
    restarted.idle().await;
    assert_eq!(h.fake.count("snapshot b"), 1);
    assert_eq!(h.fake.count("snapshot a"), 1);
}
