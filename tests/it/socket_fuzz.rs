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

/// xorshift64*: tiny, deterministic, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ENDPOINTS: &[&str] = &[
    "/Plugin.Activate",
    "/VolumeDriver.Capabilities",
    "/VolumeDriver.Create",
    "/VolumeDriver.Remove",
    "/VolumeDriver.Mount",
    "/VolumeDriver.Unmount",
    "/VolumeDriver.Path",
    "/VolumeDriver.Get",
    "/VolumeDriver.List",
    "/VolumeDriver.Snapshot",
    "/VolumeDriver.Snapshot.List",
    "/VolumeDriver.Snapshot.Remove",
    "/VolumeDriver.Snapshot.Restore",
    "/VolumeDriver.Clone",
    "/VolumeDriver.Snapshots.Purge",
    "/VolumeDriver.Inspect",
    "/VolumeDriver.Snapshot.Send",
    "/VolumeDriver.Volume.Sync",
    "/VolumeDriver.Schedule",
    "/VolumeDriver.Schedule.List",
    "/VolumeDriver.Schedule.Pause",
    "/VolumeDriver.Schedule.Resume",
    "/VolumeDriver.Status",
];

const JUNK_PATHS: &[&str] = &[
    "/",
    "",
    "*",
    "/VolumeDriver.",
    "/volumedriver.create",
    "/VolumeDriver.Create/../../etc/passwd",
    "/VolumeDriver.Snapshot.List/../../etc",
    "/VolumeDriver.Snapshot.List/..%2f..%2fetc",
    "/VolumeDriver.Snapshot.List/%00",
    "/VolumeDriver.Create?Name=../x",
    "//VolumeDriver.List",
    "/Plugin.Activate#frag",
    "http://evil/VolumeDriver.List",
];

/// Hosts for replication fields: loopback, or rejected by every check.
const HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.2",
    "root@127.0.0.1",
    "-oProxyCommand=id",
    "127.0.0.1;id",
    "$(id)",
    "`id`",
    "a b",
    "../127.0.0.1",
    "127.0.0.1/x",
    "",
    "127.0.0.1\n",
    "127.0.0.1\u{0}",
    "|id",
];

/// Snapshot/volume-ish names that exist or could, so the real code paths
/// (not only the validation) are exercised.
const REAL_NAMES: &[&str] = &["db", "web", "ok-1", "db2", "x.y_z"];

struct Gen {
    rng: Rng,
    token: String,
    /// Snapshot names the daemon handed out, reused as inputs.
    snapshots: Vec<String>,
}

impl Gen {
    fn hostile_name(&mut self) -> String {
        let t = &self.token;
        let fixed: Vec<String> = vec![
            format!("../{t}"),
            format!("../../{t}"),
            format!("../../../{t}"),
            format!("db@../../{t}"),
            format!("/tmp/{t}"),
            format!("{t}/../../x"),
            "a/b".into(),
            "..".into(),
            ".".into(),
            "".into(),
            " ".into(),
            "$(id)".into(),
            ";rm -rf x".into(),
            "x;rm".into(),
            "`id`".into(),
            "a|b".into(),
            "a&&b".into(),
            "$HOME".into(),
            "-x".into(),
            ".hidden".into(),
            ".staging".into(),
            ".recv.1.2.3".into(),
            "x\u{0}y".into(),
            "\u{0}".into(),
            "x\ny".into(),
            "é".into(),
            "a@b".into(),
            "db@".into(),
            "db@a/b".into(),
            "db@$(id)".into(),
            "db@2026-01-01T00:00:00.000000".into(),
            "db@2026-01-01T00:00:00.000000@127.0.0.1".into(),
            "x".repeat(300),
            "y".repeat(256),
            "z".repeat(names::MAX_VOLUME_BYTES + 1),
            "w".repeat(names::MAX_VOLUME_BYTES),
            "\\..\\x".into(),
            "%2e%2e%2fx".into(),
            "\u{202e}txt.exe".into(),
            "\u{1F600}".into(),
            "*".into(),
            "?".into(),
        ];
        match self.rng.below(10) {
            0..=3 => self.rng.pick(&fixed).clone(),
            4..=6 => self.rng.pick(REAL_NAMES).to_string(),
            7 if !self.snapshots.is_empty() => {
                let s = self.rng.pick(&self.snapshots).clone();
                if self.rng.chance(50) {
                    s
                } else {
                    names::volume_of(&s).to_string()
                }
            }
            _ => {
                const ALPHABET: &[u8] = b"abcxyz0189-_.@/$;`|&()<>*? \n\t\\'\"%~!#ABCZ";
                let len = self.rng.below(40);
                (0..len).map(|_| *self.rng.pick(ALPHABET) as char).collect()
            }
        }
    }

