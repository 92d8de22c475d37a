//! Peers as `status` shows them: who a job names, failed sends, lag.

use super::*;

#[test]
fn a_user_at_host_job_is_the_peer_its_markers_name() {
    let f = fixture();
    f.volume("db");
    f.snapshot("db@1", 10);
    // What a send to root@p records.
    f.marker("db@1", "root@p", 5);
    let status = f.collect(&listed(vec![job("db", "replicate:root@p", "60")]));
    let peers = &volume(&status, "db").peers;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].host, "p");
    assert_eq!(peers[0].lag_seconds, 0);
    assert!(status.problems.is_empty(), "{:?}", status.problems);
}

#[test]
fn a_failed_send_shows_on_its_peer_first_until_one_succeeds() {
    let f = fixture();
    f.volume("aab");
    f.volume("sf");
    f.snapshot("sf@1", 400);
    f.marker("sf@1", "10.1.0.3", 390);
    f.snapshot("sf@2", 30);
    // The final send of sf@2 was cut (a `send`, no job).
    f.store
        .send_failures()
        .record("sf", "root@10.1.0.3", Err("the link went down".into()));
    let status = f.collect(&listed(vec![]));
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    let problem = &status.problems[0];
    assert_eq!(problem.kind, ProblemKind::SendFailed);
    assert_eq!(problem.volume.as_deref(), Some("sf"));
    assert_eq!(problem.peer.as_deref(), Some("10.1.0.3"));
    assert!(
        problem.message.contains("the link went down"),
        "{problem:?}"
    );
    // Problems first: sf before aab.
    assert_eq!(status.volumes[0].name, "sf");
    let sf = volume(&status, "sf");
    assert_eq!(
        sf.last_error.as_deref(),
        Some("send to 10.1.0.3: the link went down")
    );
    let peer = &sf.peers[0];
    assert_eq!(peer.last_failure.as_deref(), Some("the link went down"));
    assert_eq!(peer.sent_snapshot.as_deref(), Some("sf@1"));
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (30, 1));
    // A failing replicate job says it already: no second problem.
    let mut failing = job("sf", "replicate:10.1.0.3", "60");
    failing.last_ok = Some(false);
    failing.last_result = Some("error: the link went down".into());
    let status = f.collect(&listed(vec![failing]));
    let kinds: Vec<ProblemKind> = status.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::JobFailed]);
    // A send to a peer never sent to before shows that peer too.
    f.store
        .send_failures()
        .record("aab", "10.1.0.4", Err("refused".into()));
    let status = f.collect(&listed(vec![]));
    let aab = volume(&status, "aab");
    assert_eq!(aab.peers.len(), 1);
    assert_eq!(aab.peers[0].sent_snapshot, None);
    // The next send that succeeds clears it.
    f.store.send_failures().record("sf", "10.1.0.3", Ok(()));
    f.store.send_failures().record("aab", "10.1.0.4", Ok(()));
    let status = f.collect(&listed(vec![]));
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    assert_eq!(volume(&status, "sf").last_error, None);
    assert_eq!(volume(&status, "sf").peers[0].last_failure, None);
}

#[test]
fn a_snapshot_received_from_elsewhere_is_not_lag() {
    let f = fixture();
    f.volume("rx");
    f.snapshot("rx@1", 500);
    f.marker("rx@1", "10.1.0.2", 490);
    // The peer pushed rx@2 here (its own state): this node holds nothing
    // the peer lacks, and nothing that exists only here.
    let dest = f.snapshot_path("rx@2");
    f.fs.receive(&f.store.existing("rx").unwrap(), &dest, "peer-uuid-2");
    f.fs.set_otime(&dest, f.now.timestamp() - 60);
    let status = f.collect(&listed(vec![]));
    let rx = volume(&status, "rx");
    assert_eq!(rx.snapshots, 2);
    assert_eq!(rx.newest_snapshot.as_deref(), Some("rx@2"));
    let peer = &rx.peers[0];
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (0, 0));
    // A snapshot made here after it is.
    f.snapshot("rx@3", 20);
    let status = f.collect(&listed(vec![]));
    let peer = &volume(&status, "rx").peers[0];
    assert_eq!((peer.lag_seconds, peer.unsent_snapshots), (20, 1));
}
