//! The follow benchmark's tables: medians (min..max) of the counted moves
//! per chain side by side, then one row per move.

use std::time::Duration;

use super::moves::{Move, Requests};
use super::Options;
use crate::cpu::Cpu;
use crate::report::{Samples, Table};

const CHAINS: [(&str, &str); 3] = [
    ("ours", "ours, volume at /data (in the image)"),
    ("ours_nopath", "ours, volume at /srv (not in the image)"),
    ("ref", "reference 3.13 + script"),
];

/// Seconds as the tables show them.
fn s(v: f64) -> String {
    if v >= 0.0995 {
        format!("{v:.2} s")
    } else {
        format!("{:.0} ms", v * 1e3)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn samples(v: &[f64]) -> Samples {
    Samples(
        v.iter()
            .map(|x| Duration::from_secs_f64(x.max(0.0)))
            .collect(),
    )
}

/// median (min..max) of seconds.
fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let m = samples(v);
    format!(
        "{} ({}..{})",
        s(m.p50() / 1e3),
        s(m.pct(0.0) / 1e3),
        s(m.max() / 1e3)
    )
}

fn median(v: &[f64]) -> f64 {
    samples(v).p50() / 1e3
}

fn cpu_median(v: &[Cpu]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let busy: Vec<f64> = v.iter().map(|c| c.busy).collect();
    let steal: Vec<f64> = v.iter().map(|c| c.steal).collect();
    format!("{:.2} / {:.2}", median(&busy), median(&steal))
}

fn cpu(c: Cpu) -> String {
    format!("{:.2}, {:.2}", c.busy, c.steal)
}

/// A value per chain and its CPU (None: not measured for that chain).
type Pick = fn(&Move) -> Option<(f64, Option<Cpu>)>;

fn row(t: &mut Table, label: &str, moves: &[Move], pick: Pick) {
    let mut cells = vec![label.to_string()];
    for (variant, _) in CHAINS {
        let picked: Vec<(f64, Option<Cpu>)> = counted(moves, variant).filter_map(pick).collect();
        let values: Vec<f64> = picked.iter().map(|p| p.0).collect();
        let cpus: Vec<Cpu> = picked.iter().filter_map(|p| p.1).collect();
        cells.push(spread(&values));
        cells.push(cpu_median(&cpus));
    }
    t.row(cells);
}

fn counted<'a>(moves: &'a [Move], variant: &'a str) -> impl Iterator<Item = &'a Move> {
    moves
        .iter()
        .filter(move |m| m.variant == variant && !m.warmup())
}

fn pattern(r: &Requests) -> String {
    let mut parts = vec![format!("Mount {} = {}", r.mount.1, s(r.mount.0))];
    if r.unmount.1 > 0 {
        parts.push(format!("Unmount {} = {}", r.unmount.1, s(r.unmount.0)));
    }
    parts.join(", ")
}

pub fn print(
    o: &Options,
    moves: &[Move],
    startup: &[f64],
    initial_ours: &(f64, String),
    initial_ref: f64,
) -> Table {
    let n = |v| counted(moves, v).count();
    println!(
        "Moves counted: {} ours at /data, {} ours at /srv, {} reference ({} round trips node 1 -> node 2 -> node 1 each; the warm-up move 1 is in the per-move tables only). Median (min..max); CPU = busy / steal seconds of the whole machine in the phase's window, median.\n",
        n("ours"),
        n("ours_nopath"),
        n("ref"),
        o.sizes.reps
    );
    let mut header = vec!["phase"];
    for (_, title) in CHAINS {
        header.extend([title, "CPU busy / steal s"]);
    }
    let mut t = Table::new(&header);
    row(&mut t, "push: ours the old node's Unmount after the app's first command, its request time (snapshot + send); ref `snapshot` + `send` CLI calls", moves, |m| match m.script {
        None => Some((m.push.unmount.0, None)),
        Some((a, b, _, _)) => Some((a + b, None)),
    });
    row(&mut t, "restore: ours the new node's Mounts before the app's first command (ask the peer, restore; 2 Mounts at /data); ref `restore` CLI call", moves, |m| match m.script {
        None => Some((m.restore.mount.0, None)),
        Some((_, _, c, _)) => Some((c, None)),
    });
    row(&mut t, "ours: every Mount/Unmount on the new node before the app's first command; ref: the script (snapshot + send + restore)", moves, |m| match m.script {
        None => Some((m.restore.total(), None)),
        Some((a, b, c, cpu)) => Some((a + b + c, Some(cpu))),
    });
    row(
        &mut t,
        "**downtime**: old container's last command -> new container's first",
        moves,
        |m| Some((m.downtime, Some(m.cpu_downtime))),
    );
    row(
        &mut t,
        "of which stop: -> old `docker run --rm` returned",
        moves,
        |m| Some((m.stop, Some(m.cpu_stop))),
    );
    row(
        &mut t,
        "of which between: -> new `docker run` issued (ref: the script)",
        moves,
        |m| Some((m.between, None)),
    );
    row(
        &mut t,
        "of which start: -> new container's first command",
        moves,
        |m| Some((m.start, Some(m.cpu_start))),
    );
    let mut tx = vec![
        "old node's eth0 tx (ours: during the old container's run; ref: during `send`)".to_string(),
    ];
    for (variant, _) in CHAINS {
        let v: Vec<f64> = counted(moves, variant).map(|m| m.tx as f64).collect();
        let med = median(&v.iter().map(|b| b / 1e6).collect::<Vec<_>>()) * 1e6;
        tx.push(format!(
            "{} ({:.2}x the change)",
            mib(med as u64),
            med / (o.change_mib << 20) as f64
        ));
        tx.push(String::new());
    }
    t.row(tx);

    for (variant, title) in &CHAINS[..2] {
        println!("\nPer move ({title}; request times from the daemons' histograms; CPU as busy, steal s):\n");
        let mut per = Table::new(&[
            "move",
            "direction",
            "push: old node's Unmounts after its app's first command",
            "new node's requests before the app's first command",
            "downtime",
            "stop / between / start",
            "CPU stop / start / downtime",
            "old node tx",
            "old node tx before the app's first command (a pull)",
        ]);
        for m in moves
            .iter()
            .filter(|m| m.variant == *variant && m.script.is_none())
        {
            per.row(vec![
                format!("{}{}", m.j, if m.warmup() { " (warm-up)" } else { "" }),
                m.direction.clone(),
                format!("{} in {}", s(m.push.unmount.0), m.push.unmount.1),
                pattern(&m.restore),
                s(m.downtime),
                format!("{} / {} / {}", s(m.stop), s(m.between), s(m.start)),
                format!(
                    "{} / {} / {}",
                    cpu(m.cpu_stop),
                    cpu(m.cpu_start),
                    cpu(m.cpu_downtime)
                ),
                mib(m.tx),
                mib(m.pull_tx),
            ]);
        }
        print!("{per}");
    }
    println!("\nPer move (reference 3.13 + script; CPU as busy, steal s):\n");
    let mut per = Table::new(&[
        "move",
        "direction",
        "snapshot",
        "send",
        "restore",
        "sum",
        "downtime",
        "stop / between / start",
        "CPU sum / downtime",
        "send tx",
    ]);
    for m in moves.iter().filter(|m| m.variant == "ref") {
        let (a, b, c, cpu_script) = m.script.expect("a reference move has its script");
        per.row(vec![
            format!("{}{}", m.j, if m.warmup() { " (warm-up)" } else { "" }),
            m.direction.clone(),
            s(a),
            s(b),
            s(c),
            s(a + b + c),
            s(m.downtime),
            format!("{} / {} / {}", s(m.stop), s(m.between), s(m.start)),
            format!("{} / {}", cpu(cpu_script), cpu(m.cpu_downtime)),
            mib(m.tx),
        ]);
    }
    print!("{per}");
    let ours_moves: Vec<&Move> = moves.iter().filter(|m| m.script.is_none()).collect();
    let pulled = ours_moves
        .iter()
        .filter(|m| m.pull_tx > (o.change_mib << 19) as u64)
        .count();
    let one_push = ours_moves.iter().filter(|m| m.push.unmount.1 == 1).count();
    println!(
        "\nOurs: one Unmount after the app's first command (the push) in {one_push} of {} moves; a restore pulled (the old node sent more than half the change before the new app's first command: the push had not landed) in {pulled}.",
        ours_moves.len()
    );
    println!(
        "Reference CLI start-up alone (`buttervolume --version`, {} runs): median {}; the script makes 3 CLI calls.",
        startup.len(),
        s(median(startup))
    );
    println!(
        "Initial replication (ours): {} (`Replicate`'s summary: {}).",
        s(initial_ours.0),
        initial_ours.1
    );
    println!(
        "Initial replication (ref): {} (snapshot + send + restore CLI calls, a full send).",
        s(initial_ref)
    );
    println!("\nThe moves, side by side (below).");
    t
}
