//! The transition matrix itself: steps 1 to 5c on three nodes.

use super::*;

/// The two runs take turns: each brings up three nodes with their own
/// dockerd, and its step timings assume the machine to itself.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_deploy_handlers_transition_matrix_on_three_nodes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::up("cs", false);
    matrix(&c);
}

/// The same 3.4/3.13 CLI sequences with the nodes in cluster mode (a
/// three-member etcd on the three nodes): ownership follows the handler's
/// `down`/`up` and nothing it does is refused that pair mode accepts.
#[test]
fn the_deploy_handlers_transition_matrix_in_cluster_mode() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::up("ch", true);
    matrix(&c);
    // It ran in cluster mode: every node held a lease, and the app's
    // volumes changed owners with the handler's moves (epochs past 1).
    let mut epochs = Vec::new();
    for k in 0..3 {
        let (status, _) = c.status_and_metrics("cluster mode", k);
        let cluster = status.cluster.expect("the Cluster part of status");
        assert!(cluster.lease_age_seconds.is_some(), "node {k}: no lease");
        epochs.extend(status.volumes.iter().filter_map(|v| v.owner.clone()));
    }
    assert!(
        epochs.iter().any(|o| !o.contains(" epoch 1,")),
        "no volume ever changed owner: {epochs:?}"
    );
}

