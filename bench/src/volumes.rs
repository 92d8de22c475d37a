//! `volumes`: local API latency of our daemon and of the reference
//! buttervolume 3.13 (Python), side by side in one run.
//!
//! Each daemon is testkit's (fresh private dirs on the test btrfs, Docker
//! kept out, empty schedule), driven by the same client (one connection
//! per request, like Docker; time = request sent → reply read). They run
//! one after the other, each alone on the filesystem: after the first one
//! its subvolumes are deleted and `btrfs subvolume sync` waits until btrfs
//! has cleaned them up (the reference's `btrfs subvolume show` scans every
//! subvolume of the filesystem). Phases for each: Create of VOLUMES
//! volumes; List and Get; SNAPSHOTS snapshots of one volume (with some
//! content); SNAPSHOTS_PATH filled to LIST_TOTAL entries by the daemon's
//! own Snapshot API (a tight loop), then Snapshot.List; Restore of a named
//! snapshot and Clone; the daemon's VmRSS and VmHWM.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};
use testkit::{raw_request, reference_bin, test_btrfs, Daemon};

use crate::report::{ms, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 200)]
    volumes: usize,
    #[arg(long, default_value_t = 100)]
    snapshots: usize,
    #[arg(long, default_value_t = 5000)]
    list_total: usize,
    #[arg(long, default_value_t = 10)]
    list_runs: usize,
    #[arg(long, default_value_t = 200)]
    get_runs: usize,
    #[arg(long, default_value_t = 20)]
    restore_runs: usize,
    /// Only our daemon (no reference column).
    #[arg(long)]
    ours_only: bool,
}

/// What one daemon measured.
#[derive(Default)]
struct Figures {
    create: Samples,
    list: Samples,
    listed: usize,
    get: Samples,
    snapshot: Samples,
    fill: Samples,
    fill_rate: f64,
    snapshot_list: Samples,
    snapshot_listed: usize,
    restore: Samples,
    clone: Samples,
    rss_kib: u64,
    hwm_kib: u64,
}

/// One request on a fresh connection: how long it took and the reply,
/// which must not carry an error.
fn call(d: &Daemon, method: &str, path: &str, body: &Value) -> (Duration, Value) {
    let bytes = if method == "GET" {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let start = Instant::now();
    let (code, text) = raw_request(&d.socket, method, path, &bytes);
    let took = start.elapsed();
    let reply: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} ({code}, {e}): {text}"));
    let err = reply["Err"].as_str().unwrap_or_default();
    assert!(err.is_empty(), "{path} {body}: {err}");
    (took, reply)
}

fn post(d: &Daemon, path: &str, body: Value) -> Duration {
    call(d, "POST", path, &body).0
}

fn proc_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{key} of {pid}"))
}

