//! Bounded fuzzing on stable Rust (`cargo fuzz` needs nightly): random,
//! generated and mutated inputs for the parsers that face untrusted input,
//! each for a bounded time or number of iterations, with properties checked
//! on every accepted input. Run by `scripts/fuzz.sh`; by hand:
//!
//! ```text
//! cargo run --example fuzz -- [--seconds 20] [--iterations N] [--seed S] [target...]
//! ```
//!
//! Targets: `forced-command` (the SSH forced command parser), `schedule-csv`
//! (schedule.csv read/write and job validation), `purge` (purge patterns and
//! the reference's retention rule), `names` (volume/snapshot names and
//! timestamps), `stream-rename` (the send-stream first-command rewriter).
//!
//! The engine: a seeded xorshift PRNG; each iteration feeds either pure
//! random bytes, a target-specific generated input, or a mutation (bit
//! flips, byte sets, inserts, deletes, duplications, dictionary tokens,
//! truncation, splices) of a corpus entry; accepted inputs join the corpus.
//! A panic or a property violation is a crash: counted, its input saved
//! under `target/fuzz-findings/`, and the exit status is 1.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buttervolume::config::Config;
use buttervolume::config::PurgeTimeframes;
use buttervolume::names::{self, DTFORMAT, MAX_MARKER_HOST_BYTES, MAX_VOLUME_BYTES};
use buttervolume::purge::{self, Pattern};
use buttervolume::replication::forced_command::{self, Request};
use buttervolume::replication::stream;
use buttervolume::schedule::csv::{self, Line};
use buttervolume::schedule::Job;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

// ---------------------------------------------------------------- engine

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
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Tokens mutations splice in: path tricks, separators, shell syntax,
/// control characters, numbers at boundaries.
const DICTIONARY: &[&[u8]] = &[
    b"..",
    b"/",
    b"../",
    b"./",
    b"@",
    b"\0",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b",",
    b"\"",
    b"'",
    b"$(",
    b"`",
    b";",
    b"|",
    b"&",
    b">",
    b"<",
    b"*",
    b"?",
    b"~",
    b"-",
    b"--",
    b"=",
    b":",
    b"\xff",
    b"\xc0\xaf",
    b"\xe2\x80\xae",
    b"0",
    b"-1",
    b"4294967295",
    b"18446744073709551616",
    b"cron:",
    b"@daily",
    b"1h",
    b"1d",
    b"True",
    b"False",
    b"-L",
    b"-k",
    b"-K",
    b"--copy-links",
    b"--copy-dirlinks",
    b"--copy-unsafe-links",
    b"--sender",
    b"--server",
    b"receive",
    b"delete",
    b"send",
    b"--parent",
    b"list",
    b"--test",
    b"--parent-uuid",
    b"btrfs",
    b"rsync",
    b"buttervolume",
    b"/srv/bv/snapshots/",
    b"/srv/bv/volumes/",
    b"/srv/bv/received/",
    b".staging",
    b".recv.",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(&[0u8, 0xff, b'\n', b'/', b'.', b'@', b' ', 0x7f, 0x80]);
            }
            2 => {
                let at = rng.below(len + 1);
                let extra = rng.bytes(8);
                data.splice(at..at, extra);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                let copy = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            5 | 6 => {
                let at = rng.below(len + 1);
                let token = rng.pick(DICTIONARY).to_vec();
                data.splice(at..at, token);
            }
            7 if len > 0 => data.truncate(rng.below(len)),
            _ if !corpus.is_empty() => {
                let other = rng.pick(corpus);
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    data
}

/// What one input did: `Ok(true)` accepted, `Ok(false)` refused, `Err` a
/// property violation.
type Outcome = Result<bool, String>;

trait Target {
    fn name(&self) -> &'static str;
    fn seeds(&self) -> Vec<Vec<u8>>;
    fn generate(&mut self, rng: &mut Rng) -> Vec<u8>;
    /// Mutated inputs may need fixing up (a checksum) to get past the
    /// first check; most targets take them as they are.
    fn fix_up(&mut self, _rng: &mut Rng, input: Vec<u8>) -> Vec<u8> {
        input
    }
    fn run(&mut self, input: &[u8]) -> Outcome;
}

#[derive(Default)]
struct Stats {
    iterations: u64,
    accepted: u64,
    panics: u64,
    violations: u64,
    corpus: usize,
}

fn fuzz(target: &mut dyn Target, seed: u64, deadline: Duration, max_iterations: u64) -> Stats {
    let mut rng = Rng(seed | 1);
    let mut corpus = target.seeds();
    let mut stats = Stats::default();
    let started = Instant::now();
    let findings = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings");
    let mut saved = 0;
    let mut seen_messages = BTreeSet::new();
    while stats.iterations < max_iterations
        && (stats.iterations % 256 != 0 || started.elapsed() < deadline)
    {
        let input = match rng.below(10) {
            0 => rng.bytes(300),
            1..=3 => target.generate(&mut rng),
            _ => {
                let base = rng.pick(&corpus).clone();
                let mutated = mutate(&mut rng, &base, &corpus);
                if rng.chance(50) {
                    target.fix_up(&mut rng, mutated)
                } else {
                    mutated
                }
            }
        };
        stats.iterations += 1;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| target.run(&input)));
        let failure = match outcome {
            Ok(Ok(true)) => {
                stats.accepted += 1;
                if corpus.len() < 4096 && rng.chance(10) {
                    corpus.push(input.clone());
                }
                None
            }
            Ok(Ok(false)) => None,
            Ok(Err(violation)) => {
                stats.violations += 1;
                Some(format!("property violated: {violation}"))
            }
            Err(payload) => {
                stats.panics += 1;
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("panic: {message}"))
            }
        };
        if let Some(message) = failure {
            let first_line = message.lines().next().unwrap_or_default().to_string();
            if seen_messages.insert(first_line.chars().take(120).collect::<String>()) {
                eprintln!(
                    "[{}] {message}\n    input: {:?}",
                    target.name(),
                    String::from_utf8_lossy(&input)
                );
            }
            if saved < 20 {
                let _ = std::fs::create_dir_all(&findings);
                let path = findings.join(format!("{}-{saved}.bin", target.name()));
                let _ = std::fs::write(&path, &input);
                let _ = std::fs::write(path.with_extension("txt"), &message);
                saved += 1;
            }
        }
    }
    stats.corpus = corpus.len();
    stats
}

