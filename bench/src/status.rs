//! `status`: what `Status` and a `/metrics` scrape cost on a daemon with
//! many volumes, snapshots and sent markers, and what a background size
//! measurement of a volume of many small files takes.
//!
//! One daemon (testkit's, metrics listener on a free 127.0.0.1 port):
//! VOLUMES volumes with SNAPSHOTS snapshots each and a sent marker for the
//! newest (a read-only snapshot of it, as the daemon makes them), so every
//! peer row is computed; RUNS calls of Status and RUNS scrapes, after a
//! first Status that queues the size measurements; then one volume of FILES
//! files of 100 B: the time from the Status that queues its measurement to
//! the first Status that shows its size (polled every 10 ms), next to
//! `du -s -B1` of the same (warm) tree.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use buttervolume::api::{path, CreateRequest, NameRequest, SnapshotReply, StatusReply};
use clap::Args;
use testkit::wait::wait_for_every;
use testkit::{raw_request, Daemon};

use crate::report::{ms, timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 100)]
    volumes: usize,
    #[arg(long, default_value_t = 20)]
    snapshots: usize,
    #[arg(long, default_value_t = 20)]
    runs: usize,
    #[arg(long, default_value_t = 100_000)]
    files: usize,
}

/// The peer the markers name (never contacted).
const PEER: &str = "10.9.0.2";

/// One Status call: the typed reply and its size in bytes.
fn status(d: &Daemon) -> (StatusReply, usize) {
    let (code, text) = raw_request(&d.socket, "POST", path::STATUS, b"{}");
    assert_eq!(code, 200, "Status: {text}");
    let reply = serde_json::from_str(&text).unwrap_or_else(|e| panic!("Status ({e}): {text}"));
    (reply, text.len())
}

fn scrape(port: u16) -> usize {
    let (code, body) = testkit::http::tcp_get(port, "/metrics").expect("a /metrics answer");
    assert_eq!(code, 200, "{body}");
    body.len()
}

fn create(d: &Daemon, name: &str) {
    let request = CreateRequest {
        name: name.to_string(),
        opts: None,
    };
    d.ok(
        "/VolumeDriver.Create",
        serde_json::to_value(request).unwrap(),
    );
}

pub fn run(o: &Options) -> Table {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::builder("bench-status")
        .env("BUTTERVOLUME_METRICS_ADDR", &format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .start();
    eprintln!("{} volumes × {} snapshots", o.volumes, o.snapshots);
    for v in 0..o.volumes {
        let name = format!("v{v:04}");
        create(&d, &name);
        let mut newest = String::new();
        for _ in 0..o.snapshots {
            let reply: SnapshotReply = d.call(path::SNAPSHOT, &NameRequest { name: name.clone() });
            newest = reply.snapshot;
        }
        let snapshots = d.snapshots();
        buttervolume::btrfs::snapshot(
            &snapshots.join(&newest),
            &snapshots.join(format!("{newest}@{PEER}")),
            true,
        )
        .unwrap();
    }

    let ((first, _), first_time) = timed(|| status(&d));
    assert_eq!(first.volumes.len(), o.volumes);
    assert!(first
        .volumes
        .iter()
        .all(|v| v.peers.first().is_some_and(|p| p.lag_seconds == 0)));
    let mut status_bytes = 0;
    let calls = Samples::time(o.runs, || status_bytes = status(&d).1);
    let page_bytes = scrape(port);
    let scrapes = Samples::time(o.runs, || {
        scrape(port);
    });

    eprintln!("a volume of {} files", o.files);
    create(&d, "many");
    let root = d.volumes().join("many");
    for dir in 0..o.files / 1000 {
        let dir = root.join(format!("d{dir}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f}")), [b'x'; 100]).unwrap();
        }
    }
    testkit::run("sync", &[]);
    let (du, du_time) = timed(|| testkit::run("du", &["-s", "-B1", root.to_str().unwrap()]));
    let du_bytes = du.split_whitespace().next().unwrap_or_default().to_string();
    let queued = Instant::now();
    status(&d);
    let size = wait_for_every(
        "the size of the volume of many files",
        600,
        Duration::from_millis(10),
        || {
            status(&d)
                .0
                .volumes
                .into_iter()
                .find(|v| v.name == "many")
                .and_then(|v| v.size_bytes)
        },
    );
    let measured = queued.elapsed();

    let mut t = Table::new(&["what", "figure"]);
    t.row(vec![
        "volumes × snapshots (+1 sent marker each)".into(),
        format!("{} × {} (+{})", o.volumes, o.snapshots, o.volumes),
    ]);
    t.row(vec![
        format!("first Status (queues {} size measurements)", o.volumes),
        ms(first_time.as_secs_f64() * 1e3),
    ]);
    t.row(vec![
        format!("Status, {} calls", o.runs),
        format!(
            "p50 {}, max {} ({status_bytes} bytes)",
            ms(calls.p50()),
            ms(calls.max())
        ),
    ]);
    t.row(vec![
        format!("/metrics scrape, {} calls", o.runs),
        format!(
            "p50 {}, max {} ({page_bytes} bytes)",
            ms(scrapes.p50()),
            ms(scrapes.max())
        ),
    ]);
    t.row(vec![
        format!(
            "background size of a volume of {} files of 100 B (queued → shown)",
            o.files
        ),
        format!(
            "{} (SizeBytes {size}; `du -s -B1` {du_bytes} in {})",
            ms(measured.as_secs_f64() * 1e3),
            ms(du_time.as_secs_f64() * 1e3)
        ),
    ]);
    t
}
