//! A bounded stress/fuzz run of the control socket: a few thousand hostile
//! requests from a seeded PRNG (same seed, same requests), through a real
//! daemon on real btrfs.
//!
//! Requests: random endpoints among the real ones (and junk paths), wrong
//! JSON types, traversal and shell-metacharacter names, very long names,
//! NUL, invalid UTF-8, lying Content-Length (both ways), garbage request
//! lines, odd methods, chunked and oversized bodies, and slow partial
//! requests held open while the rest goes on. After each batch a valid
//! request must be answered. At the end: the daemon never died, nothing was
//! created outside its data dirs (a canary dir, the data dirs' parent and
//! the shared test mount are checked), and every name in the volumes,
//! snapshots and received dirs is legal per `buttervolume::names`.
//!
//! Replication requests only ever name loopback hosts (or hosts no check
//! accepts), and the daemon's peers' port is 1, where nothing listens.
//!
//! `BV_FUZZ_SEED` and `BV_FUZZ_REQUESTS` override the seed (default fixed)
//! and the number of requests (default 3000).

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use buttervolume::names;
use serde_json::{json, Map, Value};
use testkit::Daemon;

mod gen;

use gen::{Gen, Rng};

#[derive(Default, Debug)]
struct Counts {
    sent: usize,
    json: usize,
    /// JSON replies with an empty `Err`: the request did something.
    succeeded: usize,
    non_json: usize,
    no_answer: usize,
    slow_partial: usize,
    batches: usize,
}

/// Sends one raw request, reads the whole answer (bounded).
fn exchange(socket: &Path, bytes: &[u8], shut: bool) -> Option<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(bytes);
    if shut {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "no answer within 30 s ({e}) to {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    }
    (!answer.is_empty()).then_some(answer)
}

fn is_json_reply(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    text.split_once("\r\n\r\n")
        .is_some_and(|(_, body)| serde_json::from_str::<Value>(body).is_ok())
}

