//! The daemon as a process: its socket (stale or live), SIGTERM with
//! requests in flight, a non-btrfs data dir, inherited descriptors.

use super::*;

#[test]
fn stale_socket_is_replaced_and_live_one_is_not_stolen() {
    let mut d = Daemon::start("stale");
    d.ok("/VolumeDriver.Create", json!({"Name": "s"}));
    // A second daemon on the same socket must refuse, not steal it.
    let out = std::process::Command::new(testkit::bin())
        .arg("run")
        .envs(d.env.iter().cloned())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
    d.ok("/VolumeDriver.List", json!({}));
    // A crash leaves the socket file; the next start replaces it.
    d.kill9();
    assert!(d.socket.exists());
    d.spawn();
    let reply = d.ok("/VolumeDriver.List", json!({}));
    assert_eq!(reply["Volumes"], json!([{"Name": "s"}]));
}

/// A stand-in for Docker's API socket that hands each request it receives
/// to the test and answers only when the test says so: a daemon handler
/// waiting on it is observably in flight.
struct HeldDocker {
    requests: mpsc::Receiver<(HttpRequest, UnixStream)>,
}

impl HeldDocker {
    fn bind(path: &Path) -> HeldDocker {
        let listener = UnixListener::bind(path).unwrap();
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if let Some(request) = read_http_request(&mut reader) {
                    if tx.send((request, stream)).is_err() {
                        return;
                    }
                }
            }
        });
        HeldDocker { requests }
    }

    /// The next request, its connection still waiting for the answer.
    fn next(&self) -> (HttpRequest, UnixStream) {
        self.requests
            .recv_timeout(Duration::from_secs(10))
            .expect("the daemon never asked Docker")
    }
}

/// SIGTERM while a request is observably running: Inspect is waiting for
/// Docker's answer (the volume's labels), held by the test. The daemon
/// stops listening at once but keeps running; once Docker answers, the
/// request completes with its full reply (carrying what Docker said after
/// the signal), then the daemon exits cleanly. A server that dropped
/// in-flight requests on SIGTERM gives no reply at all.
#[test]
fn sigterm_finishes_in_flight_requests_and_removes_socket() {
    let mut d = Daemon::start("shutdown");
    // Made outside the daemon: no Create, so no background label refresh
    // asks Docker anything but the request under test.
    buttervolume::btrfs::create_subvolume(&d.volumes().join("v")).unwrap();
    let docker = HeldDocker::bind(Path::new(
        d.env_value("BUTTERVOLUME_DOCKER_SOCKET").unwrap(),
    ));
    let socket = d.socket.clone();
    let inspect = std::thread::spawn(move || {
        raw_request_tolerant(&socket, "/VolumeDriver.Inspect", br#"{"Name":"v"}"#)
    });
    // The daemon's announcement of its driver to its engine at start
    // (`GET /volumes?filters=...`, crate::announce) may come first: its
    // connection is dropped unanswered, which it only logs.
    let (request, mut held) = loop {
        let (request, held) = docker.next();
        if !request.path.starts_with("/volumes?filters=") {
            break (request, held);
        }
    };
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/volumes/v")
    );

    d.terminate();
    wait_until("the daemon to remove its socket", 10, || !d.socket.exists());
    assert!(
        UnixStream::connect(&d.socket).is_err(),
        "still accepting connections"
    );
    assert!(d.is_running(), "exited with a request in flight");
    assert!(!inspect.is_finished(), "answered before Docker did");

    let labels = r#"{"Name":"v","Labels":{"answered":"after-sigterm"}}"#;
    held.write_all(&http_answer("application/json", labels))
        .unwrap();
    let (status, body) = inspect.join().unwrap();
    assert_eq!(status, 200, "the in-flight request got no answer: {body:?}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["Err"], "", "{reply}");
    assert_eq!(reply["Volume"]["Name"], "v", "{reply}");
    assert_eq!(
        reply["Volume"]["Labels"],
        json!({"answered": "after-sigterm"}),
        "{reply}"
    );
    let status = d.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!d.socket.exists(), "socket left behind");
}

#[test]
fn refuses_to_start_on_non_btrfs() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let out = std::process::Command::new(testkit::bin())
        .arg("run")
        .env("BUTTERVOLUME_VOLUMES_PATH", dir.path().join("v"))
        .env("BUTTERVOLUME_SNAPSHOTS_PATH", dir.path().join("s"))
        .env("BUTTERVOLUME_STATE_PATH", dir.path().join("st"))
        .env("BUTTERVOLUME_SCHEDULE", dir.path().join("c/schedule.csv"))
        .env("BUTTERVOLUME_SOCKET", dir.path().join("bv.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not on a btrfs"), "{err}");
    assert!(!dir.path().join("bv.sock").exists());
}

/// A daemon started by a script that holds a lock (or any other open file)
/// does not keep it: the starter's `flock` is released once it exits.
#[test]
fn the_daemon_keeps_no_inherited_descriptor() {
    use std::os::fd::AsRawFd;
    let lock_path = testkit::test_btrfs().join(format!("starter-lock-{}", std::process::id()));
    let lock = std::fs::File::create(&lock_path).unwrap();
    // A descriptor without CLOEXEC, as flock(1) hands its child.
    let raw = nix::fcntl::fcntl(lock.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD(10)).unwrap();
    let d = Daemon::start("inherit");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", d.pid().unwrap()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !fds.iter().any(|p| p.contains("starter-lock-")),
        "the daemon kept the starter's file open: {fds:?}"
    );
    let _ = nix::unistd::close(raw);
    let _ = std::fs::remove_file(&lock_path);
}