// ------------------------------------------------------- forced command

struct ForcedCommand {
    config: Config,
}

impl ForcedCommand {
    fn new() -> Self {
        let env: HashMap<String, String> = [
            ("BUTTERVOLUME_VOLUMES_PATH", "/srv/bv/volumes/"),
            ("BUTTERVOLUME_SNAPSHOTS_PATH", "/srv/bv/snapshots/"),
            ("BUTTERVOLUME_TEST_REMOTE_PATH", "/srv/bv/received/"),
            ("BUTTERVOLUME_STATE_PATH", "/srv/bv/state/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        ForcedCommand {
            config: Config::resolve(&env, &HashMap::new()).expect("a valid fuzz config"),
        }
    }
}

/// The same directory, compared component by component (`a//b/` is `a/b`).
fn same_dir(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

/// A single, normal path component (no `/`, `.`, `..`, not empty).
fn single_component(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(parts.next(), Some(Component::Normal(n)) if n == name) && parts.next().is_none()
}

/// rsync server flags that follow symlinks or write: never for a sender.
fn dangerous_rsync_flag(arg: &str) -> bool {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        return matches!(
            name,
            "copy-links"
                | "copy-dirlinks"
                | "copy-unsafe-links"
                | "keep-dirlinks"
                | "remove-source-files"
        );
    }
    match arg.strip_prefix('-') {
        // Short-option clusters like -logDtpre.iLsfxC: `L` copies links,
        // `k`/`K` follow directory links. `e.` is the protocol info
        // suffix, after which letters are capabilities, not options.
        Some(cluster) => {
            let options = cluster.split_once('e').map_or(cluster, |(opts, _)| opts);
            options.contains(['L', 'k', 'K'])
        }
        None => false,
    }
}

impl Target for ForcedCommand {
    fn name(&self) -> &'static str {
        "forced-command"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            "buttervolume receive",
            "buttervolume receive --test",
            "buttervolume receive --parent-uuid 0f0e0d0c-0b0a-0908-0706-050403020100 --zstd",
            "buttervolume list db",
            "buttervolume list db --test",
            "buttervolume list-newest",
            "buttervolume list-newest --test",
            "buttervolume delete db@2026-11-22T02:35:52.701543",
            "buttervolume delete db@2026-11-22T02:35:52.701543 --test",
            "btrfs receive /srv/bv/snapshots/",
            "btrfs receive /srv/bv/received",
            "btrfs subvolume delete /srv/bv/snapshots/db@2026-11-22T02:35:52.701543",
            "rsync --server --sender -logDtpre.iLsfxCIvu . /srv/bv/volumes/db/",
            "rsync --server --sender -logDtpr --numeric-ids . /srv/bv/volumes/db",
            "rsync --server --sender -vlogDtprze.iLsfxCIvu --log-format=X . /srv/bv/received/db/",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn generate(&mut self, rng: &mut Rng) -> Vec<u8> {
        let words: &[&str] = &[
            "buttervolume",
            "receive",
            "list",
            "list-newest",
            "delete",
            "send",
            "--parent",
            "--test",
            "--zstd",
            "--parent-uuid",
            "btrfs",
            "subvolume",
            "rsync",
            "--server",
            "--sender",
            "-logDtpre.iLsfxCIvu",
            "-L",
            "-rlptgoD",
            "--copy-links",
            "--safe-links",
            "--numeric-ids",
            ".",
            "db",
            "db@2026-11-22T02:35:52.701543",
            "/srv/bv/snapshots/",
            "/srv/bv/volumes/db",
            "/srv/bv/received/",
            "/etc/passwd",
            "../x",
            "/srv/bv/snapshots/../volumes/db",
            "/srv/bv/volumes/../../root/.ssh",
            "0f0e0d0c-0b0a-0908-0706-050403020100",
            "$(id)",
            ";",
            "&&",
            "-e",
            "sh",
            "-c",
            "/srv/bv/snapshots/db@x",
        ];
        let n = 1 + rng.below(7);
        let sep = *rng.pick(&[" ", " ", " ", "  ", "\t", "\n"]);
        (0..n)
            .map(|_| *rng.pick(words))
            .collect::<Vec<_>>()
            .join(sep)
            .into_bytes()
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(input);
        let Ok(request) = forced_command::parse(&self.config, &text) else {
            return Ok(false);
        };
        let c = &self.config;
        if text.len() > 4096 {
            return Err(format!("accepted a {}-byte command", text.len()));
        }
        if let Some(bad) = text
            .chars()
            .find(|ch| !(ch.is_ascii_alphanumeric() || " _.:@/,=+-".contains(*ch)))
        {
            return Err(format!("accepted forbidden character {bad:?} in {text:?}"));
        }
        if text
            .split_whitespace()
            .any(|w| w.split('/').any(|part| part == ".."))
        {
            return Err(format!("accepted \"..\" in {text:?}"));
        }
        let data_dirs = [&c.snapshots_path, &c.test_remote_path];
        match &request {
            Request::Receive { dir, .. } => {
                if !data_dirs.iter().any(|d| same_dir(dir, d)) {
                    return Err(format!("receive into {dir:?}"));
                }
            }
            Request::List { dir, volume } => {
                if !data_dirs.iter().any(|d| same_dir(dir, d)) {
                    return Err(format!("list in {dir:?}"));
                }
                if names::check_volume(volume).is_err() {
                    return Err(format!("list of illegal volume {volume:?}"));
                }
            }
            Request::ListNewest { dir } => {
                if !data_dirs.iter().any(|d| same_dir(dir, d)) {
                    return Err(format!("list-newest in {dir:?}"));
                }
            }
            Request::Alive { from } => {
                if buttervolume::cluster::records::check_node(from).is_err() {
                    return Err(format!("alive from an illegal node name {from:?}"));
                }
            }
            Request::Delete { path } => {
                let parent = path.parent().unwrap_or(Path::new(""));
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !data_dirs.iter().any(|d| same_dir(parent, d)) {
                    return Err(format!("delete of {path:?}, outside the snapshot dirs"));
                }
                if names::check_snapshot(&name).is_err() || !single_component(&name) {
                    return Err(format!("delete of illegal snapshot name {name:?}"));
                }
            }
            Request::Send { path, parent } => {
                for p in std::iter::once(path).chain(parent) {
                    let dir = p.parent().unwrap_or(Path::new(""));
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if !data_dirs.iter().any(|d| same_dir(dir, d)) {
                        return Err(format!("send of {p:?}, outside the snapshot dirs"));
                    }
                    if names::check_snapshot(&name).is_err() || names::is_marker(&name) {
                        return Err(format!("send of {name:?}, not a snapshot name"));
                    }
                }
            }
            Request::Rsync { args, .. } => {
                if !args.iter().any(|a| a == "--sender") {
                    return Err(format!("rsync without --sender: {args:?}"));
                }
                if let Some(flag) = args.iter().find(|a| dangerous_rsync_flag(a)) {
                    return Err(format!(
                        "rsync server accepted the symlink-following or writing flag {flag:?}"
                    ));
                }
                let path = args.last().map(String::as_str).unwrap_or_default();
                let trimmed = Path::new(path.trim_end_matches('/'));
                let parent = trimmed.parent().unwrap_or(Path::new(""));
                if ![&c.volumes_path, &c.test_remote_path]
                    .iter()
                    .any(|d| same_dir(parent, d))
                {
                    return Err(format!("rsync of {path:?}, outside the volume dirs"));
                }
            }
        }
        Ok(true)
    }
}

// --------------------------------------------------------- schedule.csv

struct ScheduleCsv;

const CSV_NAMES: &[&str] = &[
    "db", "web", "a.b-c_d", "x", "../x", "a b", "", "db\n", "d,b",
];
const CSV_ACTIONS: &[&str] = &[
    "snapshot",
    "replicate:10.0.0.2",
    "replicate:root@peer",
    "purge:1h:1d:1w:4w:1y",
    "purge:1h",
    "synchronize:h1,h2.lan",
    "synchronize:h1,,h2",
    "replicate:a\"b",
    "snap\nshot",
    "replicate:[fe80::1]",
];
const CSV_TIMERS: &[&str] = &[
    "60",
    "0",
    "5",
    " 007 ",
    "cron:0 3 * * *",
    "cron:0 1,13 * * *",
    "cron:*/15 * * * 1-5",
    "cron:@daily",
    "cron:0 3\n* * *",
    "cron:0 3\r* * *",
    "cron:0\t3 * * *",
    "cron:\"0 3 * * *\"",
    "60\n",
    "abc",
    "99999999999999999999",
];

impl Target for ScheduleCsv {
    fn name(&self) -> &'static str {
        "schedule-csv"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![
            b"db,\"synchronize:h1,h2\",60,True\r\nweb,snapshot,\"cron:0 1,13 * * *\",False\r\ndb,purge:1h:1d:1w:4w:1y,1440,True\r\n".to_vec(),
            b"# comment\r\ndb,snapshot,60\n\n  \nweb,snapshot,5,false\nx,snapshot,5,True".to_vec(),
            b"\"broken,snapshot,60,True\r\nweb,snapshot,abc,True\r\n../x,snapshot,60,True\r\nweb\xff,snapshot,60,True\r\n".to_vec(),
            b"a,\"b\"c,d\r\na\"b,\"x\"\"y\"\r\n,,\r\n".to_vec(),
        ]
    }

