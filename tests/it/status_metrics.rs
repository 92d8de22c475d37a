//! `buttervolume status` and `/metrics` against the truth, on real nodes
//! (network + mount namespaces, loop btrfs, sshd with our forced command,
//! one daemon each with its metrics listener on the node's 127.0.0.1):
//! snapshots counted on the disk, sent markers and their btrfs creation
//! times, the bytes the receiver says it landed, the forced command's log,
//! `du`, and a scheduled job that really fails.

use std::path::Path;

use buttervolume::api::{ProblemKind, StatusReply, VolumeStatus};
use serde_json::json;
use testkit::metrics::{free_port, http_get, promtool_check, scrape, Page};
use testkit::nodes::Nodes;
use testkit::wait_until;

fn status(n: &Nodes, node: &str) -> StatusReply {
    let out = n.cli(node, &["status", "--json"]);
    let text = testkit::succeeded(out, "buttervolume status --json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn volume<'a>(status: &'a StatusReply, name: &str) -> &'a VolumeStatus {
    status
        .volumes
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} in {status:?}"))
}

/// The snapshots of `volume` on the disk (markers not counted).
fn snapshots_on_disk(n: &Nodes, node: &str, volume: &str) -> usize {
    testkit::entries(&n.data(node).join("snapshots"))
        .iter()
        .filter(|e| e.starts_with(&format!("{volume}@")) && e.matches('@').count() == 1)
        .count()
}

fn otime(path: &Path) -> i64 {
    buttervolume::btrfs::identity(path).unwrap().otime
}

/// Restarts the node's daemon with a metrics listener on a free port of
/// its 127.0.0.1; returns the port once it answers.
fn with_metrics(n: &Nodes, node: &str) -> u16 {
    let port = free_port(node);
    n.stop(node);
    n.start_with(
        node,
        &[&format!("BUTTERVOLUME_METRICS_ADDR=127.0.0.1:{port}")],
    );
    wait_until(format!("{node}'s metrics listener"), 10, || {
        http_get(node, port, "/metrics").is_some_and(|(s, _)| s == 200)
    });
    port
}

fn write_file(path: &Path, bytes: usize, seed: u8) {
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn status_and_metrics_tell_the_truth() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("st", "2G");
    let a_ip = n.ip(&a);
    let (pa, pb) = (with_metrics(&n, &a), with_metrics(&n, &b));
    // Only /metrics is served.
    assert_eq!(http_get(&a, pa, "/").map(|(s, _)| s), Some(404));

    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("big"), 3 << 20, 1);
    let s1 = n.snapshot(&a, "db");
    let before = chrono::Utc::now().timestamp();
    n.send(&a, &s1, &b_ip);
    let after = chrono::Utc::now().timestamp();

    // Status after a send: the snapshot, the peer holding it, lag 0.
    let st = status(&n, &a);
    let db = volume(&st, "db");
    assert_eq!(db.snapshots, snapshots_on_disk(&n, &a, "db"));
    assert_eq!(db.snapshots, 1);
    assert_eq!(db.newest_snapshot.as_deref(), Some(s1.as_str()));
    let s1_created = otime(&n.data(&a).join("snapshots").join(&s1));
    assert_eq!(db.newest_snapshot_created.unwrap().timestamp(), s1_created);
    assert_eq!(db.peers.len(), 1, "{db:?}");
    let peer = &db.peers[0];
    assert_eq!(peer.host, b_ip);
    assert_eq!(peer.sent_snapshot.as_deref(), Some(s1.as_str()));
    let marker = n.data(&a).join("snapshots").join(format!("{s1}@{b_ip}"));
    let last_success = peer.last_success.unwrap().timestamp();
    assert_eq!(last_success, otime(&marker));
    assert!(
        (before..=after).contains(&last_success),
        "{before} {last_success} {after}"
    );
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (0, 0));
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    // The receiver holds the snapshot and has no peer of its own.
    let on_b = status(&n, &b);
    assert_eq!(on_b.volumes.len(), 0, "a received snapshot is not a volume");

    // The metrics say the same, in a format promtool accepts.
    let page = scrape(&a, pa);
    promtool_check(&page.text).unwrap_or_else(|e| panic!("promtool: {e}\n{}", page.text));
    let db_peer = [("volume", "db"), ("peer", b_ip.as_str())];
    assert_eq!(
        page.value("buttervolume_volume_snapshots", &[("volume", "db")]),
        1.0
    );
    assert_eq!(
        page.value("buttervolume_replication_lag_seconds", &db_peer),
        0.0
    );
    assert_eq!(
        page.value(
            "buttervolume_replication_last_success_timestamp_seconds",
            &db_peer
        ),
        otime(&marker) as f64
    );
    // The bytes a sent are the bytes b says it landed (its forced
    // command's log, read by b's daemon).
    let page_b = scrape(&b, pb);
    promtool_check(&page_b.text).unwrap_or_else(|e| panic!("promtool: {e}\n{}", page_b.text));
    let sent = page.value("buttervolume_sent_bytes_total", &[("peer", b_ip.as_str())]);
    let landed = page_b.value(
        "buttervolume_received_bytes_total",
        &[("peer", a_ip.as_str()), ("mode", "push")],
    );
    assert_eq!(sent, landed);
    assert!(sent > (3 << 20) as f64, "{sent}");
    let send_ok = [
        ("endpoint", "/VolumeDriver.Snapshot.Send"),
        ("outcome", "ok"),
    ];
    assert_eq!(page.value("buttervolume_requests_total", &send_ok), 1.0);
    assert_eq!(
        page.value(
            "buttervolume_request_duration_seconds_count",
            &[("endpoint", "/VolumeDriver.Snapshot.Send")]
        ),
        1.0
    );

    refusals_are_counted(&n, &a, &b, &b_ip, pb);
    a_failed_job_is_the_first_problem(&n, &a, pa);
    lag_grows_with_a_snapshot_not_sent(&n, &a, pa, &b_ip);
    size_is_what_du_says(&n, &a, pa);
}