    fn value(&mut self, stringy: impl FnOnce(&mut Gen) -> String) -> Value {
        match self.rng.below(20) {
            0..=11 => json!(stringy(self)),
            12 => json!(self.rng.next() as i64),
            13 => json!(-1.5e300),
            14 => json!(self.rng.chance(50)),
            15 => Value::Null,
            16 => json!([stringy(self), 1]),
            17 => json!({"Name": stringy(self)}),
            18 => json!(""),
            _ => json!("x".repeat(10_000)),
        }
    }

    fn body(&mut self) -> Value {
        let mut map = Map::new();
        let fields: &[&str] = &[
            "Name", "Opts", "ID", "Target", "Force", "Pattern", "Dryrun", "Host", "Hosts",
            "Volumes", "Test", "Compress", "BwLimit", "Action", "Timer",
        ];
        for field in fields {
            let wanted = if *field == "Name" { 85 } else { 40 };
            if !self.rng.chance(wanted) {
                continue;
            }
            let v = match *field {
                "Host" => self.value(|g| g.rng.pick(HOSTS).to_string()),
                "Hosts" => {
                    let n = self.rng.below(3);
                    json!((0..n)
                        .map(|_| self.rng.pick(HOSTS).to_string())
                        .collect::<Vec<_>>())
                }
                "Volumes" => {
                    let n = self.rng.below(3);
                    json!((0..n).map(|_| self.hostile_name()).collect::<Vec<_>>())
                }
                "Opts" => match self.rng.below(4) {
                    0 => json!({"copyonwrite": "false"}),
                    1 => json!({"compression": self.hostile_name()}),
                    2 => {
                        let mut opts = Map::new();
                        opts.insert(self.hostile_name(), json!(self.hostile_name()));
                        Value::Object(opts)
                    }
                    _ => self.value(|g| g.hostile_name()),
                },
                "Action" => self.value(|g| {
                    let host = g.rng.pick(HOSTS).to_string();
                    let name = g.hostile_name();
                    g.rng
                        .pick(&[
                            "snapshot".to_string(),
                            format!("replicate:{host}"),
                            format!("synchronize:{host},{host}"),
                            "purge:1h:1d".to_string(),
                            format!("purge:{name}"),
                            name,
                        ])
                        .clone()
                }),
                "Timer" => self.value(|g| {
                    g.rng
                        .pick(&[
                            "60",
                            "0",
                            "delete",
                            "pause",
                            "resume",
                            "cron:0 3 * * *",
                            "cron:0 3\n* * *",
                            "-1",
                            "99999999999999999999",
                            "cron:@reboot",
                            "cron:* * 1 * 1",
                            "1e3",
                            "\"",
                            "cron:0 3 * * *\r",
                        ])
                        .to_string()
                }),
                "Pattern" => self.value(|g| {
                    g.rng
                        .pick(&[
                            "1h:1d",
                            "1h",
                            "0h:1d",
                            "1x:2y",
                            "99999999999999999999h:1d",
                            "",
                        ])
                        .to_string()
                }),
                _ => self.value(|g| g.hostile_name()),
            };
            map.insert(field.to_string(), v);
        }
        Value::Object(map)
    }

    fn path(&mut self) -> String {
        if self.rng.chance(8) {
            return self.rng.pick(JUNK_PATHS).to_string();
        }
        let endpoint = self.rng.pick(ENDPOINTS).to_string();
        if endpoint.ends_with("Snapshot.List") && self.rng.chance(40) {
            let name: String = self
                .hostile_name()
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.@".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            return format!("{endpoint}/{name}");
        }
        endpoint
    }

