//! The scheduler: driven with a hand-set clock and fake job actions (no real
//! minutes are slept), then once end to end on a real daemon and real btrfs
//! with a one-second TIMER.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use buttervolume::schedule::jobs;
use buttervolume::schedule::{
    Action, ActionFailure, Change, JobActions, JobError, ManualClock, Scheduler, SchedulerOptions,
    SelfHost, Taken, GLOBALLY_PAUSED,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use testkit::wait::Lazy;
use testkit::{wait_for, wait_until};

mod end_to_end;
mod lines;
mod reference;
mod rounds;
mod swarm_pair;

/// Job actions that record calls, fail for "removed" volumes and can hold
/// chosen volumes until released; a send is known to them as
/// `<volume>><host>`, a sync as `<volume><<hosts>`. The one fake of
/// [`JobActions`] the tests use.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    removed: Mutex<HashSet<String>>,
    /// Volumes unchanged since their newest snapshot.
    unchanged: Mutex<HashSet<String>>,
    /// Volumes that follow their container and are not in use here.
    idle: Mutex<HashSet<String>>,
    /// `<snapshot>><host>` of the sends that succeeded.
    sent: Mutex<HashSet<String>>,
    held: Mutex<HashSet<String>>,
    released: Condvar,
    running: Mutex<(usize, usize)>,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self, call: &str) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    fn hold(&self, volume: &str) {
        self.held.lock().unwrap().insert(volume.into());
    }

    fn release(&self, volume: &str) {
        self.held.lock().unwrap().remove(volume);
        self.released.notify_all();
    }

    /// Records the call, tracks concurrency, blocks while held.
    fn enter(&self, call: String, volume: &str) -> Result<(), ActionFailure> {
        self.calls.lock().unwrap().push(call);
        {
            let mut r = self.running.lock().unwrap();
            r.0 += 1;
            r.1 = r.1.max(r.0);
        }
        let mut held = self.held.lock().unwrap();
        while held.contains(volume) {
            held = self.released.wait(held).unwrap();
        }
        drop(held);
        std::thread::sleep(Duration::from_millis(2));
        self.running.lock().unwrap().0 -= 1;
        if self.removed.lock().unwrap().contains(volume) {
            return Err(format!("{volume}: no such volume").into());
        }
        Ok(())
    }

    fn max_concurrency(&self) -> usize {
        self.running.lock().unwrap().1
    }
}

impl JobActions for Fake {
    fn snapshot(&self, volume: &str) -> Result<Option<Taken>, ActionFailure> {
        self.enter(format!("snapshot {volume}"), volume)?;
        Ok(Some(Taken {
            name: format!("{volume}@snap"),
            created: !self.unchanged.lock().unwrap().contains(volume),
        }))
    }
    fn idle_follower(&self, volume: &str) -> bool {
        self.idle.lock().unwrap().contains(volume)
    }
    fn prefetch(&self, volume: &str, host: &str) -> Result<String, ActionFailure> {
        self.enter(format!("prefetch {volume} {host}"), volume)?;
        Ok(format!("{volume} from {host} is already here"))
    }
    fn remove_snapshot(&self, snapshot: &str) -> Result<(), ActionFailure> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("remove {snapshot}"));
        Ok(())
    }
    fn send(&self, snapshot: &str, host: &str) -> Result<(), ActionFailure> {
        let volume = snapshot.split('@').next().unwrap_or_default();
        self.enter(
            format!("send {snapshot} {host}"),
            &format!("{volume}>{host}"),
        )?;
        self.sent
            .lock()
            .unwrap()
            .insert(format!("{snapshot}>{host}"));
        Ok(())
    }
    fn already_sent(&self, snapshot: &str, host: &str) -> bool {
        self.sent
            .lock()
            .unwrap()
            .contains(&format!("{snapshot}>{host}"))
    }
    fn purge(&self, volume: &str, pattern: &str) -> Result<Vec<String>, ActionFailure> {
        self.enter(format!("purge {volume} {pattern}"), volume)?;
        Ok(vec![format!("{volume}@old")])
    }
    fn sync(&self, volume: &str, hosts: &[String]) -> Result<(), ActionFailure> {
        let hosts = hosts.join(",");
        self.enter(
            format!("sync {volume} {hosts}"),
            &format!("{volume}<{hosts}"),
        )
    }
    fn backup(&self, volume: &str, target: &str) -> Result<String, ActionFailure> {
        self.enter(format!("backup {volume} {target}"), volume)?;
        Ok(format!("backed up {volume} to {target}"))
    }
    fn check_backups(&self, target: &str) -> Result<String, ActionFailure> {
        self.enter(format!("check-backups {target}"), target)?;
        Ok("no errors were found".into())
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-04T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn minutes(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

/// How long a test waits for something that takes milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// Waits (yielding to the runtime) until `done`; after [`WAIT`], fails
/// saying what it waited for.
async fn eventually(mut done: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    let polling = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(WAIT, polling).await.is_err() {
        panic!("waited {WAIT:?} in vain for {}", what());
    }
}

/// TIMER of the harness's schedulers (the default): the time between two
/// rounds.
const ROUND: TimeDelta = TimeDelta::seconds(60);

/// A scheduler over a private schedule file, with a fake and a hand clock.
/// It starts one round before [`t0`] and the clock is then set to `t0`, its
/// first round: jobs scheduled then are due at once (a job that never ran
/// waits for the next round, as in the reference, and this is one).
struct Harness {
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    clock: Arc<ManualClock>,
    sched: Scheduler,
}

impl Harness {
    fn new() -> Harness {
        Harness::on(SelfHost::nobody())
    }

    /// A harness whose node is `me` (its `replicate:` lines naming it are
    /// ignored).
    fn on(me: SelfHost) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let clock = Arc::new(ManualClock::new(t0() - ROUND));
        let sched = Self::scheduler(dir.path(), &fake, &clock, &me);
        clock.set(t0());
        Harness {
            dir,
            fake,
            clock,
            sched,
        }
    }

    fn scheduler(
        dir: &Path,
        fake: &Arc<Fake>,
        clock: &Arc<ManualClock>,
        me: &SelfHost,
    ) -> Scheduler {
        let mut opts = SchedulerOptions::for_schedule(dir.join("config/schedule.csv"));
        opts.workers = 2;
        opts.self_host = me.clone();
        Scheduler::new(opts, fake.clone(), clock.clone())
    }

    /// A new scheduler on the same files: a daemon restart.
    fn restart(&mut self) {
        self.sched.flush().unwrap();
        let me = self.sched.options().self_host.clone();
        self.sched = Self::scheduler(self.dir.path(), &self.fake, &self.clock, &me);
    }

    fn csv(&self) -> PathBuf {
        self.dir.path().join("config/schedule.csv")
    }

    fn csv_text(&self) -> String {
        std::fs::read_to_string(self.csv()).unwrap()
    }

    fn schedule(&self, action: &str, timer: &str, name: &str) -> Change {
        self.sched.schedule(name, action, timer).unwrap()
    }

    /// Sets the clock, ticks, waits for the dispatched jobs to finish.
    async fn tick_at(&self, at: DateTime<Utc>) -> buttervolume::schedule::TickReport {
        self.clock.set(at);
        let report = self.sched.tick_at(at);
        self.sched.idle().await;
        report
    }

    fn job(&self, name: &str, action: &str) -> buttervolume::schedule::JobView {
        self.sched
            .list()
            .unwrap()
            .jobs
            .into_iter()
            .find(|j| j.name == name && j.action == action)
            .unwrap_or_else(|| panic!("no job {action} {name}"))
    }
}
