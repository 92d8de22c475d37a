//! Data lost on failover: an app on a appends a sequence number to
//! `log` every 100 ms in a volume a owns, whose replicate line to b runs
//! every `minutes` minutes (the scheduler's timer in minutes: its cron
//! timers are 5-field, minute resolution, so a minute is the shortest
//! interval). An interval and a half after a first replication landed, a
//! is lost (daemon killed, link cut, app stopped at the same instant); b takes it over from its freshest replica. Lost = the last
//! number the app wrote minus the last one b has.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::wait::wait_for_every;

use super::ring::Ring;

pub struct Rpo {
    pub minutes: u64,
    pub written: u64,
    pub on_b: u64,
    /// The latest replication seen landed (its marker), before the loss.
    pub replica_age: Duration,
    pub takeover: Duration,
}

pub fn run(r: &Ring, minutes: u64) -> Rpo {
    let volume = "rpo";
    r.pair_volume(volume, &minutes.to_string(), false);
    let err = r.mount(&r.a, volume, "bench");
    assert!(err.is_empty(), "mount rpo on a: {err}");
    let path = r.n.data(&r.a).join(format!("volumes/{volume}/log"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("the app's log");
    let last = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let interval = Duration::from_secs(60 * minutes);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                if writeln!(file, "{i}").is_ok() {
                    last.store(i, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // A first round landed: from then on, the line's interval. A
        // round replaces the previous marker: a new name is a new round.
        let markers = || r.n.markers(&r.a, &r.b_ip);
        let mut seen = wait_for_every(
            "a first replication",
            60 * minutes + 120,
            Duration::from_millis(100),
            || Some(markers()).filter(|m| !m.is_empty()),
        );
        let mut landed = Instant::now();
        // The loss: an interval and a half after the first round, so about
        // half an interval after the latest one (the average loss).
        let until = landed + interval + interval / 2;
        while Instant::now() < until {
            let now = markers();
            if now != seen {
                seen = now;
                landed = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
        r.n.kill(&r.a);
        r.n.link(&r.a, "down");
        let cut = Instant::now();
        let replica_age = landed.elapsed();
        let mut errors = 0;
        while !r.mount(&r.b, volume, "bench").is_empty() {
            errors += 1;
            assert!(errors < 100, "b never took rpo over");
        }
        let takeover = cut.elapsed();
        let on_b = r
            .read(&r.b, &format!("volumes/{volume}/log"))
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        Rpo {
            minutes,
            written: last.load(Ordering::SeqCst),
            on_b,
            replica_age,
            takeover,
        }
    })
}