/// a asks b's forced command for something outside the protocol.
fn refusals_are_counted(n: &Nodes, a: &str, b: &str, b_ip: &str, pb: u16) {
    let target = format!("root@{b_ip}");
    for _ in 0..2 {
        let out = n.exec(
            a,
            &["ssh", "-p", "1122", "-o", "BatchMode=yes", &target, "id"],
        );
        assert!(!out.status.success());
    }
    let log = std::fs::read_to_string(n.data(b).join("state/ssh-command.log")).unwrap();
    let refused = log
        .lines()
        .filter(|l| l.contains(" outcome=refused ("))
        .count();
    assert_eq!(refused, 2, "{log}");
    let page = scrape(b, pb);
    let count = |kind| page.value("buttervolume_peer_refusals_total", &[("kind", kind)]);
    assert_eq!(count("command"), refused as f64);
    assert_eq!(count("stream"), 0.0);
}

/// A replicate job to a's own loopback, where nothing listens: it fails
/// for real, and is the first problem.
fn a_failed_job_is_the_first_problem(n: &Nodes, a: &str, pa: u16) {
    let job = json!({"Name": "db", "Action": "replicate:127.0.0.1", "Timer": "60"});
    n.ok(a, "/VolumeDriver.Schedule", job);
    let mut st = status(n, a);
    wait_until("the replicate job to fail", 30, || {
        st = status(n, a);
        volume(&st, "db")
            .jobs
            .iter()
            .any(|j| j.action == "replicate:127.0.0.1" && j.last_ok == Some(false))
    });
    let kinds: Vec<(ProblemKind, Option<&str>)> = st
        .problems
        .iter()
        .map(|p| (p.kind, p.peer.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::JobFailed, Some("127.0.0.1")),
            (ProblemKind::NeverSent, Some("127.0.0.1"))
        ],
        "{:?}",
        st.problems
    );
    let db = volume(&st, "db");
    let error = db.last_error.as_deref().unwrap();
    assert!(error.starts_with("replicate:127.0.0.1: "), "{error}");
    assert!(st.problems[0]
        .message
        .contains(&error["replicate:127.0.0.1: ".len()..]));
    // The table shows them first, then db's rows.
    let table = testkit::stdout(&n.cli(a, &["status"]));
    assert!(table.starts_with("PROBLEMS (2)\n  job-failed "), "{table}");
    assert!(table.lines().any(|l| l.starts_with("db ")), "{table}");

    let page: Page = scrape(a, pa);
    let replicate = [("action", "replicate")];
    assert_eq!(
        page.value("buttervolume_job_failures_total", &replicate),
        1.0
    );
    assert_eq!(
        page.value("buttervolume_job_duration_seconds_count", &replicate),
        1.0
    );
    assert_eq!(
        page.value("buttervolume_problems", &[("kind", "job-failed")]),
        1.0
    );
    let labels = [("volume", "db"), ("job", "replicate:127.0.0.1")];
    assert_eq!(page.value("buttervolume_job_last_success", &labels), 0.0);
    let unschedule = json!({"Name": "db", "Action": "replicate:127.0.0.1", "Timer": "0"});
    n.ok(a, "/VolumeDriver.Schedule", unschedule);
    assert!(status(n, a).problems.is_empty());
}

/// A snapshot not sent: the lag is its age, growing.
fn lag_grows_with_a_snapshot_not_sent(n: &Nodes, a: &str, pa: u16, b_ip: &str) {
    write_file(&n.data(a).join("volumes/db/more"), 64 << 10, 2);
    let s2 = n.snapshot(a, "db");
    let created = otime(&n.data(a).join("snapshots").join(&s2));
    let mut st = status(n, a);
    wait_until("the lag to reach 2 s", 10, || {
        st = status(n, a);
        volume(&st, "db").peers[0].lag_seconds >= 2
    });
    let peer = &volume(&st, "db").peers[0];
    assert_eq!(peer.lag_seconds, st.now.timestamp() - created);
    assert_eq!(peer.unsent_snapshots, 1);
    assert_eq!(volume(&st, "db").snapshots, snapshots_on_disk(n, a, "db"));
    let page = scrape(a, pa);
    let lag = page.value(
        "buttervolume_replication_lag_seconds",
        &[("volume", "db"), ("peer", b_ip)],
    );
    assert!(
        lag >= peer.lag_seconds as f64,
        "{lag} < {}",
        peer.lag_seconds
    );
}

/// The background measurement is `du`'s figure once the volume is quiet.
fn size_is_what_du_says(n: &Nodes, a: &str, pa: u16) {
    let du = || {
        let out = n.exec(a, &["du", "-s", "-B1", "/var/lib/buttervolume/volumes/db"]);
        let text = testkit::succeeded(out, "du");
        text.split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    wait_until("status to show du's size", 60, || {
        let st = status(n, a);
        let db = volume(&st, "db");
        !db.size_stale && db.size_bytes == Some(du())
    });
    let page = scrape(a, pa);
    assert_eq!(
        page.value("buttervolume_volume_size_bytes", &[("volume", "db")]),
        du() as f64
    );
}
