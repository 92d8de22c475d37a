//! Node loss, timed from the cut (bench clock):
//!
//! - **kill**: a's daemon killed (-9) and its link cut; b's raw Mount of
//!   a volume a owned is repeated until it answers successfully (each
//!   Mount itself waits up to `OWNER_TTL` + 1 s for a's lease).
//! - **partition**: a's link cut, its daemon alive; a's status polled
//!   every 50 ms until `Cluster.Fenced` lists the volume, while b's Mount
//!   is repeated as above: the fence must come before the takeover.
//! - **pair mode**: the same kill without etcd, volumes with follow=true
//!   (the follow is what refuses a Mount that cannot ask the peer for a
//!   newer state): b's Mount is refused until its replicate line to a is
//!   paused by hand; then b mounts its own copy as it is (the replica
//!   that landed is not restored: that is `restore`, by hand too). In
//!   cluster mode the volumes have follow=false: a takeover restores the
//!   freshest replica whatever the follow option.

use std::time::{Duration, Instant};

use crate::report::Samples;

use super::ring::{Ring, YEARLY};

/// One partition: (cut to a fenced, cut to b's Mount answered).
pub struct Partition {
    pub fenced: Duration,
    pub takeover: Duration,
}

/// Repeats b's Mount of `volume` until it succeeds: the time from `cut`
/// and the errors met on the way.
fn mount_until_ok(r: &Ring, volume: &str, cut: Instant) -> (Duration, Vec<String>) {
    let mut errors = Vec::new();
    loop {
        let err = r.mount(&r.b, volume, "bench");
        if err.is_empty() {
            return (cut.elapsed(), errors);
        }
        assert!(
            cut.elapsed() < Duration::from_secs(120),
            "{volume}: b's Mount still refused 120 s after the loss: {errors:?}"
        );
        errors.push(err);
    }
}

/// `runs` kills of a's daemon with its link cut: cut to b's Mount answered.
pub fn kills(r: &Ring, ttl: u64, runs: usize) -> Samples {
    let mut s = Samples::default();
    for k in 0..runs {
        let volume = format!("kill{ttl}x{k}");
        r.pair_volume(&volume, YEARLY, false);
        r.owned_on_a_with_replica(&volume);
        let cut = Instant::now();
        r.n.kill(&r.a);
        r.n.link(&r.a, "down");
        let (took, errors) = mount_until_ok(r, &volume, cut);
        println!(
            "kill TTL {ttl} run {k}: b's Mount answered after {:.2} s ({} refusals first)",
            took.as_secs_f64(),
            errors.len()
        );
        s.push(took);
        r.a_back(true, ttl);
    }
    s
}

/// `runs` partitions of a (link down, daemon alive).
pub fn partitions(r: &Ring, ttl: u64, runs: usize) -> Vec<Partition> {
    let mut out = Vec::new();
    for k in 0..runs {
        let volume = format!("cut{ttl}x{k}");
        r.pair_volume(&volume, YEARLY, false);
        r.owned_on_a_with_replica(&volume);
        let cut = Instant::now();
        r.n.link(&r.a, "down");
        let (fenced, (takeover, _)) = std::thread::scope(|s| {
            let b = s.spawn(|| mount_until_ok(r, &volume, cut));
            let fenced = loop {
                let listed = r.cluster(&r.a)["Fenced"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|v| v == volume.as_str()));
                if listed {
                    break cut.elapsed();
                }
                assert!(
                    cut.elapsed() < Duration::from_secs(120),
                    "{volume}: a not fenced 120 s after its link went down"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            (fenced, b.join().unwrap())
        });
        println!(
            "partition TTL {ttl} run {k}: a fenced after {:.2} s, b's Mount answered after {:.2} s",
            fenced.as_secs_f64(),
            takeover.as_secs_f64()
        );
        out.push(Partition { fenced, takeover });
        r.a_back(false, ttl);
    }
    out
}

/// Pair mode, one run per `runs`: (cut to b's first refusal, its error;
/// pause to b's Mount answered).
pub struct PairLoss {
    pub refused: Samples,
    pub error: String,
    pub after_pause: Samples,
}

/// The daemons must be in pair mode (no ETCD_ENDPOINTS).
pub fn pair_mode(r: &Ring, runs: usize) -> PairLoss {
    let mut p = PairLoss {
        refused: Samples::default(),
        error: String::new(),
        after_pause: Samples::default(),
    };
    for k in 0..runs {
        let volume = format!("pair{k}");
        r.pair_volume(&volume, YEARLY, true);
        r.owned_on_a_with_replica(&volume);
        let cut = Instant::now();
        r.n.kill(&r.a);
        r.n.link(&r.a, "down");
        let err = r.mount(&r.b, &volume, "bench");
        p.refused.push(cut.elapsed());
        assert!(!err.is_empty(), "pair mode: b mounted {volume} at once");
        p.error = err;
        let line = format!("replicate:{}", r.a_ip);
        let paused = Instant::now();
        let out = r.n.cli(&r.b, &["schedule", &line, "pause", &volume]);
        assert!(out.status.success(), "pause: {out:?}");
        let err = r.mount(&r.b, &volume, "bench");
        assert!(
            err.is_empty(),
            "pair mode: b's Mount after the pause: {err}"
        );
        p.after_pause.push(paused.elapsed());
        println!(
            "pair mode run {k}: refused after {:.2} s, mounted {:.2} s after the pause",
            p.refused.0[k].as_secs_f64(),
            p.after_pause.0[k].as_secs_f64()
        );
        r.n.link(&r.a, "up");
        r.n.start(&r.a);
    }
    p
}
