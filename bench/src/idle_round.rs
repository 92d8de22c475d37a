//! `idle-round`: what a scheduler round costs when nothing changed.
//! VOLUMES volumes (default 1000), each with a `replicate:<peer>` line
//! every minute, on two throw-away nodes (bir1 -> bir2, our daemon on both,
//! our forced command on bir2).
//!
//! Setup: VOLUMES volumes on bir1, each holding a 4 KiB file, each
//! scheduled `replicate:<bir2>` every minute and mounted (`Mount`, as
//! Docker does for a running container); the first round sends every
//! volume in full (waited for: every sent marker present). Then, each
//! phase starting 20 s after a minute boundary so its window holds ROUNDS
//! whole rounds:
//!
//! - in use: every volume still mounted, ROUNDS rounds: each volume is
//!   unchanged since a snapshot the peer confirmed;
//! - changed (one round): CHANGED volumes get 1 MiB more each; the next
//!   round sends those incrementally. The round's length is taken from
//!   here: the sent markers polled every 50 ms (first to last), plus the
//!   first send job's own duration (its `Status` job record); the median of
//!   the send jobs' durations (the same records) and the SSH sessions
//!   opened in the round;
//! - idle followers: every volume unmounted (each now follows its
//!   container, FOLLOW on), ROUNDS rounds: a round asks the peer for
//!   anything new (one `list-newest` per round) and sends nothing.
//!
//! Per phase: bir1's daemon CPU (utime + stime of it and its reaped
//! children, `/proc/<pid>/stat`) as % of one core; the machine's busy CPU
//! (steal excluded; bir2's sshd and forced commands too); snapshots made;
//! SSH sessions opened by bir1 (its metrics page); commands the peer ran
//! (lines of bir2's forced-command log).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use buttervolume::api::{path, CreateRequest, MountRequest, ScheduleRequest, StatusReply};
use clap::Args;
use testkit::metrics::{free_port, scrape};
use testkit::wait::wait_for_every;

use crate::app_data;
use crate::cpu::Cpu;
use crate::pair::{Pair, Program};
use crate::report::{Samples, Table};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 1000)]
    volumes: usize,
    #[arg(long, default_value_t = 2)]
    rounds: u64,
    #[arg(long, default_value_t = 100)]
    changed: usize,
}

struct Bench {
    p: Pair,
    port: u16,
    pid: u32,
}

fn name(i: usize) -> String {
    format!("v{i:04}")
}

impl Bench {
    fn markers(&self) -> BTreeSet<String> {
        let suffix = format!("@{}", self.p.ip);
        testkit::entries(&self.p.data(&self.p.a, "snapshots"))
            .into_iter()
            .filter(|e| e.ends_with(&suffix))
            .collect()
    }

    fn snapshots(&self) -> usize {
        testkit::entries(&self.p.data(&self.p.a, "snapshots"))
            .iter()
            .filter(|e| e.starts_with('v') && e.matches('@').count() == 1)
            .count()
    }

    fn sessions(&self) -> f64 {
        let page = scrape(&self.p.a, self.port);
        page.get(
            "buttervolume_ssh_sessions_opened_total",
            &[("peer", &self.p.ip)],
        )
        .unwrap_or(0.0)
    }

