//! The moves an operator makes: a drain of the node running the task and
//! a rolling update whose placement leaves only the partner (a `node.id`
//! constraint), measured from the records themselves: the old task's last
//! record to the new task's first (the downtime), what the new task
//! started from, and the stream bytes that landed on the pair's nodes
//! meanwhile (their forced commands' logs, `received <snapshot> bytes=`).

use buttervolume::replication::command_log::{LogLine, Outcome};
use testkit::swarm::{uptime, writers, Record, Service, Swarm};
use testkit::wait_for;

/// One move of the task from node `from` to node `to`.
pub struct Move {
    pub from: usize,
    pub to: usize,
    /// The old task's last record to the new task's first (s).
    pub downtime: f64,
    /// The command to the new task's first record (s).
    pub total: f64,
    /// Records the old task wrote, all of them on the old node.
    pub old_records: usize,
    /// The new task started after all of them.
    pub kept: bool,
    /// The number of the new task's first record (1: it started empty;
    /// else after the records its volume held on the new node).
    pub first_new: u64,
    /// Stream bytes and streams landed on either node of the pair during
    /// the move (scheduled rounds included).
    pub bytes: u64,
    pub streams: usize,
    /// The plugin's last Unmount on the old node and Mount on the new one
    /// (s; none for a local volume).
    pub unmount: Option<f64>,
    pub mount: Option<f64>,
    /// Seed bytes on the old and the new node once moved.
    pub seed_old: u64,
    pub seed_new: u64,
}

/// The forced command's log lines of node k so far.
fn received_lines(s: &Swarm, k: usize) -> Vec<String> {
    s.read(k, "state/ssh-command.log")
        .lines()
        .map(str::to_string)
        .collect()
}

/// (bytes, streams) received in `lines` after the first `skip`.
fn received(lines: &[String], skip: usize) -> (u64, usize) {
    lines
        .iter()
        .skip(skip)
        .filter_map(|l| match l.parse::<LogLine>().ok()?.outcome {
            Outcome::Received { bytes, .. } => Some(bytes),
            _ => None,
        })
        .fold((0, 0), |(b, n), x| (b + x, n + 1))
}

/// Runs `command` (which must move the task off `from`) and measures the
/// move once the new task has written a few records on the other node.
pub fn measure(s: &Swarm, app: &Service, from: usize, command: impl FnOnce()) -> Move {
    let to = 1 - from;
    let before = s.records(from, app);
    // Every task that wrote so far, on either node (a local volume keeps
    // an earlier task's records on the node it left).
    let mut old = writers(&before);
    old.extend(writers(&s.records(to, app)));
    let skip = [received_lines(s, 0).len(), received_lines(s, 1).len()];
    let log_skip = [s.requests(0, "", "", 0).1, s.requests(1, "", "", 0).1];
    let started = uptime();
    command();
    let moved: Vec<Record> = wait_for(
        format!("the new task writing on {}", s.nodes[to]),
        180,
        || {
            let r = s.records(to, app);
            (r.iter().filter(|r| !old.contains(&r.writer)).count() >= 3).then_some(r)
        },
    );
    let landed = [received_lines(s, 0), received_lines(s, 1)];
    let left = s.records(from, app);
    assert!(left.starts_with(&before), "the old node lost records");
    let first = moved
        .iter()
        .find(|r| !old.contains(&r.writer))
        .expect("a new record")
        .clone();
    let last_old = left.last().expect("the old task wrote").at;
    let kept = moved.starts_with(&left);
    if app.replicate.is_some() {
        assert!(
            kept,
            "the new task did not start from the old one's records"
        );
    }
    let unmount = s
        .requests(from, "/VolumeDriver.Unmount", &app.volume, log_skip[from])
        .0;
    let mount = s
        .requests(to, "/VolumeDriver.Mount", &app.volume, log_skip[to])
        .0;
    let (b0, n0) = received(&landed[0], skip[0]);
    let (b1, n1) = received(&landed[1], skip[1]);
    eprintln!(
        "swarm bench: {} {}→{}: downtime {:.2} s, command to first record {:.2} s, \
         kept {kept}, first new #{}, {} bytes in {} streams, unmount {unmount:?} mount {mount:?}",
        app.name,
        from + 1,
        to + 1,
        first.at - last_old,
        first.at - started,
        first.n,
        b0 + b1,
        n0 + n1
    );
    Move {
        from,
        to,
        downtime: first.at - last_old,
        total: first.at - started,
        old_records: left.len(),
        kept,
        first_new: first.n,
        bytes: b0 + b1,
        streams: n0 + n1,
        unmount: unmount.last().copied(),
        mount: mount.last().copied(),
        seed_old: s.seed_bytes(from, app),
        seed_new: s.seed_bytes(to, app),
    }
}

/// `runs` drains, alternating nodes: the node running the task drained,
/// then made active again once the task runs on its partner.
pub fn drains(s: &Swarm, app: &Service, runs: usize) -> Vec<Move> {
    (0..runs)
        .map(|_| {
            let x = wait_for("the task running", 120, || s.running(app));
            let m = measure(s, app, x, || {
                s.docker(&["node", "update", "--availability", "drain", &s.ids[x]]);
            });
            s.docker(&["node", "update", "--availability", "active", &s.ids[x]]);
            m
        })
        .collect()
}

/// `runs` rolling updates, each one constraining the service to the node
/// not running it (`--constraint-rm` of the last one's, `--constraint-add
/// node.id==<partner>`): Swarm must move the task.
pub fn updates(s: &Swarm, app: &Service, runs: usize) -> Vec<Move> {
    let mut constraint: Option<String> = None;
    (0..runs)
        .map(|_| {
            let x = wait_for("the task running", 120, || s.running(app));
            let to = format!("node.id=={}", s.ids[1 - x]);
            let mut args = vec!["service", "update", "--detach"];
            if let Some(c) = &constraint {
                args.extend(["--constraint-rm", c.as_str()]);
            }
            args.extend(["--constraint-add", to.as_str(), app.name.as_str()]);
            let m = measure(s, app, x, || {
                s.docker(&args);
            });
            constraint = Some(to);
            m
        })
        .collect()
}
