//! Ours: the scheduler with fake jobs that only record when they start
//! (optionally sleeping to simulate work), so what is measured is the
//! scheduler itself:
//!
//! 1. tick cost, with a hand-set clock: the first tick (parse the CSV and
//!    dispatch every job), a tick where all are due again (CSV cached), a
//!    tick where nothing is due, and the history write;
//! 2. the daemon's real loop and clock: every job made due at the same
//!    instant T through the persisted history; lag from T to each job's
//!    dispatch (handed to the pool) and start (running on a worker);
//! 3. idle CPU of that loop between ticks (TIMER=1 and TIMER=60).
//!
//! Logging is on (INFO, formatted into a sink) as in the daemon.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buttervolume::schedule::history::{self, RunRecord};
use buttervolume::schedule::{
    ActionFailure, JobActions, ManualClock, Scheduler, SchedulerOptions, SystemClock, Taken,
};
use chrono::{DateTime, TimeDelta, Utc};
use nix::sys::resource::{getrusage, UsageWho};

use super::JOBS;
use crate::report::{ms, Samples, Table};

/// Simulated duration of each action.
#[derive(Clone, Copy)]
struct Work {
    snapshot: Duration,
    send: Duration,
    purge: Duration,
}

const NO_WORK: Work = Work {
    snapshot: Duration::ZERO,
    send: Duration::ZERO,
    purge: Duration::ZERO,
};

/// Records each job's start time (its first action call).
struct Fake {
    work: Work,
    starts: Mutex<Vec<DateTime<Utc>>>,
    done: AtomicUsize,
}

impl Fake {
    fn new(work: Work, jobs: usize) -> Arc<Fake> {
        Arc::new(Fake {
            work,
            starts: Mutex::new(Vec::with_capacity(jobs)),
            done: AtomicUsize::new(0),
        })
    }

    fn start(&self) {
        let now = Utc::now();
        if let Ok(mut starts) = self.starts.lock() {
            starts.push(now);
        }
    }