fn measure(o: &Options, d: &Daemon, who: &str) -> Figures {
    let mut f = Figures::default();
    eprintln!("{who}: create {} volumes", o.volumes);
    for i in 0..o.volumes {
        f.create.push(post(
            d,
            "/VolumeDriver.Create",
            json!({ "Name": format!("bench-{i:04}") }),
        ));
    }
    eprintln!("{who}: list ×{}, get ×{}", o.list_runs, o.get_runs);
    for _ in 0..o.list_runs {
        let (took, reply) = call(d, "POST", "/VolumeDriver.List", &json!({}));
        f.list.push(took);
        f.listed = reply["Volumes"].as_array().map_or(0, Vec::len);
    }
    for i in 0..o.get_runs {
        let name = format!("bench-{:04}", i % o.volumes);
        f.get
            .push(post(d, "/VolumeDriver.Get", json!({ "Name": name })));
    }
    // Some content in the volume that gets snapshotted, restored and cloned.
    let v = d.volumes().join("bench-0000");
    std::fs::create_dir_all(v.join("dir")).unwrap();
    for i in 1..=50 {
        std::fs::write(v.join(format!("dir/f{i}")), format!("file {i}\n")).unwrap();
    }
    let blob: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(v.join("blob"), blob).unwrap();
    testkit::run("sync", &[]);
    eprintln!("{who}: {} snapshots", o.snapshots);
    for _ in 0..o.snapshots {
        f.snapshot.push(post(
            d,
            "/VolumeDriver.Snapshot",
            json!({ "Name": "bench-0000" }),
        ));
    }
    eprintln!("{who}: filling SNAPSHOTS_PATH to {} entries", o.list_total);
    let (_, listed) = call(d, "GET", "/VolumeDriver.Snapshot.List", &Value::Null);
    let missing = o
        .list_total
        .saturating_sub(listed["Snapshots"].as_array().map_or(0, Vec::len));
    let start = Instant::now();
    for _ in 0..missing {
        f.fill.push(post(
            d,
            "/VolumeDriver.Snapshot",
            json!({ "Name": "bench-0001" }),
        ));
    }
    f.fill_rate = missing as f64 / start.elapsed().as_secs_f64();
    eprintln!("{who}: Snapshot.List ×{}", o.list_runs);
    for _ in 0..o.list_runs {
        let (took, reply) = call(d, "GET", "/VolumeDriver.Snapshot.List", &Value::Null);
        f.snapshot_list.push(took);
        f.snapshot_listed = reply["Snapshots"].as_array().map_or(0, Vec::len);
    }
    eprintln!("{who}: restore ×{0}, clone ×{0}", o.restore_runs);
    let (_, own) = call(
        d,
        "GET",
        "/VolumeDriver.Snapshot.List/bench-0000",
        &Value::Null,
    );
    let mut own: Vec<&str> = own["Snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    own.sort();
    let first = own[0].to_string();
    for _ in 0..o.restore_runs {
        f.restore.push(post(
            d,
            "/VolumeDriver.Snapshot.Restore",
            json!({ "Name": first }),
        ));
    }
    for i in 0..o.restore_runs {
        let body = json!({ "Name": "bench-0000", "Target": format!("clone-{i:03}") });
        f.clone.push(post(d, "/VolumeDriver.Clone", body));
    }
    let pid = d.pid().expect("the daemon runs");
    f.rss_kib = proc_kib(pid, "VmRSS");
    f.hwm_kib = proc_kib(pid, "VmHWM");
    f
}

/// Runs the phases on a fresh daemon, then removes it and waits until
/// btrfs has cleaned its subvolumes up.
fn run_daemon(o: &Options, who: &str, program: Option<&str>) -> Figures {
    // Info, the daemons' default (the harness's is debug).
    let mut builder = Daemon::builder(&format!("bench-volumes-{who}")).env("RUST_LOG", "info");
    if let Some(program) = program {
        builder = builder.program(program);
    }
    let d = builder.start();
    let figures = measure(o, &d, who);
    drop(d);
    let mnt = test_btrfs();
    testkit::run("btrfs", &["subvolume", "sync", mnt.to_str().unwrap()]);
    testkit::run("sync", &[]);
    figures
}

pub fn run(o: &Options) -> Table {
    let ours = run_daemon(o, "ours", None);
    let reference = if o.ours_only {
        None
    } else {
        let program = reference_bin();
        println!("reference: {}", program.display());
        Some(run_daemon(o, "ref", Some(program.to_str().unwrap())))
    };
    let n = ours.create.len();
    type Pick = fn(&Figures) -> f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rows: Vec<(String, Pick, &str, &str)> = vec![
        (
            format!("Create p50 ({n} volumes, one by one)"),
            |f| f.create.p50(),
            "ms",
            "",
        ),
        ("Create p95".into(), |f| f.create.pct(95.0), "ms", ""),
        (
            format!(
                "Create p50 of the last 20 ({}..{} existing)",
                n.saturating_sub(20),
                n.saturating_sub(1)
            ),
            |f| f.create.last(20).p50(),
            "ms",
            "",
        ),
        (
            format!("Create, all {n} volumes"),
            |f| f.create.total().as_secs_f64(),
            "s",
            "",
        ),
        (
            format!("List p50 ({} volumes)", ours.listed),
            |f| f.list.p50(),
            "ms",
            "",
        ),
        ("Get p50".into(), |f| f.get.p50(), "ms", ""),
        (
            format!("Snapshot p50 ({} snapshots)", ours.snapshot.len()),
            |f| f.snapshot.p50(),
            "ms",
            "ours >= 3x faster",
        ),
        ("Snapshot p95".into(), |f| f.snapshot.pct(95.0), "ms", ""),
        (
            "Snapshot rate filling SNAPSHOTS_PATH (tight loop)".into(),
            |f| f.fill_rate,
            "/s",
            "",
        ),
        (
            format!("Snapshot.List p50 ({} entries)", ours.snapshot_listed),
            |f| f.snapshot_list.p50(),
            "ms",
            "ours < 20 ms",
        ),
        (
            "Snapshot.List p95".into(),
            |f| f.snapshot_list.pct(95.0),
            "ms",
            "",
        ),
        (
            format!(
                "Restore p50 ({} restores of a named snapshot)",
                ours.restore.len()
            ),
            |f| f.restore.p50(),
            "ms",
            "",
        ),
        (
            format!("Clone p50 ({} clones)", ours.clone.len()),
            |f| f.clone.p50(),
            "ms",
            "",
        ),
        (
            "Daemon RSS after the run (VmRSS)".into(),
            |f| f.rss_kib as f64,
            "MiB",
            "",
        ),
        (
            "Daemon peak RSS (VmHWM)".into(),
            |f| f.hwm_kib as f64,
            "MiB",
            "",
        ),
    ];
    let show = |v: f64, unit: &str| match unit {
        "ms" => ms(v),
        "s" => format!("{v:.1} s"),
        "MiB" => format!("{:.1} MiB", mib(v as u64)),
        _ => format!("{v:.0}/s"),
    };
    let mut t = Table::new(&[
        "measurement",
        "ours",
        "reference 3.13",
        "reference / ours",
        "target",
    ]);
    for (label, pick, unit, target) in rows {
        let o = pick(&ours);
        let (r, ratio) = match &reference {
            Some(reference) => {
                let r = pick(reference);
                let ratio = if unit == "/s" { o / r } else { r / o };
                (show(r, unit), format!("{ratio:.1}x"))
            }
            None => ("n/a".into(), "n/a".into()),
        };
        t.row(vec![label, show(o, unit), r, ratio, target.into()]);
    }
    t
}
