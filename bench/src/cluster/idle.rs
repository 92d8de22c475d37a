//! The idle cost of owned volumes: a's daemon (OWNER_TTL 15, TIMER 60,
//! both defaults) owns 0, 10, 100, 1,000 volumes (each mounted with an
//! ID, a yearly replicate line naming b, follow=false); for each count,
//! over a window: the RPCs etcd's three members started (the sum of
//! `grpc_server_started_total` from each member's /metrics, both daemons'
//! requests: b's part is constant) and a's daemon's CPU (utime+stime of
//! /proc/<pid>/stat). The count reported is a's status `Cluster.Owned`.

use std::time::{Duration, Instant};

use super::ring::{Ring, YEARLY};

pub struct Idle {
    pub volumes: usize,
    pub window: Duration,
    /// RPCs started by etcd, per minute.
    pub etcd_per_minute: f64,
    /// a's daemon's CPU, percent of one core.
    pub cpu_percent: f64,
    /// b's daemon's CPU (one owned volume at most), for reference.
    pub b_cpu_percent: f64,
}

/// USER_HZ: /proc's clock ticks per second on Linux.
const TICKS: f64 = 100.0;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon's stat");
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime the 14th and stime the 15th of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat's comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// RPCs etcd's members started, summed.
fn etcd_rpcs(r: &Ring) -> f64 {
    [&r.a, &r.b, &r.c]
        .iter()
        .map(|node| {
            let out =
                r.n.exec(node, &["curl", "-sf", "http://127.0.0.1:2379/metrics"]);
            assert!(out.status.success(), "{node}'s etcd metrics: {out:?}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("grpc_server_started_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

pub fn run(r: &Ring, counts: &[usize], window: Duration) -> Vec<Idle> {
    let (a, b) = (r.a.clone(), r.b.clone());
    // The defaults of a production daemon (the harness runs the
    // scheduler every 2 s and logs at debug level).
    let env = ["BUTTERVOLUME_TIMER=60", "RUST_LOG=info"];
    r.cluster_mode(&a, 15, &env);
    r.cluster_mode(&b, 15, &env);
    let mut owned = 0;
    let mut out = Vec::new();
    for &count in counts {
        let start = Instant::now();
        while owned < count {
            let volume = format!("idle{owned}");
            r.create(&a, &volume, &r.b_ip, YEARLY, false);
            let err = r.mount(&a, &volume, "bench");
            assert!(err.is_empty(), "mount {volume}: {err}");
            owned += 1;
        }
        println!(
            "idle: {owned} volumes owned on a ({:.1} s to create and mount the new ones)",
            start.elapsed().as_secs_f64()
        );
        // Past the mounts' own requests and a keep-alive round.
        std::thread::sleep(Duration::from_secs(6));
        let (pa, pb) = (r.pid(&a), r.pid(&b));
        let (rpc0, ta0, tb0) = (etcd_rpcs(r), cpu_ticks(pa), cpu_ticks(pb));
        let began = Instant::now();
        // The measurement window itself.
        std::thread::sleep(window);
        let (rpc1, ta1, tb1) = (etcd_rpcs(r), cpu_ticks(pa), cpu_ticks(pb));
        let secs = began.elapsed().as_secs_f64();
        let listed = r.cluster(&a)["Owned"].as_array().map_or(0, Vec::len);
        let idle = Idle {
            volumes: listed,
            window: began.elapsed(),
            etcd_per_minute: (rpc1 - rpc0) * 60.0 / secs,
            cpu_percent: (ta1 - ta0) as f64 / TICKS / secs * 100.0,
            b_cpu_percent: (tb1 - tb0) as f64 / TICKS / secs * 100.0,
        };
        println!(
            "idle {owned}: {:.1} etcd RPCs/min, a {:.3} % CPU, b {:.3} % CPU",
            idle.etcd_per_minute, idle.cpu_percent, idle.b_cpu_percent
        );
        out.push(idle);
    }
    out
}
