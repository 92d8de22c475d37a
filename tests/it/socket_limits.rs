//! The control socket under idle-connection pressure: 1,000 connections that
//! send nothing, half a request line or half a body must neither starve
//! Docker's own calls nor pin descriptors forever.
//!
//! The daemon runs under `prlimit --nofile=512:1024`, a descriptor budget
//! smaller than the number of idle connections, so the test shows all three
//! defences: the soft limit raised to the hard one at start, the connection
//! cap with eviction of idle connections, and the header/body read timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{wait_until, Daemon};

/// Header/body read timeout the daemon is started with, in seconds.
const READ_TIMEOUT_SECS: u64 = 2;
/// How long one of Docker's calls may take while the socket is under
/// pressure ("promptly"): less than the read timeout, so a call that only
/// got through because idle connections timed out fails.
const PROMPT: Duration = Duration::from_secs(1);

/// A daemon with the harness's layout, run under `prlimit --nofile=<nofile>`
/// with the test's read timeout; `extra`: more environment variables.
fn limited_daemon(test: &str, nofile: &str, extra: &[(&str, &str)]) -> Daemon {
    let limit = format!("--nofile={nofile}");
    let mut daemon = Daemon::builder(test)
        .env("BUTTERVOLUME_READ_TIMEOUT", &READ_TIMEOUT_SECS.to_string())
        // A thousand connections: keep the log readable.
        .env("RUST_LOG", "info")
        .wrapper(&["prlimit", &limit, "--"]);
    for (key, value) in extra {
        daemon = daemon.env(key, value);
    }
    daemon.start()
}

/// Descriptors the daemon has open right now.
fn open_fds(d: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", d.pid().expect("a running daemon")))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// One request with `Connection: close`, bounded in time: the reply's JSON,
/// or why there was none.
fn call(socket: &Path, path: &str, body: &Value, timeout: Duration) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer within {timeout:?}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (_, json) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {text:?}"))
}

