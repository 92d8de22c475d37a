//! `cluster`: cluster mode on etcd (issue 23), side by side in one run on
//! three throw-away nodes (`ring`): node loss to the partner's Mount
//! answered and the owner's fence, per OWNER_TTL (`failover`); the data
//! lost on failover with a replication interval (`rpo`); the idle cost of
//! 10 to 1,000 owned volumes (`idle`); the same node loss in pair mode.
//! Figures and their meaning: BENCHMARKS.md.

mod failover;
mod idle;
mod ring;
mod rpo;

use std::time::Duration;

use clap::Args;

use crate::report::{Samples, Table};
use ring::Ring;

#[derive(Args)]
pub struct Options {
    /// Runs of each node-loss measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// OWNER_TTLs to measure node loss with.
    #[arg(long, value_delimiter = ',', default_values_t = [15, 6])]
    ttls: Vec<u64>,
    /// Minutes between replications for the data-loss measurement (0:
    /// skip it).
    #[arg(long, default_value_t = 1)]
    rpo_minutes: u64,
    /// Owned-volume counts for the idle cost (empty: skip it).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 10, 100, 1000])]
    counts: Vec<usize>,
    /// Seconds of each idle window.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Only one part: pair, failover, rpo or idle.
    #[arg(long)]
    only: Option<String>,
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1e3)
}

fn all(s: &Samples) -> String {
    s.0.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.into()
}

pub fn run(o: &Options) -> Table {
    let r = Ring::up("bcl");
    let mut t = Table::new(&["measurement", "setting", "median", "runs (s)", "target", ""]);

    let want = |part: &str| o.only.as_deref().is_none_or(|only| only == part);
    if want("pair") {
        pair_rows(&r, o, &mut t);
    }
    if want("failover") {
        for &ttl in &o.ttls {
            failover_rows(&r, ttl, o.runs, &mut t);
        }
    }
    if want("rpo") && o.rpo_minutes > 0 {
        rpo_row(&r, o, &mut t);
    }
    if want("idle") {
        idle_rows(&r, o, &mut t);
    }
    t
}

fn pair_rows(r: &Ring, o: &Options, t: &mut Table) {
    let pair = failover::pair_mode(r, o.runs);
    t.row(vec![
        "pair mode: loss to b's Mount refused".into(),
        "no etcd".into(),
        secs(pair.refused.p50()),
        all(&pair.refused),
        format!("(comparison) error: {}", pair.error.replace('|', "/")),
        String::new(),
    ]);
    t.row(vec![
        "pair mode: `schedule replicate:<a> pause` to b's Mount answered".into(),
        "no etcd".into(),
        secs(pair.after_pause.p50()),
        all(&pair.after_pause),
        "(comparison) plus the operator's reaction time".into(),
        String::new(),
    ]);
}

fn failover_rows(r: &Ring, ttl: u64, runs: usize, t: &mut Table) {
    {
        r.cluster_mode(&r.a, ttl, &[]);
        r.cluster_mode(&r.b, ttl, &[]);
        let kills = failover::kills(r, ttl, runs);
        let target = (ttl + 2) as f64 * 1e3;
        t.row(vec![
            "kill -9 + link down to b's Mount answered".into(),
            format!("OWNER_TTL {ttl}"),
            secs(kills.p50()),
            all(&kills),
            format!("<= {} s", ttl + 2),
            verdict(kills.max() <= target),
        ]);
        let cuts = failover::partitions(r, ttl, runs);
        let fenced = Samples(cuts.iter().map(|c| c.fenced).collect());
        let took = Samples(cuts.iter().map(|c| c.takeover).collect());
        let lead = Samples(
            cuts.iter()
                .map(|c| c.takeover.saturating_sub(c.fenced))
                .collect(),
        );
        let before = cuts.iter().all(|c| c.fenced < c.takeover);
        t.row(vec![
            "link down to a's volume read-only (Cluster.Fenced)".into(),
            format!("OWNER_TTL {ttl}"),
            secs(fenced.p50()),
            all(&fenced),
            format!("< {ttl} s"),
            verdict(fenced.max() < ttl as f64 * 1e3),
        ]);
        t.row(vec![
            "link down to b's Mount answered (same runs)".into(),
            format!("OWNER_TTL {ttl}"),
            secs(took.p50()),
            all(&took),
            format!("<= {} s", ttl + 2),
            verdict(took.max() <= target),
        ]);
        t.row(vec![
            "fence ahead of the takeover (answered - fenced)".into(),
            format!("OWNER_TTL {ttl}"),
            secs(lead.p50()),
            all(&lead),
            "> 0 in every run".into(),
            verdict(before),
        ]);
    }
}

fn rpo_row(r: &Ring, o: &Options, t: &mut Table) {
    {
        let ttl = *o.ttls.last().unwrap_or(&15);
        r.cluster_mode(&r.a, ttl, &[]);
        r.cluster_mode(&r.b, ttl, &[]);
        let p = rpo::run(r, o.rpo_minutes);
        r.a_back(true, ttl);
        let lost = p.written.saturating_sub(p.on_b);
        t.row(vec![
            "records lost on failover (app: one every 100 ms)".into(),
            format!("replicate every {} min, OWNER_TTL {ttl}", p.minutes),
            format!("{lost} records ({:.1} s)", lost as f64 / 10.0),
            format!(
                "1 run: wrote {}, b has {}; latest replica landed {:.1} s before the loss; b mounted after {:.2} s",
                p.written,
                p.on_b,
                p.replica_age.as_secs_f64(),
                p.takeover.as_secs_f64()
            ),
            format!(
                "bounded by the interval + one send: <= ~{} records",
                p.minutes * 600
            ),
            String::new(),
        ]);
    }
}

fn idle_rows(r: &Ring, o: &Options, t: &mut Table) {
    let idle = idle::run(r, &o.counts, Duration::from_secs(o.window));
    for i in idle {
        t.row(vec![
            format!("idle, {} owned volumes on a", i.volumes),
            "OWNER_TTL 15, TIMER 60".into(),
            format!(
                "{:.1} etcd RPCs/min; a {:.2} % of a core",
                i.etcd_per_minute, i.cpu_percent
            ),
            format!(
                "1 window of {:.0} s (b: {:.2} %)",
                i.window.as_secs_f64(),
                i.b_cpu_percent
            ),
            "constant in the count, < 1 % of a core".into(),
            verdict(i.cpu_percent < 1.0),
        ]);
    }
}