    /// utime + stime + cutime + cstime of bir1's daemon, in seconds.
    fn daemon_cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let f: Vec<f64> = after
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|v| v.parse().unwrap())
            .collect();
        f.iter().sum::<f64>() / 100.0
    }

    fn peer_commands(&self) -> usize {
        let log = self.p.data(&self.p.b, "state/ssh-command.log");
        std::fs::read_to_string(log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn all(&self, request_path: &str, n: usize, f: impl Fn(String) -> serde_json::Value) {
        for i in 0..n {
            self.p.n.ok(&self.p.a, request_path, f(name(i)));
        }
    }
}

/// Sleeps until `offset` seconds past the next minute boundary (the
/// scheduler's rounds start on them): a window then holds whole rounds.
fn align(offset: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::thread::sleep(Duration::from_secs(60 - now % 60 + offset));
}

pub fn run(o: &Options) -> Table {
    let p = Pair::up("bir", "4G", Program::Ours, &[]);
    let port = free_port(&p.a);
    let metrics = format!("BUTTERVOLUME_METRICS_ADDR=127.0.0.1:{port}");
    p.restart(&p.a.clone(), Program::Ours, &[&metrics]);
    let pid = std::fs::read_to_string(format!("/run/bvnodes/{}/daemon.pid", p.a))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let b = Bench { p, port, pid };
    let action = format!("replicate:{}", b.p.ip);
    eprintln!("setup: {} volumes, {action} every minute", o.volumes);
    for i in 0..o.volumes {
        let request = CreateRequest {
            name: name(i),
            opts: None,
        };
        b.p.n
            .ok(&b.p.a, path::CREATE, serde_json::to_value(request).unwrap());
        let file = b.p.data(&b.p.a, &format!("volumes/{}/f", name(i)));
        std::fs::write(file, random_bytes(i as u64, 4096)).unwrap();
    }
    b.all(path::SCHEDULE, o.volumes, |v| {
        let request = ScheduleRequest {
            name: v,
            action: action.clone(),
            timer: "1".into(),
        };
        serde_json::to_value(request).unwrap()
    });
    // In use from the start: a volume nobody uses follows its container,
    // and its rounds pull instead of pushing.
    let mount = |v: String| {
        serde_json::to_value(MountRequest {
            name: v,
            id: Some("bench".into()),
        })
        .unwrap()
    };
    b.all(path::MOUNT, o.volumes, mount);
    eprintln!("waiting for the first round to send every volume");
    wait_for_every(
        "the first round to send every volume",
        600,
        Duration::from_secs(1),
        || (b.markers().len() >= o.volumes).then_some(()),
    );

    let mut phases = Table::new(&[
        "phase",
        "volumes",
        "rounds",
        "bir1 daemon CPU (% of one core)",
        "machine busy CPU (both nodes)",
        "snapshots created",
        "SSH sessions opened",
        "commands the peer ran",
    ]);
    let mut phase = |label: &str| {
        align(20);
        let (cpu0, busy0, snaps0) = (b.daemon_cpu(), Cpu::now(), b.snapshots());
        let (sessions0, cmds0, t0) = (b.sessions(), b.peer_commands(), Instant::now());
        // The measured window: ROUNDS scheduler rounds.
        std::thread::sleep(Duration::from_secs(o.rounds * 60));
        let wall = t0.elapsed().as_secs_f64();
        phases.row(vec![
            label.into(),
            o.volumes.to_string(),
            o.rounds.to_string(),
            format!("{:.2} %", 100.0 * (b.daemon_cpu() - cpu0) / wall),
            format!("{:.1} %", 100.0 * busy0.since().busy / wall),
            (b.snapshots() as i64 - snaps0 as i64).to_string(),
            format!("{}", b.sessions() - sessions0),
            (b.peer_commands() - cmds0).to_string(),
        ]);
        eprintln!("phase {label} done");
    };
    phase("in use (mounted)");

    eprintln!("phase 'changed': {} volumes get 1 MiB each", o.changed);
    align(20);
    let sessions0 = b.sessions();
    let before = b.markers();
    for i in 0..o.changed {
        let file = b.p.data(&b.p.a, &format!("volumes/{}/change", name(i)));
        app_data::write_file(&file, 1 << 20, 1000 + i as u64);
    }
    let changed: BTreeSet<String> = (0..o.changed).map(name).collect();
    let mut first: Option<(Instant, String)> = None;
    let last = wait_for_every(
        "the changed volumes' sends",
        240,
        Duration::from_millis(50),
        || {
            let new: Vec<String> = b.markers().difference(&before).cloned().collect();
            let volumes: BTreeSet<&str> = new
                .iter()
                .filter_map(|m| m.split('@').next())
                .filter(|v| changed.contains(*v))
                .collect();
            if first.is_none() {
                if let Some(v) = volumes.iter().next() {
                    first = Some((Instant::now(), v.to_string()));
                }
            }
            (volumes.len() >= o.changed).then(Instant::now)
        },
    );
    let sessions = b.sessions() - sessions0;
    let status: StatusReply = b.p.n.call(&b.p.a, path::STATUS, &serde_json::json!({}));
    let mut jobs = Samples::default();
    let mut first_ms = 0;
    let (first_at, first_volume) = first.expect("a first send seen");
    for v in status.volumes.iter().filter(|v| changed.contains(&v.name)) {
        for job in v.jobs.iter().filter(|j| j.action == action) {
            let ms = job.last_duration_ms.unwrap_or(0);
            if job
                .last_result
                .as_deref()
                .unwrap_or("")
                .starts_with("ok: sent")
            {
                jobs.push(Duration::from_millis(ms));
            }
            if v.name == first_volume {
                first_ms = ms;
            }
        }
    }
    let round = (last - first_at) + Duration::from_millis(first_ms);
    let mut changed_table = Table::new(&[
        "volumes",
        "changed",
        "sent",
        "round (first send job's start to last marker)",
        "median send job",
        "SSH sessions opened in the round",
    ]);
    changed_table.row(vec![
        o.volumes.to_string(),
        o.changed.to_string(),
        jobs.len().to_string(),
        format!("{:.1} s", round.as_secs_f64()),
        format!("{:.0} ms", jobs.p50()),
        sessions.to_string(),
    ]);

    eprintln!("phase 'idle': unmounting every volume");
    b.all(path::UNMOUNT, o.volumes, mount);
    phase("idle followers (unmounted)");
    println!("{phases}");
    println!("A round after {} volumes got 1 MiB each:\n", o.changed);
    changed_table
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = (0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