/// Docker's calls, each answered within [`PROMPT`].
fn docker_calls_answer_promptly(d: &Daemon, volume: &str) {
    for (path, body) in [
        ("/Plugin.Activate", json!({})),
        ("/VolumeDriver.Create", json!({"Name": volume, "Opts": {}})),
        ("/VolumeDriver.List", json!({})),
        ("/VolumeDriver.Get", json!({"Name": volume})),
    ] {
        let started = Instant::now();
        let reply = call(&d.socket, path, &body, PROMPT * 2)
            .unwrap_or_else(|e| panic!("{path} while 1,000 idle connections are open: {e}"));
        let took = started.elapsed();
        println!("{volume}: {path} answered in {took:?}");
        // Activate carries no Err, as in the reference.
        assert!(reply.get("Err").is_none_or(|e| e == ""), "{path}: {reply}");
        assert!(took < PROMPT, "{path} took {took:?} (more than {PROMPT:?})");
    }
    let list = call(&d.socket, "/VolumeDriver.List", &json!({}), PROMPT).unwrap();
    assert!(
        list["Volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"Name": volume})),
        "{list}"
    );
}

/// Whether the peer closed `stream` (EOF or reset), waiting at most until
/// `deadline`. Whatever the daemon writes first (a 408) is read and skipped.
fn closed_by_daemon(stream: &mut UnixStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn nofile_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn docker_is_served_while_a_thousand_idle_connections_are_open() {
    // This process holds the 1,000 client ends.
    let nofile = buttervolume::server::raise_fd_limit();
    assert!(
        nofile >= 2048,
        "this test needs 2048 open files (it has {nofile}): raise the hard RLIMIT_NOFILE"
    );
    let d = limited_daemon("idle-conns", "512:1024", &[]);
    // The soft limit was raised to the hard one at start.
    assert_eq!(
        nofile_limits(d.pid().unwrap()),
        ("1024".to_string(), "1024".to_string()),
        "RLIMIT_NOFILE of the daemon"
    );
    let baseline = open_fds(&d);

    // 1,000 idle connections: silent ones, half a request line, and a full
    // header whose body never comes (a lying Content-Length).
    let opened = Instant::now();
    let mut idle: Vec<UnixStream> = (0..1000)
        .map(|i| {
            let mut s = UnixStream::connect(&d.socket)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
            match i % 3 {
                0 => {}
                1 => s.write_all(b"POST /VolumeDriver.Li").unwrap(),
                _ => s
                    .write_all(
                        b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Na",
                    )
                    .unwrap(),
            }
            s
        })
        .collect();

    docker_calls_answer_promptly(&d, "served-under-pressure");
    assert!(
        d.log_text().contains("connection cap reached"),
        "the cap (1024 descriptors - reserve) should have been reached"
    );

    // Every idle connection is closed by the daemon (evicted to make room,
    // or timed out), none lingers past the read timeout.
    let deadline = opened + Duration::from_secs(READ_TIMEOUT_SECS) + Duration::from_secs(10);
    let lingering = idle
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| (!closed_by_daemon(s, deadline)).then_some(i))
        .collect::<Vec<_>>();
    assert!(
        lingering.is_empty(),
        "{} idle connections still open {:?} after they were opened (first: {:?})",
        lingering.len(),
        opened.elapsed(),
        &lingering[..lingering.len().min(10)]
    );
    println!(
        "all 1000 idle connections closed by the daemon {:?} after they were opened",
        opened.elapsed()
    );
    drop(idle);

    // Their descriptors were released: back near the baseline, waiting on
    // the daemon's observable fd count.
    wait_until(
        format!("the daemon's descriptors back near {baseline}"),
        10,
        || open_fds(&d) <= baseline + 8,
    );
    docker_calls_answer_promptly(&d, "served-after");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_read_timeout() {
    let d = limited_daemon("keepalive-timeout", "4096:4096", &[]);
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("VolumeDriver"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The connection stays usable for a while (keep-alive), then is closed
    // once it has been idle for the read timeout, not before.
    let idle_from = Instant::now();
    let closed = closed_by_daemon(
        &mut s,
        idle_from + Duration::from_secs(READ_TIMEOUT_SECS + 10),
    );
    let after = idle_from.elapsed();
    assert!(closed, "idle keep-alive connection never closed");
    assert!(
        after >= Duration::from_millis(READ_TIMEOUT_SECS * 1000 - 200),
        "closed after {after:?}, before the {READ_TIMEOUT_SECS} s timeout"
    );
}

#[test]
fn at_the_cap_busy_connections_are_never_evicted_and_the_next_one_waits() {
    // A "peer" on loopback that accepts and never says a word: each send
    // stays in its SSH handshake, its handler busy, until we hang up.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let (accepted_tx, accepted) = mpsc::channel::<TcpStream>();
    std::thread::spawn(move || {
        for stream in peer.incoming().flatten() {
            if accepted_tx.send(stream).is_err() {
                return;
            }
        }
    });
    const CAP: usize = 16;
    let (port, cap) = (port.to_string(), CAP.to_string());
    let d = limited_daemon(
        "busy-cap",
        "4096:4096",
        &[
            ("SSH_PORT", port.as_str()),
            ("BUTTERVOLUME_MAX_CONNECTIONS", cap.as_str()),
        ],
    );
    let snapshots: Vec<String> = (0..CAP)
        .map(|i| {
            let v = format!("v{i}");
            call(
                &d.socket,
                "/VolumeDriver.Create",
                &json!({"Name": v}),
                PROMPT,
            )
            .unwrap();
            let reply = call(
                &d.socket,
                "/VolumeDriver.Snapshot",
                &json!({"Name": v}),
                PROMPT,
            )
            .unwrap();
            reply["Snapshot"].as_str().unwrap().to_string()
        })
        .collect();
    // CAP sends in flight: every connection slot busy.
    let sends: Vec<_> = snapshots
        .into_iter()
        .map(|snap| {
            let socket = d.socket.clone();
            std::thread::spawn(move || {
                call(
                    &socket,
                    "/VolumeDriver.Snapshot.Send",
                    &json!({"Name": snap, "Host": "127.0.0.1", "Test": true}),
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    let mut peers: Vec<TcpStream> = (0..CAP)
        .map(|i| {
            accepted
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("only {i} of {CAP} sends reached the peer"))
        })
        .collect();

    // One more connection waits: nothing idle can be evicted.
    let waiting = {
        let socket = d.socket.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let reply = call(
                &socket,
                "/Plugin.Activate",
                &json!({}),
                Duration::from_secs(30),
            );
            (reply, started.elapsed())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        assert!(!waiting.is_finished(), "answered while every slot was busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One send ends (its peer hangs up): its slot goes to the waiting call.
    let released = Instant::now();
    drop(peers.remove(0));
    let (reply, _) = waiting.join().unwrap();
    let reply = reply.expect("the waiting call is answered once a slot frees");
    assert_eq!(reply["Implements"], json!(["VolumeDriver"]));
    let after = released.elapsed();
    assert!(after < PROMPT * 5, "answered {after:?} after a slot freed");
    // The busy ones were never evicted: each send gets its own JSON answer.
    drop(peers);
    for send in sends {
        let reply = send
            .join()
            .unwrap()
            .expect("every busy connection gets its answer");
        let err = reply["Err"].as_str().unwrap_or_default();
        assert!(
            !err.is_empty(),
            "a send to a silent peer cannot succeed: {reply}"
        );
    }
}