fn matrix(c: &Cluster) {
    let t0 = std::time::Instant::now();
    let app = App::new("shop");
    let (data, conf) = (app.data(), app.conf());
    let [n1, n2, n3] = [0, 1, 2];

    // 1) New app on node 1 with its replica on node 2: nothing -> master,
    // nothing -> slave, nothing -> nothing.
    let step = "step 1 (new app)";
    let place1 = at(n1, Some(n2));
    all_ok(
        step,
        &c.deploy(&app, None, place1, Cli::V34, &Hooks::default()),
    );
    c.assert_placement(step, &app, place1, Cli::V34);
    // The replicate lines are due at once: the running app's state is
    // pushed to the slave (both volumes: the app wrote into each).
    for volume in app.volumes() {
        let marker = c.wait_replicated(n1, n2, &volume, &[]);
        let snap = marker.rsplit_once('@').unwrap().0;
        assert!(
            c.data(n2).join("snapshots").join(snap).exists(),
            "{step}: {snap}"
        );
    }
    assert_eq!(read(c, n1, &data, "log"), "start\n");
    c.work(n1, &app, "one");
    eprintln!("step 1 done: {:.1} s", t0.elapsed().as_secs_f64());

    // 2) Swap: master -> slave on node 1, slave -> master on node 2.
    let step = "step 2 (swap)";
    let place2 = at(n2, Some(n1));
    let work = || c.work(n1, &app, "two");
    let hooks = Hooks {
        while_running: Some(&work),
        ..Hooks::default()
    };
    all_ok(
        step,
        &c.deploy(&app, Some(place1), place2, Cli::V313, &hooks),
    );
    c.assert_moved_intact(step, &app);
    c.assert_final_sent(step, &app, n1, n2);
    {
        let record = c.record.borrow();
        let stopped = &record.stopped[&data];
        // What was written after the first send, and at the stop, came along.
        assert!(stopped.contains_key("two.bin"), "{step}: {stopped:?}");
    }
    // The old master's `down` ran with its replicate line still active:
    // the last Unmount already sent the stopped state to the old slave.
    assert!(
        c.log(n1).contains(&format!("followed: sent {data}@")),
        "{step}"
    );
    // The new master's first Mount had no replicate line yet (the handler
    // schedules it after `up`): nothing followed there.
    assert!(!c.log(n2).contains("followed: restored"), "{step}");
    c.assert_placement(step, &app, place2, Cli::V34);
    assert_eq!(read(c, n2, &data, "log"), "start\none\ntwo\nstop\nstart\n");
    c.wait_replicated(n2, n1, &data, &[]);
    // The new master's status: the new slave holds what the marker says,
    // replicated by the scheduled line, nothing left unsent.
    wait_until(
        format!("{step}: node 2's status of {data} caught up"),
        60,
        || {
            let (st, _) = c.status_and_metrics(step, n2);
            let v = st.volumes.iter().find(|v| v.name == data).unwrap();
            let peer = v.peers.iter().find(|p| p.host == c.ips[n1]).unwrap();
            assert_eq!(peer.replicate_timer.as_deref(), Some("60"), "{step}");
            assert_eq!(peer.last_failure, None, "{step}");
            peer.sent_snapshot.is_some() && peer.unsent_snapshots == 0 && peer.lag_seconds == 0
        },
    );
    // The new slave: its volumes went with `down -v`; what it received is
    // no volume of its own.
    let (st, _) = c.status_and_metrics(step, n1);
    assert!(
        st.volumes.iter().all(|v| v.name != data),
        "{step}: {:?}",
        st.volumes
    );
    c.work(n2, &app, "three");
    eprintln!("step 2 done: {:.1} s", t0.elapsed().as_secs_f64());

    // 3) Redeploy the same placement: master -> master on node 2 (no
    // restore), slave -> slave on node 1.
    let step = "step 3 (redeploy)";
    let before = c.markers_of(n2, n1, &data);
    let n1_had = c.snapshots_of(n1, &data);
    all_ok(
        step,
        &c.deploy(&app, Some(place2), place2, Cli::V34, &Hooks::default()),
    );
    c.assert_placement(step, &app, place2, Cli::V313);
    {
        let record = c.record.borrow();
        // The snapshot after the stop, kept here; the app went on with
        // exactly the data it stopped with (no restore).
        let taken = &record.snapshots[&(n2, data.clone())];
        assert_eq!(taken.len(), 1, "{step}: {taken:?}");
        let snap = c.data(n2).join("snapshots").join(&taken[0]);
        assert_eq!(state_of(&snap), record.stopped[&data], "{step}");
        assert!(
            record.restored.is_empty(),
            "{step}: master -> master restored"
        );
        // The slave got the stopped state from the last Unmount.
        let got: Vec<String> = c
            .snapshots_of(n1, &data)
            .into_iter()
            .filter(|s| !n1_had.contains(s))
            .collect();
        assert!(
            got.iter()
                .any(|s| state_of(&c.data(n1).join("snapshots").join(s)) == record.stopped[&data]),
            "{step}: node 1 never got the stopped state: {got:?}"
        );
    }
    assert_eq!(
        read(c, n2, &data, "log"),
        "start\none\ntwo\nstop\nstart\nthree\nstop\nstart\n"
    );
    c.wait_replicated(n2, n1, &data, &before);
    c.work(n2, &app, "four");
    eprintln!("step 3 done: {:.1} s", t0.elapsed().as_secs_f64());

    // 4) Move to node 3 without a replica: master -> nothing (node 2),
    // slave -> nothing (node 1), nothing -> master (node 3).
    let step = "step 4 (move to node 3)";
    let place4 = at(n3, None);
    let work = || c.work(n2, &app, "five");
    let hooks = Hooks {
        while_running: Some(&work),
        ..Hooks::default()
    };
    all_ok(
        step,
        &c.deploy(&app, Some(place2), place4, Cli::V313, &hooks),
    );
    c.assert_moved_intact(step, &app);
    c.assert_final_sent(step, &app, n2, n3);
    c.assert_placement(step, &app, place4, Cli::V34);
    // The snapshot line (no slave), due at once, snapshots the running app.
    wait_until("node 3's scheduled snapshot", 60, || {
        c.snapshots_of(n3, &data).iter().any(|s| {
            let id = buttervolume::btrfs::identity(&c.data(n3).join("snapshots").join(s));
            id.is_ok_and(|id| id.received_uuid.is_none())
        })
    });
    let (st, _) = c.status_and_metrics(step, n3);
    assert!(st.volumes.iter().any(|v| v.name == data), "{step}");
    eprintln!("step 4 done: {:.1} s", t0.elapsed().as_secs_f64());

    // Migrate between two apps on node 3 (the handler's `migrate` event,
    // source and target both there): `restore <src> <tgt>` only into
    // volumes Docker does not label non-migrable.
    let pre = App::new("pre");
    all_ok(
        "pre",
        &c.deploy(&pre, None, at(n3, None), Cli::V313, &Hooks::default()),
    );
    let pre_settings = read(c, n3, &pre.conf(), "settings");
    c.migrate(&app, &pre, n3, Cli::V313).unwrap();
    let newest = c.newest_snapshot(n3, &data);
    let mut expected = state_of(&c.data(n3).join("snapshots").join(&newest));
    expected.insert("log".into(), 0); // the target app starts again and logs
    let mut got = state_of(&c.data(n3).join("volumes").join(pre.data()));
    got.insert("log".into(), 0);
    assert_eq!(
        got, expected,
        "migrate: pre's data is not shop's newest snapshot"
    );
    assert_eq!(
        read(c, n3, &pre.conf(), "settings"),
        pre_settings,
        "migrate overwrote pre_conf"
    );
    // Docker lost shop_conf's label on node 3 (the volume came from a
    // restore, not from Docker): the handler's check would take it as
    // migrable. The plugin's own flag refuses the overwrite.
    assert!(c.migrable(n3, &conf), "Docker kept the label after all");
    // pre's scheduled snapshot line first runs at the scheduler's next
    // round (as the reference's): the refusal needs a snapshot to restore.
    wait_until("pre_conf's scheduled snapshot on node 3", 60, || {
        !c.snapshots_of(n3, &pre.conf()).is_empty()
    });
    let err = c
        .restore(n3, Cli::V34, &pre.conf(), Some(&conf))
        .unwrap_err();
    assert!(
        err.contains("non-migrable") || err.contains("nonmigrable"),
        "{err}"
    );
    assert_eq!(read(c, n3, &conf, "settings"), "settings of shop\n");
    c.compose(n3, &pre, &["down", "-v"]).unwrap();
    for volume in pre.volumes() {
        c.bv(
            n3,
            Cli::V34,
            "schedule snapshot 0 V",
            &["schedule", "snapshot", "0", &volume],
        )
        .unwrap();
        c.bv(
            n3,
            Cli::V313,
            "schedule purge:1h:1d:1w:4w:1y 0 V",
            &["schedule", PURGE, "0", &volume],
        )
        .unwrap();
    }
    c.assert_placement("after the migrate", &app, place4, Cli::V313);
    eprintln!("migrate done: {:.1} s", t0.elapsed().as_secs_f64());

    // 5) The same kind of move (node 3 -> node 1, no replica), its final
    // send failing: a) the link cut while the send runs, b) the new
    // master's disk full. The handler on node 3 raises, flags the failure
    // and starts the app again; the handler on node 1 ignores the flag and
    // runs `restore` for each volume, which would bring back the older
    // state that did land. The plugin refuses it (crate::takeover).
    let place5 = at(n1, None);
    let big = |name: &str| {
        let script = format!(
            "head -c 100663296 /dev/urandom > /data/{name}.bin && echo {name} >> /data/log"
        );
        c.docker(n3, &["exec", &app.container(), "sh", "-c", &script]);
    };

    let step = "step 5a (link cut during the final send)";
    let work = || big("big");
    let cutter: RefCell<Option<std::thread::JoinHandle<()>>> = RefCell::default();
    let cut = || {
        let snapshots = c.data(n1).join("snapshots");
        let node = c.names[n1].clone();
        *cutter.borrow_mut() = Some(std::thread::spawn(move || {
            wait_until("the final send to land data on node 1", 60, || {
                entries(&snapshots).iter().any(|e| {
                    e.starts_with(".recv.")
                        && std::fs::metadata(snapshots.join(e).join("big.bin"))
                            .is_ok_and(|m| m.len() > 8 << 20)
                })
            });
            let out = nodes_sh(&["link", &node, "down"]);
            assert!(out.status.success(), "{}", stderr(&out));
        }));
    };
    let hooks = Hooks {
        while_running: Some(&work),
        before_final_sends: Some(&cut),
    };
    let send_errors = [
        ("endpoint", "/VolumeDriver.Snapshot.Send"),
        ("outcome", "error"),
    ];
    let restore_errors = [
        ("endpoint", "/VolumeDriver.Snapshot.Restore"),
        ("outcome", "error"),
    ];
    let sends_failed = c.counter(n3, "buttervolume_requests_total", &send_errors);
    let restores_refused = c.counter(n1, "buttervolume_requests_total", &restore_errors);
    let outcome = c.deploy(&app, Some(place4), place5, Cli::V34, &hooks);
    cutter.take().unwrap().join().unwrap();
    let landed = c.assert_failed_move(step, &app, &outcome, n3, n1);
    // Node 1 could ask nobody (its link is still down): refused.
    let err = outcome[n1].as_ref().unwrap_err();
    assert!(
        err.contains(&format!(
            "restore of {data} refused: the newest snapshot here ({landed}) came from another node"
        )) && err.contains("could not be asked"),
        "{step}: {err}"
    );
    c.n.link(&c.names[n1], "up");
    // Link back: the handler's restore again (3.13 this time) is refused
    // because node 3, where that snapshot was made, holds a newer one.
    let err = c.restore(n1, Cli::V313, &data, None).unwrap_err();
    let left = c.record.borrow().snapshots[&(n3, data.clone())]
        .last()
        .unwrap()
        .clone();
    assert!(
        err.contains(&format!(
            "{} holds a newer state of {data} ({left})",
            c.ips[n3]
        )),
        "{step}: {err}"
    );
    assert!(
        c.log(n1).contains(&format!("restore of {data} refused")),
        "{step}: not in the log"
    );
    c.assert_placed(step, &app, at(n3, None), Cli::V313, false);
    let failed_5a = c.assert_send_failure_shown(step, &app, n3, n1);
    assert_eq!(
        c.counter(n3, "buttervolume_requests_total", &send_errors) - sends_failed,
        1.0,
        "{step}: the failed send"
    );
    // The handler's refused restore, then ours.
    assert_eq!(
        c.counter(n1, "buttervolume_requests_total", &restore_errors) - restores_refused,
        2.0,
        "{step}: the refused restores"
    );
    c.status_and_metrics(step, n1);
    eprintln!("step 5a done: {:.1} s", t0.elapsed().as_secs_f64());

    let step = "step 5b (the new master's disk full)";
    c.work(n3, &app, "nine");
    let filler = c.data(n1).join("filler");
    let work = || big("big2");
    let fill = || {
        // Leave less than the final send's 96 MiB on node 1 (statvfs
        // overestimates btrfs's free space: step down until it fits).
        let stat = nix::sys::statvfs::statvfs(&c.data(n1)).unwrap();
        let mut size = (stat.blocks_available() * stat.fragment_size()) as i64 - (40 << 20);
        let file = std::fs::File::create(&filler).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        while let Err(e) = nix::fcntl::fallocate(fd, nix::fcntl::FallocateFlags::empty(), 0, size) {
            assert_eq!(e, nix::errno::Errno::ENOSPC, "filling node 1");
            size -= 16 << 20;
        }
    };
    let hooks = Hooks {
        while_running: Some(&work),
        before_final_sends: Some(&fill),
    };
    let sends_failed = c.counter(n3, "buttervolume_requests_total", &send_errors);
    let receive_failures = c.counter(n1, "buttervolume_peer_receive_failures_total", &[]);
    let peer_log_path = c.data(n1).join("state/ssh-command.log");
    let outcome = c.deploy(&app, Some(place4), place5, Cli::V313, &hooks);
    std::fs::remove_file(&filler).unwrap();
    buttervolume::btrfs::sync(&c.data(n1)).unwrap();
    c.assert_failed_move(step, &app, &outcome, n3, n1);
    let left = c.record.borrow().snapshots[&(n3, data.clone())]
        .last()
        .unwrap()
        .clone();
    let err = outcome[n1].as_ref().unwrap_err();
    assert!(
        err.contains(&format!(
            "{} holds a newer state of {data} ({left})",
            c.ips[n3]
        )),
        "{step}: {err}"
    );
    c.assert_placed(step, &app, at(n3, None), Cli::V34, false);
    let failed_5b = c.assert_send_failure_shown(step, &app, n3, n1);
    assert!(failed_5b >= failed_5a, "{step}: {failed_5b} < {failed_5a}");
    assert_eq!(
        c.counter(n3, "buttervolume_requests_total", &send_errors) - sends_failed,
        1.0,
        "{step}: the failed send"
    );
    // The stream that did not fit, from node 1's forced command (its log
    // keeps room allocated for the lines a full disk would refuse). That
    // process logs it as it ends, which may be after the sender gave up.
    let counted =
        || c.counter(n1, "buttervolume_peer_receive_failures_total", &[]) > receive_failures;
    wait_until(
        Lazy(|| {
            format!(
                "{step}: node 1 to count the receive that failed; its forced command's log ends with:\n{}",
                testkit::dockerd::tail(&peer_log_path, 5)
            )
        }),
        60,
        counted,
    );
    c.status_and_metrics(step, n1);
    eprintln!("step 5b done: {:.1} s", t0.elapsed().as_secs_f64());

    // 5c) The same move once nothing fails: node 1 gets exactly what node
    // 3 stopped with, the two big files included; nothing was lost.
    let step = "step 5c (the move again)";
    c.work(n3, &app, "ten");
    all_ok(
        step,
        &c.deploy(&app, Some(place4), place5, Cli::V34, &Hooks::default()),
    );
    c.assert_moved_intact(step, &app);
    c.assert_final_sent(step, &app, n3, n1);
    c.assert_placement(step, &app, place5, Cli::V313);
    let log = read(c, n1, &data, "log");
    for line in ["big", "nine", "big2", "ten"] {
        assert!(log.lines().any(|l| l == line), "{step}: {line} lost: {log}");
    }
    // Nothing failing any more: the new master shows no failed send, the
    // old master no volume (`down -v`).
    let (st, _) = c.status_and_metrics(step, n1);
    assert!(
        st.problems
            .iter()
            .all(|p| p.kind != ProblemKind::SendFailed),
        "{step}: {:?}",
        st.problems
    );
    let (st, _) = c.status_and_metrics(step, n3);
    assert!(st.volumes.iter().all(|v| v.name != data), "{step}");
    eprintln!("step 5c done: {:.1} s", t0.elapsed().as_secs_f64());

    // The handler schedules replicate only after `up`: no first Mount of
    // the scenario had an active replicate line, so follow never restored.
    for k in 0..3 {
        assert!(!c.log(k).contains("followed: restored"), "node {}", k + 1);
    }
    assert_eq!(
        c.forms_not_run_through_both(),
        vec![],
        "handler commands not run through both CLIs"
    );

    c.compose(n1, &app, &["down"]).unwrap();
    for k in 0..3 {
        c.n.docker_stop(&c.names[k]);
    }
    eprintln!("total: {:.1} s", t0.elapsed().as_secs_f64());
}
