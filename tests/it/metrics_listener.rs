//! The metrics listener against clients that try to hold it: connections
//! that pipeline hundreds of scrapes and never read the answers do not keep
//! a fresh scrape from being answered, and scrapes share the status scan
//! (at most one a second). A daemon on the test btrfs, its listener on
//! 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::{wait_until, Daemon};

/// What the listener logs (debug) each time it scans the status.
const SCAN_LINE: &str = "metrics: scanning the status";

/// One scrape on a new connection: (status line, body), or `None` when no
/// answer came within 60 s.
fn scrape(port: u16) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon with a metrics listener (and a few volumes, for a page of some
/// size); returns it with the listener's port once it answers.
fn daemon_with_metrics(test: &str) -> (Daemon, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::builder(test)
        .env("BUTTERVOLUME_METRICS_ADDR", &addr)
        .start();
    for k in 0..20 {
        d.ok("/VolumeDriver.Create", json!({"Name": format!("vol{k}")}));
    }
    wait_until("the metrics listener", 10, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (d, port)
}

/// 32 connections (the listener's cap) each pipelining 300 scrapes and
/// never reading: a fresh scrape is still answered. (Before, each of them
/// was answered request after request until its socket buffers filled,
/// and then held its connection for as long as it stayed.)
#[test]
fn pipelining_clients_that_never_read_do_not_hold_the_listener() {
    let (d, port) = daemon_with_metrics("metrics-hostage");
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(300);
    let hogs: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut hog = TcpStream::connect(("127.0.0.1", port)).unwrap();
            hog.write_all(request.as_bytes()).unwrap();
            hog
        })
        .collect();
    let (status, body) = scrape(port).unwrap_or_else(|| {
        panic!(
            "no answer to a fresh scrape; log:\n{}",
            testkit::dockerd::tail(&d.log, 30)
        )
    });
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert!(body.contains("buttervolume_volumes 20\n"), "{body}");
    drop(hogs);
}

/// Back-to-back scrapes share the status scan: at most one a second (and
/// one more for a scan in flight at either end of the window).
#[test]
fn scrapes_share_one_status_scan_a_second() {
    let (d, port) = daemon_with_metrics("metrics-scans");
    let scans = || d.log_text().matches(SCAN_LINE).count();
    let before = scans();
    let started = Instant::now();
    for _ in 0..30 {
        let (status, _) = scrape(port).expect("an answer");
        assert!(status.ends_with(" 200 OK"), "{status}");
    }
    let seconds = started.elapsed().as_secs() as usize;
    let made = scans() - before;
    assert!(made >= 1, "no scan logged ({SCAN_LINE:?})");
    assert!(
        made <= seconds + 2,
        "{made} status scans for 30 scrapes in {seconds} s"
    );
}
