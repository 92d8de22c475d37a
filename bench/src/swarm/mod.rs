//! `swarm`: Docker Swarm moving a service's task between the pair's nodes
//! (issue 24), on the Swarm of the tests (`testkit::swarm`: three nodes of
//! the harness, three managers, a three-member etcd, the pair's daemons
//! in cluster mode): drains and rolling updates of a service on a `btrfs`
//! volume replicated every 5 s and of the same service on Docker's
//! `local` volume (`moves`), then node loss (`loss`), each further loss
//! on a new Swarm. Figures and their meaning: BENCHMARKS.md.

mod loss;
mod moves;

use clap::Args;
use testkit::swarm::{Service, Swarm};
use testkit::wait_until;

use crate::report::Table;
use moves::Move;

#[derive(Args)]
pub struct Options {
    /// Drains and rolling updates per volume kind.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Node losses (the second and later ones each on a new Swarm).
    #[arg(long, default_value_t = 2)]
    losses: usize,
    /// The btrfs volume's replication timer.
    #[arg(long, default_value = "cron:*/5 * * * * *")]
    timer: String,
    /// OWNER_TTL of the pair's daemons.
    #[arg(long, default_value_t = 6)]
    ttl: u64,
    /// MiB of random data the first task writes before its records.
    #[arg(long, default_value_t = 64)]
    seed_mib: u32,
    /// Only one part: moves or loss.
    #[arg(long)]
    only: Option<String>,
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(v: &[f64]) -> String {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => "n/a".into(),
        n if n % 2 == 1 => format!("{:.1} s", s[n / 2]),
        n => format!("{:.1} s", (s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

pub fn run(o: &Options) -> Table {
    let mut t = Table::new(&["measurement", "volume", "median", "runs", "notes"]);
    let want = |part: &str| o.only.as_deref().is_none_or(|only| only == part);
    let mut swarm = Some(Swarm::up("bsw", o.ttl));
    if want("moves") {
        let s = swarm.as_ref().unwrap();
        let btrfs = Service {
            seed_mib: o.seed_mib,
            ..Service::btrfs(&o.timer)
        };
        let local = Service {
            name: "applocal".into(),
            volume: "localdata".into(),
            replicate: None,
            seed_mib: o.seed_mib,
        };
        for app in [&btrfs, &local] {
            s.create(app);
            let x = wait_for_task(s, app);
            if app.replicate.is_some() {
                // The seed replicated in full once, and an increment after
                // it: a move sends increments.
                wait_until("two replicas on the partner", 120, || {
                    s.snapshots(1 - x, &app.volume).len() >= 2
                });
            }
            let drains = moves::drains(s, app, o.runs);
            rows(&mut t, "drain of the task's node", app, &drains);
            let updates = moves::updates(s, app, o.runs);
            rows(
                &mut t,
                "rolling update to the partner (`--constraint-add node.id==<partner>`)",
                app,
                &updates,
            );
            s.docker(&["service", "rm", &app.name]);
            wait_until("the service's containers gone", 60, || {
                (0..2).all(|k| {
                    s.n.dockerd(&s.nodes[k])
                        .docker(&["ps", "-q", "--filter", &format!("name={}", app.name)])
                        .is_empty()
                })
            });
        }
    }
    if want("loss") {
        let db = Service {
            name: "db".into(),
            volume: "db".into(),
            replicate: Some(o.timer.clone()),
            seed_mib: o.seed_mib,
        };
        let mut losses = Vec::new();
        for k in 0..o.losses {
            if k > 0 {
                // The lost node's Swarm is no use any more: a new one.
                drop(swarm.take());
                swarm = Some(Swarm::up("bsw", o.ttl));
            }
            let s = swarm.as_ref().unwrap();
            s.create(&db);
            losses.push(loss::run(s, &db));
        }
        loss_rows(&mut t, &o.timer, &losses);
    }
    t
}

fn wait_for_task(s: &Swarm, app: &Service) -> usize {
    let x = testkit::wait_for("the task running", 180, || s.running(app));
    s.wait_writing(x, app, 0, &[]);
    x
}

fn volume(app: &Service) -> String {
    match &app.replicate {
        Some(timer) => format!("btrfs, `{timer}`"),
        None => "local".into(),
    }
}

fn rows(t: &mut Table, what: &str, app: &Service, moves: &[Move]) {
    let downtime: Vec<f64> = moves.iter().map(|m| m.downtime).collect();
    let total: Vec<f64> = moves.iter().map(|m| m.total).collect();
    t.row(vec![
        format!("{what}: downtime (old task's last record to new task's first)"),
        volume(app),
        median(&downtime),
        list(&downtime),
        format!("command to the new task's first record: {} s", list(&total)),
    ]);
    if app.replicate.is_some() {
        let unmount: Vec<f64> = moves.iter().filter_map(|m| m.unmount).collect();
        let mount: Vec<f64> = moves.iter().filter_map(|m| m.mount).collect();
        t.row(vec![
            format!("{what}: the plugin's last Unmount (snapshot, final send, release) / first Mount (take, restore)"),
            volume(app),
            format!("{} / {}", median(&unmount), median(&mount)),
            format!("{} / {}", list(&unmount), list(&mount)),
            "inside the downtime".into(),
        ]);
    }
    let data: Vec<String> = moves
        .iter()
        .map(|m| {
            format!(
                "{}→{}: {}, seed {} MiB on the new node ({} MiB left on the old)",
                m.from + 1,
                m.to + 1,
                match (m.kept, m.first_new) {
                    (true, _) => format!("started after all {} records", m.old_records),
                    (false, 1) => format!("started empty ({} records left behind)", m.old_records),
                    (false, n) => format!(
                        "started after {} stale records an earlier task left on that node ({} left behind)",
                        n - 1,
                        m.old_records
                    ),
                },
                m.seed_new >> 20,
                m.seed_old >> 20,
            )
        })
        .collect();
    let bytes: Vec<String> = moves
        .iter()
        .map(|m| format!("{} in {} streams", kib(m.bytes), m.streams))
        .collect();
    t.row(vec![
        format!("{what}: data"),
        volume(app),
        String::new(),
        data.join("; "),
        format!(
            "bytes landed on the pair during the move: {}",
            bytes.join(", ")
        ),
    ]);
}

fn loss_rows(t: &mut Table, timer: &str, losses: &[loss::Loss]) {
    let volume = format!("btrfs, `{timer}`");
    let col = |f: fn(&loss::Loss) -> f64| -> Vec<f64> { losses.iter().map(f).collect() };
    for (what, v) in [
        (
            "node loss → managers list it `down` (Swarm)",
            col(|l| l.down),
        ),
        (
            "node loss → first new task assigned to the partner (Swarm)",
            col(|l| l.assigned),
        ),
        (
            "node loss → partner took the volume over (plugin: Mount answered)",
            col(|l| l.takeover),
        ),
        (
            "node loss → task running on the partner",
            col(|l| l.running),
        ),
        (
            "node loss → new task's first record (with the replica's data)",
            col(|l| l.first),
        ),
    ] {
        t.row(vec![
            what.into(),
            volume.clone(),
            median(&v),
            list(&v),
            String::new(),
        ]);
    }
    let lost: Vec<String> = losses
        .iter()
        .map(|l| {
            format!(
                "{} of {} ({:.1} s of writes; freshest replica's last record {:.1} s before the kill; {} tasks assigned to the partner)",
                l.lost,
                l.written,
                l.lost as f64 / 10.0,
                l.replica_age,
                l.tasks
            )
        })
        .collect();
    t.row(vec![
        "node loss: records lost (one written every 100 ms)".into(),
        volume,
        String::new(),
        lost.join("; "),
        "bounded by the interval + one send".into(),
    ]);
}
