//! Idle rounds and SSH sessions: one question per volume, OpenSSH for
//! full sends with sessions kept, progress of a running send.

use super::*;

/// The commands `node`'s forced command accepted, in order.
fn peer_commands(n: &Nodes, node: &str) -> Vec<String> {
    let log = std::fs::read_to_string(n.data(node).join("state/ssh-command.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("outcome=accepted"))
        .filter_map(|l| l.split("command=").nth(1))
        .map(|c| c.trim_matches('"').to_string())
        .collect()
}

/// An idle round (replicated volumes no container uses here) asks the
/// peer once for all of them (`list-newest`), not once per volume, and
/// still pulls exactly what the peer holds and this node lacks, restoring
/// nothing.
#[test]
fn an_idle_round_asks_the_peer_once_for_every_volume() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("ri", "2G");
    for v in ["v1", "v2", "v3"] {
        n.ok(&a, "/VolumeDriver.Create", json!({"Name": v}));
        write_file(&n.data(&a).join(format!("volumes/{v}/a")), 4096, 1);
    }
    // v1: b holds a's state. v2: b holds a state made there, which a
    // lacks. v3: b holds nothing.
    let s1 = n.snapshot(&a, "v1");
    n.send(&a, &s1, &b_ip);
    n.ok(&b, "/VolumeDriver.Create", json!({"Name": "v2"}));
    // b replicates v2 with a (its line, paused here): a's key may pull it.
    n.paused_line(&b, "v2", &format!("replicate:{}", n.ip(&a)));
    write_file(&n.data(&b).join("volumes/v2/b"), 1 << 20, 2);
    let b2 = n.snapshot(&b, "v2");
    let before = peer_commands(&n, &b).len();

    // New lines run at once (they never ran); nothing is mounted on a.
    for v in ["v1", "v2", "v3"] {
        n.ok(
            &a,
            "/VolumeDriver.Schedule",
            json!({"Name": v, "Action": format!("replicate:{b_ip}"), "Timer": 60}),
        );
    }
    let results = || -> Vec<String> {
        let (_, text) = testkit::raw_request(
            &n.socket(&a),
            "GET",
            "/VolumeDriver.Schedule.List",
            br#"{"Detail": true}"#,
        );
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        ["v1", "v2", "v3"]
            .iter()
            .map(|v| {
                list["Schedule"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|j| j["Name"] == *v)
                    .and_then(|j| j["LastResult"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    testkit::wait_until("the three idle jobs to run", 60, || {
        results().iter().all(|r| !r.is_empty())
    });
    let r = results();
    assert!(
        r[0].contains(&format!("{s1} from {b_ip} is already here")),
        "{r:?}"
    );
    assert!(
        r[1].contains(&format!("received {b2} from {b_ip} in full")),
        "{r:?}"
    );
    assert!(
        r[2].contains(&format!("{b_ip} has no snapshot of v3 yet")),
        "{r:?}"
    );

    // One question for the round; only v2, which had something new, was
    // listed and sent on its own; nothing was received there (a pushes no
    // state no container wrote on a).
    let asked = peer_commands(&n, &b).split_off(before);
    assert_eq!(
        asked,
        [
            "buttervolume list-newest".to_string(),
            "buttervolume list v2".to_string(),
            format!("buttervolume send {b2}"),
        ],
        "{asked:?}"
    );
    // b2 landed on a as b's snapshot; a's volume v2 was not restored.
    let landed = identity(&n.data(&a).join("snapshots").join(&b2));
    let made = identity(&n.data(&b).join("snapshots").join(&b2));
    assert_eq!(landed.received_uuid.as_deref(), Some(made.uuid.as_str()));
    assert!(n.data(&a).join("volumes/v2/a").exists());
    assert!(!n.data(&a).join("volumes/v2/b").exists());
}

/// The client ports of the SSH connections that ran `verb` on `node`
/// (its forced command logs `SSH_CLIENT` = "ip port server-port").
fn client_ports(n: &Nodes, node: &str, verb: &str) -> Vec<String> {
    let log = std::fs::read_to_string(n.data(node).join("state/ssh-command.log")).unwrap();
    log.lines()
        .filter(|l| l.contains(&format!("command=\"buttervolume {verb}")))
        .map(|l| {
            let client = l.split("client=").nth(1).unwrap();
            client.split_whitespace().nth(1).unwrap().to_string()
        })
        .collect()
}

#[test]
fn full_sends_run_openssh_and_sessions_are_kept_between_sends() {
    let (n, a, b, b_ip) = Nodes::sender_and_receiver("rt", "3G");
    // An `ssh` on the daemon's PATH that records each run, then runs the
    // real one.
    let wrap =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ssh-wrap-{}", std::process::id()));
    std::fs::create_dir_all(&wrap).unwrap();
    let runs = wrap.join("runs");
    std::fs::write(
        wrap.join("ssh"),
        format!(
            "#!/bin/sh\necho \"$*\" >>{}\nexec /usr/bin/ssh \"$@\"\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        wrap.join("ssh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    n.stop(&a);
    let path = format!(
        "PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        wrap.display()
    );
    n.start_with(&a, &[&path]);
    let ssh_runs = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };

    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("big"), 8 << 20, 1);
    let s1 = n.snapshot(&a, "db");
    let summary = n.send(&a, &s1, &b_ip);
    assert!(summary.contains("in full"), "{summary}");
    assert_eq!(
        digest(&n.data(&b).join("snapshots").join(&s1).join("big")),
        digest(&vol.join("big"))
    );
    // The full stream went through OpenSSH, with the plugin's known_hosts
    // and a strict host key check.
    let full = ssh_runs();
    assert_eq!(full.len(), 1, "{full:?}");
    assert!(full[0].contains("StrictHostKeyChecking=yes"), "{full:?}");
    assert!(
        full[0].contains(&format!("{b_ip} buttervolume receive")),
        "{full:?}"
    );

    // Incremental sends stay on the libssh2 session of the listing, and
    // that session is kept from one send to the next: every listing and
    // incremental receive came through one connection.
    for i in 0..3u8 {
        write_file(&vol.join(format!("f{i}")), 64 << 10, i);
        let s = n.snapshot(&a, "db");
        let summary = n.send(&a, &s, &b_ip);
        assert!(summary.contains("incrementally"), "{summary}");
    }
    assert_eq!(
        ssh_runs().len(),
        1,
        "incrementals ran ssh: {:?}",
        ssh_runs()
    );
    let mut ports = client_ports(&n, &b, "list");
    ports.extend(client_ports(&n, &b, "receive --parent-uuid"));
    ports.sort();
    ports.dedup();
    assert_eq!(
        ports.len(),
        1,
        "one kept session expected, saw ports {ports:?}"
    );

    // The kept session dies on the peer's side (its sshd process is
    // killed): the next send connects anew and succeeds.
    let out = std::process::Command::new("pgrep")
        .args(["-f", "^sshd: root@notty"])
        .output()
        .unwrap();
    let netns = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    let b_netns = std::fs::metadata(format!("/run/netns/{b}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if netns(pid) == Some(b_netns) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            killed += 1;
        }
    }
    assert_eq!(killed, 1, "the kept session's sshd process on {b}");
    write_file(&vol.join("after"), 64 << 10, 9);
    let s = n.snapshot(&a, "db");
    let summary = n.send(&a, &s, &b_ip);
    assert!(summary.contains("incrementally"), "{summary}");
    assert_eq!(
        digest(&n.data(&b).join("snapshots").join(&s).join("after")),
        digest(&vol.join("after"))
    );
    let _ = std::fs::remove_dir_all(&wrap);
}

/// While a send runs, the daemon's transfer registry
/// (`GET /VolumeDriver.Transfers`, what `buttervolume send` draws on a
/// terminal) reports it with growing bytes and, for a full send, the
/// volume's measured size as the estimate; off a terminal the CLI prints
/// exactly one summary line, on stderr, and nothing on stdout.
#[test]
fn a_running_send_reports_growing_bytes_and_the_cli_one_summary_line() {
    use buttervolume::api::{StatusReply, TransfersReply};
    let (n, a, _b, b_ip) = Nodes::sender_and_receiver("rg", "2G");
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "big"}));
    let vol = n.data(&a).join("volumes/big");
    write_file(&vol.join("noise"), 24 << 20, 9);
    let s1 = n.snapshot(&a, "big");
    // The size status measures (in the background) is the full send's
    // estimate.
    let size = || {
        let out = n.cli(&a, &["status", "--json"]);
        let status: StatusReply =
            serde_json::from_str(&testkit::succeeded(out, "status --json")).unwrap();
        let v = status.volumes.iter().find(|v| v.name == "big").cloned();
        v.filter(|v| !v.size_stale).and_then(|v| v.size_bytes)
    };
    testkit::wait_until("the volume's size measured", 60, || size().is_some());
    let measured = size().unwrap();
    assert!(measured >= 24 << 20, "{measured}");

    let transfers = || -> TransfersReply {
        let (status, text) =
            testkit::raw_request(&n.socket(&a), "GET", "/VolumeDriver.Transfers", b"");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    assert_eq!(transfers(), TransfersReply::default());
    let mine = |reply: TransfersReply| {
        reply
            .transfers
            .into_iter()
            .find(|t| t.snapshot == s1 && t.host == b_ip)
    };
    let out = std::thread::scope(|scope| {
        // 24 MiB at 4 MiB/s: several seconds on the wire.
        let cli = scope.spawn(|| n.cli(&a, &["send", "--bwlimit", "4", &b_ip, &s1]));
        let mut first = 0;
        testkit::wait_until("the send in the registry with bytes", 60, || {
            let seen = mine(transfers());
            first = seen.map_or(0, |t| t.bytes);
            first > 0
        });
        let mut seen = None;
        testkit::wait_until("its bytes growing", 60, || {
            seen = mine(transfers()).filter(|t| t.bytes > first);
            seen.is_some()
        });
        let seen = seen.unwrap();
        assert_eq!(seen.full, Some(true), "{seen:?}");
        assert_eq!(seen.estimated_bytes, Some(measured), "{seen:?}");
        assert!(seen.wire_bytes <= seen.bytes, "{seen:?}");
        cli.join().unwrap()
    });
    let stderr = testkit::stderr(&out);
    assert!(out.status.success(), "send failed: {stderr}");
    assert_eq!(
        testkit::stdout(&out),
        "",
        "3.13's send prints nothing on stdout"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(
        lines[0].starts_with(&format!("sent {s1} to {b_ip} in full: ")),
        "{stderr:?}"
    );
    assert!(!stderr.contains('\r'), "no progress drawn off a terminal");
    // Done: nothing running any more.
    assert_eq!(transfers(), TransfersReply::default());

    // On a terminal: the line refreshed in place, with an ETA for this
    // full send (its size is measured), then the summary.
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "big2"}));
    write_file(&n.data(&a).join("volumes/big2/noise"), 16 << 20, 3);
    let s2 = n.snapshot(&a, "big2");
    testkit::wait_until("big2's size measured", 60, || {
        let out = n.cli(&a, &["status", "--json"]);
        let status: StatusReply =
            serde_json::from_str(&testkit::succeeded(out, "status --json")).unwrap();
        let v = status.volumes.into_iter().find(|v| v.name == "big2");
        v.is_some_and(|v| !v.size_stale && v.size_bytes.is_some())
    });
    let (master, slave) = pty();
    let mut child = std::process::Command::new(testkit::bin())
        .args(["send", "--bwlimit", "4", &b_ip, &s2])
        .env("BUTTERVOLUME_SOCKET", n.socket(&a))
        .stdout(std::process::Stdio::piped())
        .stderr(slave)
        .spawn()
        .unwrap();
    let drawn = std::thread::spawn(move || {
        let mut master = master;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the CLI, the last holder of the terminal, is gone.
        while let Ok(got) = std::io::Read::read(&mut master, &mut buf) {
            if got == 0 {
                break;
            }
            all.extend_from_slice(&buf[..got]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let status = child.wait().unwrap();
    let drawn = drawn.join().unwrap();
    assert!(status.success(), "{drawn}");
    let line = format!("\rsending {s2} to {b_ip}: ");
    assert!(
        drawn.matches(&line).count() >= 2,
        "refreshed in place: {drawn:?}"
    );
    assert!(drawn.contains(" MiB (full, ~"), "{drawn:?}");
    assert!(drawn.contains(" MiB/s, ETA "), "{drawn:?}");
    let summary = drawn.rsplit("\x1b[K").next().unwrap();
    assert!(
        summary.starts_with(&format!("sent {s2} to {b_ip} in full: ")),
        "the line is cleared, then the summary: {drawn:?}"
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout, "");
}

/// A pseudo-terminal: its master side, and its slave side to give a
/// child as its stderr.
fn pty() -> (std::fs::File, std::fs::File) {
    use nix::libc;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: a new descriptor, checked, that the File then owns.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(fd >= 0, "posix_openpt");
    // SAFETY: fd is ours and open; nothing else owns it.
    let master = unsafe { std::fs::File::from_raw_fd(fd) };
    // SAFETY: fd is a pseudo-terminal master.
    assert_eq!(unsafe { libc::grantpt(fd) }, 0, "grantpt");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::unlockpt(fd) }, 0, "unlockpt");
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: writes a NUL-terminated name of at most `name.len()` bytes.
    let named = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
    assert_eq!(named, 0, "ptsname_r");
    // SAFETY: ptsname_r succeeded: `name` holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .unwrap();
    (master, slave)
}
