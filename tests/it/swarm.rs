//! Docker Swarm (issue 24), on three nodes of the node harness
//! ([`testkit::swarm`]): three managers, a three-member etcd, the pair's
//! daemons in cluster mode; one service of one replica, constrained to
//! the pair, writing a sequence into a `btrfs` volume whose options name
//! both nodes (each node ignores the line naming itself).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

use testkit::nodes::Nodes;
use testkit::swarm::{kill_dockerd, records, writers, Service, Swarm};
use testkit::{wait_for, wait_until};

/// OWNER_TTL: a dead owner's lease expires 6 s after its last keep-alive.
const TTL: u64 = 6;
/// Replication every 2 seconds (cron with a seconds field).
const EVERY_2S: &str = "cron:*/2 * * * * *";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A forced update restarts the task (on either node: Swarm may keep it
/// where it was) from every record; a rolling update whose placement
/// leaves only the partner (a `node.id` constraint) and a drain move the
/// task between the pair's nodes: each new task starts from exactly what
/// the old one wrote (the old node's whole log is the start of the new
/// one's), nothing lost.
#[test]
fn swarm_a_forced_update_keeps_every_record_and_a_rolling_update_and_a_drain_move_the_task() {
    let _one = lock();
    let s = Swarm::up("swa", TTL);
    let app = Service::btrfs(EVERY_2S);
    s.create(&app);
    let x = wait_for("the task running", 120, || s.running(&app));
    let seen = s.wait_writing(x, &app, 0, &[]);

    // docker service update --force: a new task, on x or on the partner.
    s.docker(&["service", "update", "--detach", "--force", "app"]);
    let old = writers(&seen);
    let (k, r) = wait_for("the forced task writing", 120, || {
        let k = s.running(&app)?;
        let r = s.records(k, &app);
        (r.len() >= seen.len() + 10 && !old.contains(&r[r.len() - 1].writer)).then_some((k, r))
    });
    let left = s.records(x, &app);
    assert!(left.starts_with(&seen), "x lost records");
    if k == x {
        // One log, read again: the old task's records, then the new one's.
        assert!(left.starts_with(&r), "the restarted task lost records");
    } else {
        // x's log is final: the new task started from all of it.
        assert!(r.starts_with(&left), "the moved task lost records");
    }
    eprintln!(
        "swarm: update --force {} the task",
        if k == x { "kept" } else { "moved" }
    );
    let (x, seen) = (k, r);

    // docker node update --availability drain on x: the task moves.
    let y = 1 - x;
    let started = Instant::now();
    s.docker(&["node", "update", "--availability", "drain", &s.ids[x]]);
    let old = writers(&seen);
    let moved = s.wait_writing(y, &app, seen.len(), &old);
    eprintln!("swarm: the drain moved the task in {:?}", started.elapsed());
    let left = s.records(x, &app);
    assert!(left.starts_with(&seen), "x lost records");
    assert!(moved.starts_with(&left), "the drained task lost records");
    let owner =
        s.n.ok(&s.nodes[y], "/VolumeDriver.Owner", json!({"Name": "data"}));
    assert_eq!(owner["Owner"]["Node"], s.nodes[y].as_str(), "{owner}");
    s.docker(&["node", "update", "--availability", "active", &s.ids[x]]);

    // A rolling update whose only eligible node is x: the task moves back.
    let seen = s.records(y, &app);
    let constraint = format!("node.id=={}", s.ids[x]);
    let started = Instant::now();
    s.docker(&[
        "service",
        "update",
        "--detach",
        "--constraint-add",
        &constraint,
        "app",
    ]);
    let old = writers(&seen);
    let back = s.wait_writing(x, &app, seen.len(), &old);
    eprintln!(
        "swarm: the rolling update moved the task in {:?}",
        started.elapsed()
    );
    let left = s.records(y, &app);
    assert!(left.starts_with(&seen), "y lost records");
    assert!(back.starts_with(&left), "the updated task lost records");
    let owner =
        s.n.ok(&s.nodes[x], "/VolumeDriver.Owner", json!({"Name": "data"}));
    assert_eq!(owner["Owner"]["Node"], s.nodes[x].as_str(), "{owner}");
}

/// Node loss: x's dockerd (with its containers) and plugin killed, its
/// link cut. Swarm runs the task on the partner, which takes the volume
/// over with the freshest replica: every record up to the last
/// replication. Back, x's plugin refuses the volume naming the new
/// owner, keeps its diverged records and pushes nothing.
#[test]
fn swarm_node_loss_runs_the_task_on_the_partner_and_fences_the_old_node() {
    let _one = lock();
    let s = Swarm::up("swb", TTL);
    let app = Service::btrfs(EVERY_2S);
    s.create(&app);
    let x = wait_for("the task running", 120, || s.running(&app));
    let y = 1 - x;
    s.wait_writing(x, &app, 0, &[]);
    // Replicas reach y every 2 s.
    wait_until("replicas on the partner", 60, || {
        s.snapshots(y, "data").len() >= 2
    });

    let started = Instant::now();
    kill_dockerd(&s.n.dockerd(&s.nodes[x]));
    s.n.kill(&s.nodes[x]);
    s.n.link(&s.nodes[x], "down");
    let on_x = s.records(x, &app);
    // The freshest replica on y, fixed from now on.
    let freshest = s
        .snapshots(y, "data")
        .iter()
        .map(|snap| records(&s.read(y, &format!("snapshots/{snap}/log"))))
        .max_by_key(Vec::len)
        .unwrap();
    assert!(!freshest.is_empty());
    assert!(on_x.starts_with(&freshest));

    let moved = s.wait_writing(y, &app, freshest.len(), &writers(&on_x));
    eprintln!(
        "swarm: node loss to the task writing on the partner: {:?}; {} of {} records lost",
        started.elapsed(),
        on_x.len() - freshest.len(),
        on_x.len()
    );
    assert!(
        moved.starts_with(&freshest),
        "the partner did not start from the freshest replica"
    );
    let owner =
        s.n.ok(&s.nodes[y], "/VolumeDriver.Owner", json!({"Name": "data"}));
    assert_eq!(owner["Owner"]["Node"], s.nodes[y].as_str(), "{owner}");

    // x back: its plugin finds the volume taken over.
    s.n.link(&s.nodes[x], "up");
    s.n.docker_start(&s.nodes[x]);
    s.start_daemon(x);
    let diverged = wait_for("x's diverged state", 60, || {
        s.status(x)["Cluster"]["Diverged"][0]["Snapshot"]
            .as_str()
            .map(str::to_string)
    });
    let kept = records(&s.read(x, &format!("snapshots/{diverged}/log")));
    assert_eq!(kept, on_x, "x's diverged records were not kept as written");
    let body = json!({"Name": "data", "ID": "m1"});
    let reply = s.n.post(&s.nodes[x], "/VolumeDriver.Mount", &body);
    let err = reply["Err"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("owned by {}", s.nodes[y])), "{reply}");
    // Refused naming the owner (once x's own scheduled attempt, refused
    // too, no longer holds the volume's send lock).
    let err = wait_for("x's send refused by ownership", 30, || {
        let err = s.n.send_err(&s.nodes[x], &diverged, &s.ips[y]);
        (!err.contains("in progress")).then_some(err)
    });
    assert!(err.contains(&format!("owned by {}", s.nodes[y])), "{err}");
    assert!(
        !s.snapshots(y, "data").contains(&diverged),
        "x pushed its diverged state"
    );
    // The task still runs on y, on y's records.
    assert_eq!(s.running(&app), Some(y));
}

/// The legacy daemon makes its driver known to its engine at start:
/// `docker info` lists `btrfs` though nothing used it (without the
/// announcement, only `local`, and Swarm finds no node for the service).
#[test]
fn swarm_the_legacy_daemon_announces_its_driver_to_its_engine() {
    let n = Nodes::up("swc", 1, "1G");
    let node = n.name(1);
    // The daemon starts after the engine here.
    n.stop(&node);
    n.docker_start(&node);
    let docker = n.dockerd(&node);
    assert_eq!(
        docker.docker(&["info", "-f", "{{json .Plugins.Volume}}"]),
        r#"["local"]"#
    );
    n.start(&node);
    wait_until("the engine listing btrfs", 60, || {
        docker
            .docker(&["info", "-f", "{{json .Plugins.Volume}}"])
            .contains(r#""btrfs""#)
    });
    assert!(n
        .log(&node)
        .contains("driver announced to the Docker engine"));
}