    /// A well-formed request on real names, so the real operations run
    /// between the hostile ones (and their results are fuzzed further).
    fn plausible(&mut self) -> Vec<u8> {
        let path = *self.rng.pick(ENDPOINTS);
        let name = if !self.snapshots.is_empty() && self.rng.chance(40) {
            self.rng.pick(&self.snapshots).clone()
        } else {
            self.rng.pick(REAL_NAMES).to_string()
        };
        let other = if self.rng.chance(70) {
            self.rng.pick(REAL_NAMES).to_string()
        } else {
            self.hostile_name()
        };
        let body = json!({
            "Name": name,
            "Target": other,
            "ID": "fuzz",
            "Pattern": self.rng.pick(&["1h:1d", "1m:2m"]),
            "Dryrun": self.rng.chance(50),
            "Action": self.rng.pick(&["snapshot", "purge:1h:1d", "replicate:127.0.0.1"]),
            "Timer": self.rng.pick(&["60", "0", "cron:*/5 * * * *", "pause", "resume"]),
            "Host": "127.0.0.1",
            "Hosts": ["127.0.0.1"],
            "Volumes": [name],
            "Test": true,
        })
        .to_string();
        format!(
            "POST {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// One hostile request, as raw bytes, and whether the write side should
    /// be shut right after (so a lying Content-Length ends quickly).
    fn request(&mut self) -> (Vec<u8>, bool) {
        if self.rng.chance(25) {
            return (self.plausible(), false);
        }
        let path = self.path();
        let method = if self.rng.chance(85) {
            "POST"
        } else {
            *self
                .rng
                .pick(&["GET", "PUT", "DELETE", "FOO", "post", "CONNECT"])
        };
        let body: Vec<u8> = match self.rng.below(20) {
            0..=13 => self.body().to_string().into_bytes(),
            14 => self
                .rng
                .pick(&["[]", "42", "\"Name\"", "null", "true"])
                .as_bytes()
                .to_vec(),
            15 => b"{\"Name\": \"\xff\xfe\xc0\xaf\"}".to_vec(),
            16 => b"{\"Name\": ".to_vec(),
            17 => (0..self.rng.below(300))
                .map(|_| self.rng.next() as u8)
                .collect(),
            18 => Vec::new(),
            _ => format!("{{\"Name\": \"{}\"}}", "\\u0000".repeat(50)).into_bytes(),
        };
        let header = |len: String| {
            format!(
                "{method} {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
            )
            .into_bytes()
        };
        match self.rng.below(100) {
            0..=69 => {
                let mut out = header(body.len().to_string());
                out.extend_from_slice(&body);
                (out, false)
            }
            // Content-Length larger than the body, then EOF.
            70..=76 => {
                let mut out = header((body.len() + 1 + self.rng.below(5000)).to_string());
                out.extend_from_slice(&body);
                (out, true)
            }
            // Smaller: the rest is read as a (garbage) next request.
            77..=82 => {
                let mut out = header((body.len() / 2).to_string());
                out.extend_from_slice(&body);
                (out, false)
            }
            // Garbage Content-Length values.
            83..=85 => {
                let len = self
                    .rng
                    .pick(&["-1", "abc", "99999999999999999999999", "1, 2", "0x10", ""])
                    .to_string();
                let mut out = header(len);
                out.extend_from_slice(&body);
                (out, true)
            }
            // Garbage request lines and headers.
            86..=91 => {
                let garbage: Vec<u8> = match self.rng.below(5) {
                    0 => (0..self.rng.below(200)).map(|_| self.rng.next() as u8).collect(),
                    1 => b"GET\r\n\r\n".to_vec(),
                    2 => format!("POST {path} HTTP/9.9\r\n\r\n").into_bytes(),
                    3 => format!("POST {path} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{{}}").into_bytes(),
                    _ => {
                        let mut out = format!("POST {path}\0 HTTP/1.1\r\nX: ").into_bytes();
                        out.extend_from_slice(b"\xff\xfe\r\n\r\n");
                        out
                    }
                };
                let mut out = garbage;
                out.extend_from_slice(b"\r\n\r\n");
                (out, true)
            }
            // Chunked, sometimes broken.
            92..=96 => {
                let mut out = format!(
                    "{method} {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                if self.rng.chance(50) {
                    out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n0\r\n\r\n");
                } else {
                    out.extend_from_slice(b"zz\r\nnot hex\r\n");
                }
                (out, true)
            }
            // Oversized body (over the 1 MiB cap).
            97 => {
                let big = vec![b' '; buttervolume::server::MAX_BODY + 10];
                let mut out = header(big.len().to_string());
                out.extend_from_slice(&big);
                (out, false)
            }
            // A huge header.
            _ => {
                let mut out = format!("POST {path} HTTP/1.1\r\nX-Big: ").into_bytes();
                out.extend(std::iter::repeat_n(b'a', 500_000));
                out.extend_from_slice(b"\r\n\r\n");
                (out, true)
            }
        }
    }
}

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