    /// A schedule line made of job fields, some of them hostile, as the
    /// API would store them.
    fn generate(&mut self, rng: &mut Rng) -> Vec<u8> {
        let mut out = b"J\x1f".to_vec();
        for _ in 0..1 + rng.below(4) {
            out.extend_from_slice(rng.pick(CSV_NAMES).as_bytes());
            out.push(0x1f);
            out.extend_from_slice(rng.pick(CSV_ACTIONS).as_bytes());
            out.push(0x1f);
            out.extend_from_slice(rng.pick(CSV_TIMERS).as_bytes());
            out.push(0x1f);
            out.extend_from_slice(if rng.chance(50) { b"1" } else { b"0" });
            out.push(0x1e);
        }
        out
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        // Generated inputs (`J` 0x1f, then records of fields separated by
        // 0x1f, ended by 0x1e) are jobs given to the API: each one that
        // Job::parse accepts must come back from schedule.csv as it went in.
        if let Some(records) = input.strip_prefix(b"J\x1f") {
            let mut accepted = false;
            let mut lines = Vec::new();
            for record in records.split(|b| *b == 0x1e) {
                let text = String::from_utf8_lossy(record).into_owned();
                let fields: Vec<&str> = text.split('\x1f').collect();
                let [name, action, timer, active] = fields[..] else {
                    continue;
                };
                if let Ok(job) = Job::parse(name, action, timer, active == "1") {
                    if lines
                        .iter()
                        .any(|l| matches!(l, Line::Job(j) if j.key == job.key))
                    {
                        continue;
                    }
                    lines.push(Line::Job(Arc::new(job)));
                    accepted = true;
                }
            }
            let written = csv::render(&lines);
            let read = csv::parse(&written);
            if let Some(bad) = read.invalid().next() {
                return Err(format!(
                    "an accepted job did not survive schedule.csv: line {} {:?}: {}",
                    bad.number,
                    String::from_utf8_lossy(&bad.raw),
                    bad.error
                ));
            }
            let before: Vec<_> = lines
                .iter()
                .filter_map(|l| match l {
                    Line::Job(j) => Some((j.key.clone(), j.timer_text.clone(), j.active)),
                    _ => None,
                })
                .collect();
            let after: Vec<_> = read
                .jobs()
                .map(|j| (j.key.clone(), j.timer_text.clone(), j.active))
                .collect();
            if before != after {
                return Err(format!(
                    "jobs changed through schedule.csv: {before:?} -> {after:?}"
                ));
            }
            return Ok(accepted);
        }
        let file = csv::parse(input);
        for job in file.jobs() {
            if let Err(e) = Job::check(job.name(), job.action_text(), &job.timer_text) {
                return Err(format!("parsed job fails its own check: {e}"));
            }
        }
        let once = csv::render(&file.lines);
        let twice = csv::render(&csv::parse(&once).lines);
        if once != twice {
            return Err(format!(
                "render is not stable: {:?} then {:?}",
                String::from_utf8_lossy(&once),
                String::from_utf8_lossy(&twice)
            ));
        }
        let accepted = file.jobs().next().is_some();
        Ok(accepted)
    }
}