    fn take_starts(&self) -> Vec<DateTime<Utc>> {
        self.starts
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

fn pause(d: Duration) {
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}

impl JobActions for Fake {
    fn snapshot(&self, volume: &str) -> Result<Option<Taken>, ActionFailure> {
        self.start();
        pause(self.work.snapshot);
        Ok(Some(Taken {
            name: format!("{volume}@now"),
            created: true,
        }))
    }
    fn idle_follower(&self, _volume: &str) -> bool {
        false
    }
    fn prefetch(&self, _volume: &str, _host: &str) -> Result<String, ActionFailure> {
        Ok(String::new())
    }
    fn remove_snapshot(&self, _snapshot: &str) -> Result<(), ActionFailure> {
        Ok(())
    }
    fn send(&self, _snapshot: &str, _host: &str) -> Result<(), ActionFailure> {
        pause(self.work.send);
        Ok(())
    }
    fn already_sent(&self, _snapshot: &str, _host: &str) -> bool {
        false
    }
    fn purge(&self, _volume: &str, _pattern: &str) -> Result<Vec<String>, ActionFailure> {
        self.start();
        pause(self.work.purge);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(vec![])
    }
    fn sync(&self, _volume: &str, _hosts: &[String]) -> Result<(), ActionFailure> {
        Ok(())
    }
    fn backup(&self, _volume: &str, _target: &str) -> Result<String, ActionFailure> {
        Ok(String::new())
    }
    fn check_backups(&self, _target: &str) -> Result<String, ActionFailure> {
        Ok(String::new())
    }
}

pub(super) fn write_schedule(path: &Path, volumes: usize) {
    let mut text = String::new();
    for v in 0..volumes {
        for (action, minutes) in JOBS {
            text.push_str(&format!("vol{v:04},{action},{minutes},True\r\n"));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating the bench dir");
    }
    std::fs::write(path, text).expect("writing schedule.csv");
}

/// A history in which every job is due exactly at `due`.
fn write_history(path: &Path, volumes: usize, due: DateTime<Utc>) {
    let mut records = Vec::new();
    for v in 0..volumes {
        for (action, minutes) in JOBS {
            let record = RunRecord {
                seen: Some(due - TimeDelta::days(2)),
                last_run: Some(due - TimeDelta::minutes(minutes)),
                ..RunRecord::default()
            };
            records.push(((format!("vol{v:04}"), action.to_string()), record));
        }
    }
    history::save(path, records.iter().map(|(k, r)| (k, r))).expect("writing the history");
}

/// User + system CPU time of this process, all threads.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Lags of `starts` after `due` (zero when earlier).
fn lags(starts: &[DateTime<Utc>], due: DateTime<Utc>) -> Samples {
    Samples(
        starts
            .iter()
            .map(|s| (*s - due).to_std().unwrap_or(Duration::ZERO))
            .collect(),
    )
}

fn one(d: Duration) -> String {
    ms(d.as_secs_f64() * 1e3)
}

fn median_max(s: &Samples) -> String {
    format!("median {}, max {}", ms(s.p50()), ms(s.max()))
}

async fn tick_costs(volumes: usize, workers: usize) {
    let jobs = volumes * JOBS.len();
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("config/schedule.csv");
    write_schedule(&csv, volumes);
    let fake = Fake::new(NO_WORK, jobs);
    let t0 = Utc::now();
    let mut opts = SchedulerOptions::for_schedule(csv);
    opts.workers = workers;
    // A new job first runs at the scheduler's next round: the scheduler
    // starts one round before t0, so every job is due at t0.
    let round = TimeDelta::from_std(opts.tick).expect("a round fits");
    let clock = Arc::new(ManualClock::new(t0 - round));
    let sched = Scheduler::new(opts, fake.clone(), clock.clone());
    clock.set(t0);

    let bytes = std::fs::read(sched.options().schedule.clone()).expect("reading the CSV");
    let started = Instant::now();
    let parsed = buttervolume::schedule::csv::parse(&bytes);
    let parse = started.elapsed();
    assert_eq!(parsed.jobs().count(), jobs);

    let started = Instant::now();
    let wall = Utc::now();
    let report = sched.tick_at(t0);
    let cold = started.elapsed();
    sched.idle().await;
    let all_ran = started.elapsed();
    assert_eq!(
        report.dispatched, jobs,
        "every job is due at the first tick"
    );
    let start_lag = lags(&fake.take_starts(), wall);
    let mut t = Table::new(&["tick", "duration"]);
    let first = format!("first tick: parse schedule.csv + dispatch {jobs} due jobs");
    t.row(vec![first, one(cold)]);
    let parsing = format!("(of which parsing the {jobs}-line CSV, measured apart)");
    t.row(vec![parsing, one(parse)]);
    let due = due_again_ticks(&sched, &clock, t0, jobs).await;
    let again = format!("all {jobs} due again (CSV cached), 20 rounds");
    t.row(vec![again, median_max(&due)]);
    let idle = nothing_due_ticks(&sched, t0 + TimeDelta::minutes(1440 * 20 + 1));
    let nothing = "nothing due (earliest due time cached), 200 rounds".to_string();
    t.row(vec![nothing, median_max(&idle)]);
    let started = Instant::now();
    sched.flush().expect("history write");
    let write = format!("(off the tick) history write, {jobs} jobs, atomic + fsync");
    t.row(vec![write, one(started.elapsed())]);
    println!("### 1. Tick cost ({jobs} jobs, hand-set clock)\n\n{t}");
    println!(
        "First tick, zero-cost jobs: all {jobs} started within {} (median {}), all finished after {}.\n",
        ms(start_lag.max()),
        ms(start_lag.p50()),
        one(all_ran)
    );
}

/// 20 ticks, a day apart from `t0`, in which all `jobs` are due again.
async fn due_again_ticks(
    sched: &Scheduler,
    clock: &ManualClock,
    t0: DateTime<Utc>,
    jobs: usize,
) -> Samples {
    let mut ticks = Samples::default();
    for round in 1..=20 {
        let at = t0 + TimeDelta::minutes(1440 * round);
        clock.set(at);
        let started = Instant::now();
        let report = sched.tick_at(at);
        ticks.push(started.elapsed());
        assert_eq!(report.dispatched, jobs);
        sched.idle().await;
    }
    ticks
}

/// 200 ticks at `quiet`, when nothing is due.
fn nothing_due_ticks(sched: &Scheduler, quiet: DateTime<Utc>) -> Samples {
    let mut ticks = Samples::default();
    for _ in 0..200 {
        let started = Instant::now();
        let report = sched.tick_at(quiet);
        ticks.push(started.elapsed());
        assert_eq!(report.dispatched, 0);
    }
    ticks
}

/// One run of the real loop: a row of table 2, pushed into `loops`;
/// with zero-cost jobs also the idle CPU rows, pushed into `idle`.
async fn real_loop(
    volumes: usize,
    workers: usize,
    work: Work,
    label: &str,
    loops: &mut Table,
    idle_cpu: &mut Table,
) {
    let jobs = volumes * JOBS.len();
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("config/schedule.csv");
    write_schedule(&csv, volumes);
    let mut opts = SchedulerOptions::for_schedule(csv);
    opts.workers = workers;
    opts.tick = Duration::from_secs(60);
    let due = Utc::now() + TimeDelta::milliseconds(1500);
    write_history(&opts.history, volumes, due);
    let fake = Fake::new(work, jobs);
    let sched = Scheduler::new(opts, fake.clone(), Arc::new(SystemClock));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sched.clone().run(stop_rx));
    let deadline = Instant::now() + Duration::from_secs(120);
    // Every job is dispatched in the tick that wakes at `due`: the last
    // LastRun written by that tick is the dispatch time.
    while fake.done.load(Ordering::SeqCst) < volumes
        || fake.starts.lock().map(|s| s.len()).unwrap_or(0) < jobs
        || sched.in_flight() > 0
    {
        assert!(Instant::now() < deadline, "jobs did not all run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let finished = Utc::now();
    let listing = sched.list().expect("listing");
    let dispatch = Samples(
        listing
            .jobs
            .iter()
            .filter_map(|j| j.last_run)
            .map(|t| (t - due).to_std().unwrap_or(Duration::ZERO))
            .collect(),
    );
    let start = lags(&fake.take_starts(), due);
    loops.row(vec![
        label.to_string(),
        format!("{} / {}", ms(dispatch.p50()), ms(dispatch.max())),
        format!(
            "{} / {} / {}",
            ms(start.p50()),
            ms(start.pct(99.0)),
            ms(start.max())
        ),
        one((finished - due).to_std().unwrap_or(Duration::ZERO)),
    ]);

    let idle = work.snapshot.is_zero();
    if idle {
        // Idle: everything ran, the next job is due in an hour. First let
        // the coalesced history write happen and the burst's idle blocking
        // threads expire (tokio keeps them 10 s): their exit is not the
        // loop's idle cost.
        tokio::time::sleep(Duration::from_secs(11)).await;
        idle_cpu.row(measure_idle("TIMER=60").await);
    }
    let _ = stop.send(true);
    let _ = task.await;
    if idle {
        idle_cpu.row(idle_with_timer_1(sched.options(), &fake).await);
    }
}

/// The idle CPU with TIMER=1: the loop wakes every second to look for hand
/// edits and re-evaluates all jobs.
async fn idle_with_timer_1(opts: &SchedulerOptions, fake: &Arc<Fake>) -> Vec<String> {
    let mut opts = opts.clone();
    opts.tick = Duration::from_secs(1);
    let sched = Scheduler::new(opts, fake.clone(), Arc::new(SystemClock));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sched.run(stop_rx));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = measure_idle("TIMER=1").await;
    let _ = stop.send(true);
    let _ = task.await;
    row
}

/// The CPU this process uses over a 10 s window: a row of table 3.
async fn measure_idle(label: &str) -> Vec<String> {
    let window = Duration::from_secs(10);
    let before = cpu_time();
    tokio::time::sleep(window).await;
    let used = cpu_time().saturating_sub(before);
    vec![
        label.to_string(),
        format!("{} over {} s", one(used), window.as_secs()),
        format!("{:.4} %", used.as_secs_f64() / window.as_secs_f64() * 100.0),
    ]
}

/// Runs the three parts, printing tables 1 and 2; returns table 3.
pub fn run(volumes: usize, workers: usize) -> Table {
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        println!(
            "## Ours: {volumes} volumes × {} jobs, {workers} workers per pool, {} CPUs\n",
            JOBS.len(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        tick_costs(volumes, workers).await;
        let mut loops = Table::new(&[
            "simulated work",
            "dispatch lag median / max",
            "start lag median / p99 / max",
            "T → all done",
        ]);
        let mut idle = Table::new(&["TIMER", "CPU time over window", "CPU"]);
        real_loop(volumes, workers, NO_WORK, "none", &mut loops, &mut idle).await;
        let work = Work {
            snapshot: Duration::from_millis(1),
            send: Duration::from_millis(5),
            purge: Duration::from_millis(1),
        };
        let label = "snapshot 1 ms, send 5 ms, purge 1 ms";
        real_loop(volumes, workers, work, label, &mut loops, &mut idle).await;
        println!("### 2. Daemon loop, real clock: all jobs due at the same instant T\n\n{loops}");
        println!("### 3. Idle CPU of the loop (nothing due for an hour)\n");
        idle
    })
}