fn daemon_alive(d: &Daemon) -> bool {
    let Some(pid) = d.pid() else { return false };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with(['R', 'S', 'D']))
        })
        .unwrap_or(false)
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn hostile_requests_never_crash_escape_or_leave_illegal_names() {
    let seed: u64 = std::env::var("BV_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_B077_E4F1_2026);
    let total: usize = std::env::var("BV_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    // No Docker and no SSH keys (the harness's defaults); replication
    // attempts go to port 1, where nothing listens.
    let d = Daemon::builder("socket-fuzz")
        .env("SSH_PORT", "1")
        .env("BUTTERVOLUME_READ_TIMEOUT", "2")
        .env("RUST_LOG", "warn")
        .start();
    let base = d.root.parent().unwrap().to_path_buf();
    let token = format!("fuzzescape-{}", std::process::id());
    // A canary beside the data dirs, and what the data dirs' parent and the
    // shared mount held before.
    let canary = d.root.join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("keep"), "canary").unwrap();
    let root_before = entries(&d.root);
    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    d.ok("/VolumeDriver.Create", json!({"Name": "web"}));

    let mut gen = Gen {
        rng: Rng(seed | 1),
        token: token.clone(),
        snapshots: Vec::new(),
    };
    let mut counts = Counts::default();
    let started = Instant::now();
    let batch = 200;
    while counts.sent < total {
        // Slow partial requests held open during the batch, one more byte
        // now and then.
        let mut slow: Vec<(UnixStream, Vec<u8>, usize)> = (0..10)
            .filter_map(|_| {
                let (bytes, _) = gen.request();
                let mut s = UnixStream::connect(&d.socket).ok()?;
                s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                let first = 1 + gen.rng.below(bytes.len().clamp(1, 40));
                let _ = s.write_all(&bytes[..first.min(bytes.len())]);
                Some((s, bytes, first))
            })
            .collect();
        counts.slow_partial += slow.len();
        for i in 0..batch.min(total - counts.sent) {
            let (bytes, shut) = gen.request();
            counts.sent += 1;
            match exchange(&d.socket, &bytes, shut) {
                None => counts.no_answer += 1,
                Some(answer) if is_json_reply(&answer) => {
                    counts.json += 1;
                    let text = String::from_utf8_lossy(&answer);
                    if let Some((_, body)) = text.split_once("\r\n\r\n") {
                        let v: Value = serde_json::from_str(body).unwrap();
                        // Activate and Capabilities carry no Err.
                        if v.get("Err").is_none_or(|e| e == "") {
                            counts.succeeded += 1;
                        }
                        if let Some(s) = v["Snapshot"].as_str() {
                            gen.snapshots.push(s.to_string());
                        }
                    }
                }
                Some(_) => counts.non_json += 1,
            }
            if i % 20 == 0 {
                for (s, bytes, at) in &mut slow {
                    if *at < bytes.len() {
                        let _ = s.write_all(&bytes[*at..*at + 1]);
                        *at += 1;
                    }
                }
            }
        }
        drop(slow);
        counts.batches += 1;
        assert!(daemon_alive(&d), "the daemon died after {counts:?}");
        // A valid request after each batch.
        let (_, reply) = d.post("/Plugin.Activate", &json!({}));
        assert_eq!(reply, json!({"Implements": ["VolumeDriver"]}));
        d.ok("/VolumeDriver.List", json!({}));
    }
    let elapsed = started.elapsed();

    // Nothing outside the data dirs.
    let mut escapes = Vec::new();
    assert_eq!(
        std::fs::read_to_string(canary.join("keep")).unwrap(),
        "canary"
    );
    if entries(&canary) != BTreeSet::from(["keep".to_string()]) {
        escapes.push(format!("canary dir: {:?}", entries(&canary)));
    }
    let allowed: BTreeSet<String> = root_before
        .iter()
        .cloned()
        .chain(
            ["volumes", "snapshots", "received", "state", "config"]
                .into_iter()
                .map(String::from),
        )
        .collect();
    for name in entries(&d.root) {
        if !allowed.contains(&name) {
            escapes.push(format!("{}/{name}", d.root.display()));
        }
    }
    for dir in [
        base.clone(),
        std::env::temp_dir(),
        std::path::PathBuf::from("/"),
    ] {
        for name in entries(&dir) {
            if name.contains(&token) {
                escapes.push(format!("{}/{name}", dir.display()));
            }
        }
    }
    // Every name on disk is legal.
    let mut illegal = Vec::new();
    let mut checked = 0;
    for name in entries(&d.volumes()) {
        checked += 1;
        if name != buttervolume::volumes::STAGING_DIR && names::check_volume(&name).is_err() {
            illegal.push(format!("volumes/{name}"));
        }
    }
    for name in entries(&d.volumes().join(buttervolume::volumes::STAGING_DIR)) {
        illegal.push(format!("volumes/.staging/{name} (leftover)"));
    }
    for dir in ["snapshots", "received"] {
        for name in entries(&d.root.join(dir)) {
            checked += 1;
            if names::check_snapshot(&name).is_err() {
                illegal.push(format!("{dir}/{name}"));
            }
        }
    }
    // A panic in a handler does not kill the daemon, but is a crash too.
    let panics = d.log_text().matches("panicked").count();
    let crashes = usize::from(!daemon_alive(&d)) + panics;
    println!(
        "socket fuzz: seed={seed:#x} requests sent={} json replies={} (succeeded {}) non-JSON replies={} closed without answer={} slow partial={} batches={} crashes={crashes} escapes={} names on disk checked={checked} illegal={} in {:.1} s",
        counts.sent,
        counts.json,
        counts.succeeded,
        counts.non_json,
        counts.no_answer,
        counts.slow_partial,
        counts.batches,
        escapes.len(),
        illegal.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(crashes, 0);
    assert!(
        escapes.is_empty(),
        "created outside the data dirs: {escapes:?}"
    );
    assert!(illegal.is_empty(), "illegal names on disk: {illegal:?}");
    // Still fully working.
    d.ok("/VolumeDriver.Create", json!({"Name": "after-fuzz"}));
    d.ok("/VolumeDriver.Remove", json!({"Name": "after-fuzz"}));
}