// ---------------------------------------------------------------- purge

struct Purge {
    now: NaiveDateTime,
}

impl Target for Purge {
    fn name(&self) -> &'static str {
        "purge"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![
            b"1h:1d:1w:4w:1y\ndb@2026-11-22T02:35:52.701543\ndb@2026-11-21T02:35:52.5\n".to_vec(),
            b"2m:1h\ndb@2026-11-22T02:00:00.000000\ndb@2026-11-22T02:01:00.000000@peer\n".to_vec(),
        ]
    }

    fn generate(&mut self, rng: &mut Rng) -> Vec<u8> {
        let parts = 1 + rng.below(5);
        let pattern: Vec<String> = (0..parts)
            .map(|_| {
                format!(
                    "{}{}{}",
                    *rng.pick(&[0u64, 1, 2, 7, 60, 1000, u64::MAX / 2, u64::MAX]),
                    rng.pick(&["m", "h", "d", "w", "y", "", "x"]),
                    rng.pick(&["", "", "", "/3", "/1", "/0", "/", "/1.5", "/99999999999"])
                )
            })
            .collect();
        let mut out = pattern.join(":");
        for _ in 0..rng.below(40) {
            // Mostly in the past, some in the future (clock skew).
            let offset = rng.below(200_000) as i64 - 20_000;
            let t = self.now - TimeDelta::minutes(offset);
            let name = rng.pick(&["db", "web", "db2"]);
            let stamp = names::format_timestamp(t, DTFORMAT);
            let marker = if rng.chance(20) { "@peer" } else { "" };
            out.push_str(&format!("\n{name}@{stamp}{marker}"));
        }
        out.into_bytes()
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(input);
        let mut lines = text.split('\n');
        let pattern_text = lines.next().unwrap_or_default();
        let snapshots: Vec<String> = lines.map(str::to_string).collect();
        let Ok(pattern) = Pattern::parse(pattern_text) else {
            return Ok(false);
        };
        let parts: Vec<&str> = pattern_text.split(':').collect();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let well_formed = parts.iter().all(|p| {
            let (duration, count) = p.split_once('/').unwrap_or((p, "1"));
            duration.len() >= 2
                && digits(&duration[..duration.len() - 1])
                && duration.ends_with(['m', 'h', 'd', 'w', 'y'])
                && digits(count)
        });
        if !well_formed {
            return Err(format!("accepted the purge pattern {pattern_text:?}"));
        }
        for timeframes in [PurgeTimeframes::Age, PurgeTimeframes::Calendar] {
            let doomed =
                purge::compute_purges(&snapshots, &pattern, timeframes, self.now, DTFORMAT);
            check_doomed(&snapshots, &doomed)?;
        }
        Ok(true)
    }
}

