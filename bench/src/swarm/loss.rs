//! Node loss: the node running the task loses its dockerd (with its
//! containers) and its plugin daemon at once (SIGKILL) and its link. Each
//! step after the kill is stamped when first seen, polling from the third
//! node in one loop (one round takes about half a second of `docker` CLI
//! calls: the resolution): the managers' `down` for the node and a new
//! task assigned to the partner (Swarm's part), the partner's takeover of
//! the volume (`Cluster.Takeovers`), the task running there, and its
//! first record (the record's own time).

use testkit::swarm::{kill_dockerd, records, uptime, writers, Service, Swarm};
use testkit::{wait_for, wait_until};

/// Seconds after the kill.
pub struct Loss {
    /// The managers list the node as `down`.
    pub down: f64,
    /// The first new task assigned to the partner.
    pub assigned: f64,
    /// Tasks Swarm assigned to the partner before one ran (a Mount
    /// refused while the lost owner's lease lives fails its task).
    pub tasks: usize,
    /// The partner took the volume over.
    pub takeover: f64,
    /// The task running on the partner.
    pub running: f64,
    /// The new task's first record.
    pub first: f64,
    /// Records on the lost node, and those not in the partner's freshest
    /// replica.
    pub written: usize,
    pub lost: usize,
    /// The freshest replica's last record, before the kill (s).
    pub replica_age: f64,
}

/// One node loss of `app`'s task (running, its volume replicated).
pub fn run(s: &Swarm, app: &Service) -> Loss {
    let x = wait_for("the task running", 120, || s.running(app));
    let y = 1 - x;
    s.wait_writing(x, app, 0, &[]);
    // Steady state: a replica on the partner holds records (the first
    // ones hold only the seed), so the kill falls anywhere in an interval.
    wait_until("a replica with records on the partner", 180, || {
        s.snapshots(y, &app.volume)
            .iter()
            .any(|snap| records(&s.read(y, &format!("snapshots/{snap}/log"))).len() >= 20)
    });
    let old_tasks: Vec<String> = s
        .docker(&["service", "ps", "-q", &app.name])
        .lines()
        .map(str::to_string)
        .collect();
    let takeovers = s.status(y)["Cluster"]["Takeovers"].as_u64().unwrap_or(0);

    let killed = uptime();
    kill_dockerd(&s.n.dockerd(&s.nodes[x]));
    s.n.kill(&s.nodes[x]);
    s.n.link(&s.nodes[x], "down");
    let on_x = s.records(x, app);
    let freshest = s
        .snapshots(y, &app.volume)
        .iter()
        .map(|snap| records(&s.read(y, &format!("snapshots/{snap}/log"))))
        .max_by_key(Vec::len)
        .expect("a replica on the partner");
    assert!(on_x.starts_with(&freshest), "a replica not from x's log");
    let old = writers(&on_x);

    let (mut down, mut assigned, mut takeover, mut running) = (None, None, None, None);
    let mut tasks = std::collections::BTreeSet::new();
    let first = wait_for("the task writing on the partner", 300, || {
        let now = || uptime() - killed;
        if down.is_none() && s.node_state(x).as_deref() == Some("down") {
            down = Some(now());
        }
        let listed = s.try_docker(&["service", "ps", "-q", &app.name]);
        for task in listed.as_deref().unwrap_or_default().lines() {
            if old_tasks.iter().any(|o| o == task) {
                continue;
            }
            let node = s.try_docker(&["inspect", "-f", "{{.NodeID}}", task]);
            if node.as_ref() == Some(&s.ids[y])
                && tasks.insert(task.to_string())
                && assigned.is_none()
            {
                assigned = Some(now());
            }
        }
        let t = s.status(y)["Cluster"]["Takeovers"].as_u64().unwrap_or(0);
        if takeover.is_none() && t > takeovers {
            takeover = Some(now());
        }
        if running.is_none() && s.running(app) == Some(y) {
            running = Some(now());
        }
        let r = s.records(y, app);
        r.iter().find(|r| !old.contains(&r.writer)).cloned()
    });
    let moved = s.records(y, app);
    assert!(
        moved.starts_with(&freshest),
        "the partner did not start from the freshest replica"
    );
    let never = f64::NAN;
    eprintln!(
        "swarm bench: loss: down {down:?} assigned {assigned:?} takeover {takeover:?} \
         running {running:?} first {:.2} s; {} of {} records lost",
        first.at - killed,
        on_x.len() - freshest.len(),
        on_x.len()
    );
    Loss {
        down: down.unwrap_or(never),
        assigned: assigned.unwrap_or(never),
        tasks: tasks.len(),
        takeover: takeover.unwrap_or(never),
        running: running.unwrap_or(never),
        first: first.at - killed,
        written: on_x.len(),
        lost: on_x.len() - freshest.len(),
        replica_age: killed - freshest.last().map_or(killed, |r| r.at),
    }
}