/// What any purge may delete: each candidate at most once, never one it
/// cannot date.
fn check_doomed(snapshots: &[String], doomed: &[String]) -> Result<(), String> {
    let unique: BTreeSet<&String> = doomed.iter().collect();
    if unique.len() != doomed.len() {
        return Err("a snapshot is deleted twice".into());
    }
    for name in doomed {
        if !snapshots.contains(name) {
            return Err(format!("deletes {name:?}, which is not a candidate"));
        }
        let parses = name
            .split('@')
            .nth(1)
            .and_then(|s| names::parse_timestamp(s, DTFORMAT))
            .is_some();
        if !parses {
            return Err(format!("deletes {name:?}, whose timestamp does not parse"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- names

struct Names;

impl Target for Names {
    fn name(&self) -> &'static str {
        "names"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            "db",
            "my_vol.1-x",
            "db@2026-11-22T02:35:52.701543",
            "db@2026-11-22T02:35:52.701543@10.0.0.2",
            "2026-11-22T02:35:52.5",
            &"v".repeat(MAX_VOLUME_BYTES),
            &format!(
                "{}@2026-11-22T02:35:52.701543",
                "v".repeat(MAX_VOLUME_BYTES)
            ),
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn generate(&mut self, rng: &mut Rng) -> Vec<u8> {
        const ALPHABET: &[u8] = b"az09AZ_.-@:/\\ \0\n$;`|&()..";
        let len = *rng.pick(&[0usize, 1, 2, 5, 30, 159, 160, 161, 200, 254, 255, 256, 300]);
        let mut out: Vec<u8> = (0..len).map(|_| *rng.pick(ALPHABET)).collect();
        if rng.chance(30) && !out.is_empty() {
            out[0] = b'a';
        }
        if rng.chance(30) {
            // A real timestamp, possibly far off.
            let days = rng.below(800_000) as i64 - 400_000;
            let t = NaiveDate::from_ymd_opt(2026, 1, 1)
                .unwrap()
                .and_hms_micro_opt(0, 0, 0, rng.below(1_000_000) as u32)
                .unwrap()
                .checked_add_signed(TimeDelta::days(days))
                .unwrap_or_default();
            out.push(b'@');
            out.extend_from_slice(names::format_timestamp(t, DTFORMAT).as_bytes());
        }
        out
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(input);
        let name: &str = &text;
        let mut accepted = false;
        if names::check_volume(name).is_ok() {
            accepted = true;
            let first_ok = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
            let chars_ok = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if name.len() > 255 || !first_ok || !chars_ok || !single_component(name) {
                return Err(format!("illegal volume name accepted: {name:?}"));
            }
        }
        if names::check_new_volume(name).is_ok() {
            if name.len() > MAX_VOLUME_BYTES || names::check_volume(name).is_err() {
                return Err(format!("new volume name accepted: {name:?}"));
            }
            // Everything derived from it fits and is legal.
            let stamp = "9999-12-31T23:59:59.999999";
            let snapshot = format!("{name}@{stamp}");
            let marker = format!("{snapshot}@{}", "h".repeat(MAX_MARKER_HOST_BYTES));
            let staging = format!("{name}.{}.{}.{}", u32::MAX, u64::MAX, 999_999_999);
            for derived in [&snapshot, &marker, &staging] {
                if derived.len() > 255 {
                    return Err(format!("{derived:?} derived from {name:?} is too long"));
                }
            }
            for derived in [&snapshot, &marker] {
                if names::check_snapshot(derived).is_err() {
                    return Err(format!("{derived:?} derived from {name:?} is refused"));
                }
            }
        }
        if names::check_snapshot(name).is_ok() {
            accepted = true;
            if name.len() > 255
                || !name.contains('@')
                || name.starts_with('.')
                || !single_component(name)
                || name.contains(['\0', '/', '\n'])
                || names::check_volume(names::volume_of(name)).is_err()
            {
                return Err(format!("illegal snapshot name accepted: {name:?}"));
            }
        }
        for part in name.split('@') {
            if let Some(t) = names::parse_timestamp(part, DTFORMAT) {
                let again = names::format_timestamp(t, DTFORMAT);
                if names::parse_timestamp(&again, DTFORMAT) != Some(t) {
                    return Err(format!(
                        "timestamp {part:?} does not round-trip ({again:?})"
                    ));
                }
            }
        }
        Ok(accepted)
    }
}

// -------------------------------------------------------- stream rename

struct StreamRename;

const MAGIC: &[u8] = b"btrfs-stream\0";
const ATTR_PATH: u16 = 15;

fn command(cmd: u16, tlvs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let borrowed: Vec<(u16, &[u8])> = tlvs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    stream::build::command(cmd, &borrowed)
}

/// (type, value) attributes of a command.
type Tlvs = Vec<(u16, Vec<u8>)>;

/// The first command of a stream, parsed independently of the code under
/// test: (command, TLVs, bytes consumed), if it is well-formed.
fn first_command(s: &[u8]) -> Option<(u16, Tlvs, usize)> {
    if s.len() < 27 || &s[..13] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(s[17..21].try_into().ok()?) as usize;
    let cmd = u16::from_le_bytes(s[21..23].try_into().ok()?);
    let crc = u32::from_le_bytes(s[23..27].try_into().ok()?);
    let data = s.get(27..27 + len)?;
    let mut zeroed = s[17..27].to_vec();
    zeroed[6..10].fill(0);
    if stream::crc32c(stream::crc32c(0, &zeroed), data) != crc {
        return None;
    }
    let mut tlvs = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let kind = u16::from_le_bytes(data.get(pos..pos + 2)?.try_into().ok()?);
        let size = u16::from_le_bytes(data.get(pos + 2..pos + 4)?.try_into().ok()?) as usize;
        tlvs.push((kind, data.get(pos + 4..pos + 4 + size)?.to_vec()));
        pos += 4 + size;
    }
    Some((cmd, tlvs, 27 + len))
}

impl Target for StreamRename {
    fn name(&self) -> &'static str {
        "stream-rename"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let uuid = vec![7u8; 16];
        let mut full = [MAGIC, &1u32.to_le_bytes()].concat();
        full.extend(command(
            1,
            &[
                (ATTR_PATH, b"db@2026-11-22T02:35:52.701543".to_vec()),
                (1, uuid.clone()),
                (2, 5u64.to_le_bytes().to_vec()),
            ],
        ));
        full.extend(command(3, &[(ATTR_PATH, b"f".to_vec())]));
        let mut incremental = [MAGIC, &2u32.to_le_bytes()].concat();
        incremental.extend(command(
            2,
            &[(ATTR_PATH, b"db@2".to_vec()), (1, uuid.clone()), (20, uuid)],
        ));
        incremental.extend_from_slice(b"REST");
        vec![full, incremental]
    }

    fn generate(&mut self, rng: &mut Rng) -> Vec<u8> {
        let mut s = [MAGIC, &(rng.below(4) as u32).to_le_bytes()].concat();
        let cmd = *rng.pick(&[1u16, 2, 2, 1, 0, 3, 22, u16::MAX]);
        let mut tlvs = Vec::new();
        for _ in 0..rng.below(6) {
            let kind = *rng.pick(&[ATTR_PATH, ATTR_PATH, 1, 2, 20, 21, 0, u16::MAX]);
            let value = match rng.below(4) {
                0 => rng
                    .pick(&[
                        &b"db@1"[..],
                        b"../../etc",
                        b"",
                        b"\xff\xfe",
                        b"a/b",
                        b".recv.1",
                    ])
                    .to_vec(),
                1 => vec![b'x'; *rng.pick(&[255usize, 256, 4096, 4096, 4096, 65535])],
                _ => rng.bytes(40),
            };
            tlvs.push((kind, value));
        }
        s.extend(command(cmd, &tlvs));
        if rng.chance(50) {
            s.extend(rng.bytes(64));
        }
        s
    }

    /// Recomputes the first command's checksum after a mutation, so the
    /// TLV walk (not only the checksum test) sees the mutated bytes.
    fn fix_up(&mut self, _rng: &mut Rng, mut s: Vec<u8>) -> Vec<u8> {
        if s.len() >= 27 {
            let len = u32::from_le_bytes(s[17..21].try_into().unwrap()) as usize;
            if let Some(end) = 27usize.checked_add(len).filter(|e| *e <= s.len()) {
                let mut zeroed = s[17..27].to_vec();
                zeroed[6..10].fill(0);
                let crc = stream::crc32c(stream::crc32c(0, &zeroed), &s[27..end]);
                s[23..27].copy_from_slice(&crc.to_le_bytes());
            }
        }
        s
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let new_name = ".recv.4194304.18446744073709551615.999999999";
        let mut out = Vec::new();
        let mut reader = input;
        if stream::rename_subvolume(&mut reader, &mut out, new_name).is_err() {
            return Ok(false);
        }
        let consumed = input.len() - reader.len();
        let Some((cmd, tlvs, used)) = first_command(input) else {
            return Err("accepted a stream whose first command is malformed".into());
        };
        if used != consumed {
            return Err(format!(
                "consumed {consumed} bytes, the first command has {used}"
            ));
        }
        if cmd != 1 && cmd != 2 {
            return Err(format!("accepted first command {cmd}"));
        }
        let Some((out_cmd, out_tlvs, out_used)) = first_command(&out) else {
            return Err("wrote a malformed first command (length or checksum)".into());
        };
        if out_used != out.len() || out_cmd != cmd || out[..17] != input[..17] {
            return Err("the rewritten header or command differs".into());
        }
        let original = tlvs
            .iter()
            .find(|(k, _)| *k == ATTR_PATH)
            .map(|(_, v)| v.clone());
        let Some(original) = original else {
            return Err("accepted a first command without a path".into());
        };
        // Same TLVs, with the first PATH replaced.
        let mut expected = tlvs.clone();
        if let Some(p) = expected.iter_mut().find(|(k, _)| *k == ATTR_PATH) {
            p.1 = new_name.as_bytes().to_vec();
        }
        if out_tlvs != expected {
            return Err("the rewrite changed more than the subvolume name".into());
        }
        // Renaming back gives the input's first command byte for byte.
        if let Ok(name) = std::str::from_utf8(&original) {
            let mut back = Vec::new();
            stream::rename_subvolume(&mut &out[..], &mut back, name)
                .map_err(|e| format!("the rewritten stream is refused: {e}"))?;
            if back != input[..consumed] {
                return Err("renaming back does not give the original bytes".into());
            }
        }
        Ok(true)
    }
}

// ------------------------------------------------ stream confinement

/// Every command after the first, through `stream::copy_checked` with the
/// receive side's `confine::Confinement`; the oracle is an independent
/// model of the tree the forwarded commands build.
struct Confine;

mod send {
    pub const SUBVOL: u16 = 1;
    pub const MKFILE: u16 = 3;
    pub const MKDIR: u16 = 4;
    pub const SYMLINK: u16 = 8;
    pub const RENAME: u16 = 9;
    pub const LINK: u16 = 10;
    pub const UNLINK: u16 = 11;
    pub const RMDIR: u16 = 12;
    pub const SET_XATTR: u16 = 13;
    pub const WRITE: u16 = 15;
    pub const CLONE: u16 = 16;
    pub const TRUNCATE: u16 = 17;
    pub const CHMOD: u16 = 18;
    pub const CHOWN: u16 = 19;
    pub const UTIMES: u16 = 20;
    pub const END: u16 = 21;
    pub const FALLOCATE: u16 = 23;
    pub const FILEATTR: u16 = 24;
    pub const ENCODED_WRITE: u16 = 25;
    pub const ENABLE_VERITY: u16 = 26;
    pub const A_SIZE: u16 = 4;
    pub const A_MODE: u16 = 5;
    pub const A_UID: u16 = 6;
    pub const A_GID: u16 = 7;
    pub const A_XATTR_NAME: u16 = 13;
    pub const A_XATTR_DATA: u16 = 14;
    pub const A_PATH: u16 = 15;
    pub const A_PATH_TO: u16 = 16;
    pub const A_PATH_LINK: u16 = 17;
    pub const A_FILE_OFFSET: u16 = 18;
    pub const A_DATA: u16 = 19;
    pub const A_CLONE_UUID: u16 = 20;
    pub const A_CLONE_CTRANSID: u16 = 21;
    pub const A_CLONE_PATH: u16 = 22;
    pub const A_CLONE_OFFSET: u16 = 23;
    pub const A_CLONE_LEN: u16 = 24;
}

const CONFINE_PATHS: &[&str] = &[
    "a",
    "b",
    "d",
    "d/x",
    "d/y",
    "l",
    "l/x",
    "l/d/x",
    "a/b",
    "a/b/c",
    "e/f",
    "",
    ".",
    "..",
    "../x",
    "../../tmp/x",
    "/etc/x",
    "/",
    "d/../x",
    "l/../x",
    "d//x",
    "./d/x",
    "x\0y",
    "d/./x",
    "\u{ff}",
    "d/..",
    "d/x/",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ModelKind {
    Dir,
    Symlink,
    Other,
}

fn model_path(raw: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(raw).map_err(|_| format!("forwarded non-UTF-8 path {raw:?}"))?;
    if text.starts_with('/') || text.contains('\0') || text.split('/').any(|c| c == "..") {
        return Err(format!("forwarded path {text:?}"));
    }
    Ok(text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/"))
}

fn prefixes(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (1..parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// Applies the forwarded commands to a model tree, failing on any that
/// could act outside the new subvolume.
fn check_forwarded(out: &[u8]) -> Result<(), String> {
    use send::*;
    let mut tree: HashMap<String, ModelKind> = HashMap::new();
    tree.insert(String::new(), ModelKind::Dir);
    let mut pos = 0;
    while pos + 10 <= out.len() {
        let len = u32::from_le_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
        let command = u16::from_le_bytes(out[pos + 4..pos + 6].try_into().unwrap());
        let data = &out[pos + 10..pos + 10 + len];
        pos += 10 + len;
        let mut attrs: HashMap<u16, &[u8]> = HashMap::new();
        let mut at = 0;
        while at + 4 <= data.len() {
            let kind = u16::from_le_bytes(data[at..at + 2].try_into().unwrap());
            let size = u16::from_le_bytes(data[at + 2..at + 4].try_into().unwrap()) as usize;
            let Some(value) = data.get(at + 4..at + 4 + size) else {
                break;
            };
            attrs.entry(kind).or_insert(value);
            at += 4 + size;
        }
        if command == SUBVOL || command == 2 {
            return Err("forwarded a second subvolume command".into());
        }
        if command == END {
            continue;
        }
        let mut paths = vec![A_PATH];
        match command {
            RENAME => paths.push(A_PATH_TO),
            LINK => paths.push(A_PATH_LINK),
            _ => {}
        }
        let mut resolved = Vec::new();
        for kind in paths {
            let Some(raw) = attrs.get(&kind) else {
                continue;
            };
            let path = model_path(raw)?;
            for dir in prefixes(&path) {
                if tree.get(&dir) == Some(&ModelKind::Symlink) {
                    return Err(format!(
                        "command {command} goes through the symlink {dir:?} ({path:?})"
                    ));
                }
            }
            resolved.push(path);
        }
        // A clone's source path is resolved in the clone source subvolume.
        if command == CLONE {
            if let Some(raw) = attrs.get(&A_CLONE_PATH) {
                model_path(raw)?;
            }
        }
        let target = resolved.first().cloned().unwrap_or_default();
        let follows = matches!(
            command,
            WRITE | TRUNCATE | CHMOD | CLONE | FALLOCATE | FILEATTR | ENCODED_WRITE | ENABLE_VERITY
        );
        if follows && tree.get(&target) == Some(&ModelKind::Symlink) {
            return Err(format!(
                "command {command} writes through the symlink {target:?}"
            ));
        }
        let remove_below = |tree: &mut HashMap<String, ModelKind>, p: &str| {
            let below = format!("{p}/");
            tree.retain(|k, _| k != p && !k.starts_with(&below));
        };
        match command {
            MKDIR => {
                remove_below(&mut tree, &target);
                tree.insert(target, ModelKind::Dir);
            }
            SYMLINK => {
                remove_below(&mut tree, &target);
                tree.insert(target, ModelKind::Symlink);
            }
            MKFILE | 5 | 6 | 7 | LINK => {
                remove_below(&mut tree, &target);
                tree.insert(target, ModelKind::Other);
            }
            UNLINK | RMDIR => remove_below(&mut tree, &target),
            RENAME => {
                let to = resolved.get(1).cloned().unwrap_or_default();
                let moved: Vec<(String, ModelKind)> = tree
                    .iter()
                    .filter(|(k, _)| **k == target || k.starts_with(&format!("{target}/")))
                    .map(|(k, v)| (format!("{to}{}", &k[target.len()..]), *v))
                    .collect();
                remove_below(&mut tree, &target);
                remove_below(&mut tree, &to);
                tree.extend(moved);
            }
            _ => {}
        }
    }
    Ok(())
}

impl Target for Confine {
    fn name(&self) -> &'static str {
        "stream-confine"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        use send::*;
        let c = stream::build::command;
        let mut legit = Vec::new();
        legit.extend(c(MKDIR, &[(A_PATH, b"d")]));
        legit.extend(c(MKFILE, &[(A_PATH, b"d/f")]));
        legit.extend(c(
            WRITE,
            &[
                (A_PATH, b"d/f"),
                (A_FILE_OFFSET, &0u64.to_le_bytes()),
                (A_DATA, b"hello"),
            ],
        ));
        legit.extend(c(SYMLINK, &[(A_PATH, b"l"), (A_PATH_LINK, b"/root/.ssh")]));
        legit.extend(c(RENAME, &[(A_PATH, b"d/f"), (A_PATH_TO, b"g")]));
        legit.extend(c(
            CHMOD,
            &[(A_PATH, b"g"), (A_MODE, &0o644u64.to_le_bytes())],
        ));
        legit.extend(c(END, &[]));
        let mut hostile = Vec::new();
        hostile.extend(c(SYMLINK, &[(A_PATH, b"l"), (A_PATH_LINK, b"/root/.ssh")]));
        hostile.extend(c(MKFILE, &[(A_PATH, b"l/authorized_keys")]));
        hostile.extend(c(END, &[]));
        vec![legit, hostile]
    }

    fn generate(&mut self, rng: &mut Rng) -> Vec<u8> {
        use send::*;
        let mut out = Vec::new();
        for _ in 0..1 + rng.below(12) {
            let path = rng.pick(CONFINE_PATHS).as_bytes().to_vec();
            let other = rng.pick(CONFINE_PATHS).as_bytes().to_vec();
            let u64le = (rng.next() % 4096).to_le_bytes().to_vec();
            let (command, attrs): (u16, Vec<(u16, Vec<u8>)>) = match rng.below(17) {
                0 => (MKDIR, vec![(A_PATH, path)]),
                1 => (MKFILE, vec![(A_PATH, path)]),
                2 => (
                    SYMLINK,
                    vec![
                        (A_PATH, path),
                        (
                            A_PATH_LINK,
                            rng.pick(&[&b"/root/.ssh"[..], b"..", b"d", b"/", b"../../etc"])
                                .to_vec(),
                        ),
                    ],
                ),
                3 => (RENAME, vec![(A_PATH, path), (A_PATH_TO, other)]),
                4 => (LINK, vec![(A_PATH, path), (A_PATH_LINK, other)]),
                5 => (UNLINK, vec![(A_PATH, path)]),
                6 => (RMDIR, vec![(A_PATH, path)]),
                7 => (
                    WRITE,
                    vec![
                        (A_PATH, path),
                        (A_FILE_OFFSET, u64le),
                        (A_DATA, b"data".to_vec()),
                    ],
                ),
                8 => (TRUNCATE, vec![(A_PATH, path), (A_SIZE, u64le)]),
                9 => (CHMOD, vec![(A_PATH, path), (A_MODE, u64le)]),
                10 => (
                    CHOWN,
                    vec![(A_PATH, path), (A_UID, u64le.clone()), (A_GID, u64le)],
                ),
                11 => (
                    SET_XATTR,
                    vec![
                        (A_PATH, path),
                        (A_XATTR_NAME, b"user.x".to_vec()),
                        (A_XATTR_DATA, b"v".to_vec()),
                    ],
                ),
                12 => (
                    CLONE,
                    vec![
                        (A_PATH, path),
                        (A_FILE_OFFSET, u64le.clone()),
                        (A_CLONE_LEN, u64le.clone()),
                        (A_CLONE_UUID, vec![1; 16]),
                        (A_CLONE_CTRANSID, u64le.clone()),
                        (A_CLONE_PATH, other),
                        (A_CLONE_OFFSET, u64le),
                    ],
                ),
                13 => (UTIMES, vec![(A_PATH, path)]),
                14 => (
                    *rng.pick(&[FALLOCATE, FILEATTR, ENABLE_VERITY, SUBVOL, 2, 0, 99]),
                    vec![(A_PATH, path)],
                ),
                15 => (END, vec![]),
                _ => (
                    rng.below(30) as u16,
                    vec![(rng.below(40) as u16, rng.bytes(8))],
                ),
            };
            let attrs: Vec<(u16, &[u8])> = attrs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            out.extend(stream::build::command(command, &attrs));
        }
        if rng.chance(80) {
            out.extend(stream::build::command(END, &[]));
        }
        out
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        use buttervolume::replication::confine::{Confinement, NoParent};
        let mut confinement = Confinement::new(NoParent, false);
        let mut out = Vec::new();
        let result =
            stream::copy_checked(&mut &input[..], &mut out, 1, |c, a| confinement.check(c, a));
        // What was forwarded reached `btrfs receive`, accepted or not.
        check_forwarded(&out)?;
        Ok(result.is_ok())
    }
}

// ----------------------------------------------------------------- main

fn main() {
    let mut seconds = 20.0f64;
    let mut iterations = u64::MAX;
    let mut seed = 0x00F0_22ED_2026_u64;
    let mut wanted = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().unwrap_or_else(|| panic!("{arg} needs {what}"));
        match arg.as_str() {
            "--seconds" => seconds = value("a number of seconds").parse().expect("--seconds"),
            "--iterations" => iterations = value("a count").parse().expect("--iterations"),
            "--seed" => seed = value("a number").parse().expect("--seed"),
            "-h" | "--help" => {
                println!("usage: fuzz [--seconds S] [--iterations N] [--seed S] [forced-command|schedule-csv|purge|names|stream-rename...]");
                return;
            }
            other => wanted.push(other.to_string()),
        }
    }
    let now = NaiveDate::from_ymd_opt(2026, 11, 22)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    let mut targets: Vec<Box<dyn Target>> = vec![
        Box::new(ForcedCommand::new()),
        Box::new(ScheduleCsv),
        Box::new(Purge { now }),
        Box::new(Names),
        Box::new(StreamRename),
        Box::new(Confine),
    ];
    let known: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    if let Some(unknown) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
        eprintln!("unknown target {unknown:?}; targets: {}", known.join(", "));
        std::process::exit(2);
    }
    // Panics are caught and counted; the hook would print each one.
    panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for target in targets
        .iter_mut()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|w| w == t.name()))
    {
        let started = Instant::now();
        let stats = fuzz(
            target.as_mut(),
            seed,
            Duration::from_secs_f64(seconds),
            iterations,
        );
        let crashes = stats.panics + stats.violations;
        failed |= crashes > 0;
        println!(
            "target={} iterations={} accepted={} crashes={} (panics={} property violations={}) corpus={} seconds={:.1}",
            target.name(),
            stats.iterations,
            stats.accepted,
            crashes,
            stats.panics,
            stats.violations,
            stats.corpus,
            started.elapsed().as_secs_f64()
        );
    }
    std::process::exit(i32::from(failed));
}
