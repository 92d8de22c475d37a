//! `receive`: the receiving side alone. A full send stream landed by plain
//! `btrfs receive` (the floor) and by our forced command (`buttervolume
//! ssh-command` as `buttervolume receive`, which reads every command
//! through the confinement check before handing it to `btrfs receive
//! --chroot`), alternating, from the same stream file (in /var/tmp, read
//! into the page cache first) onto the test btrfs. Wall seconds and
//! user/system CPU seconds of each (the process and the `btrfs receive` it
//! runs, from `getrusage(RUSAGE_CHILDREN)`). No network.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Args;
use nix::sys::resource::{getrusage, UsageWho};
use testkit::{cleanup_dir, test_btrfs};

use crate::report::{timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    sizes: crate::app_data::Sizes,
}

const SNAPSHOT: &str = "v@2026-01-01T00:00:00.000000";

/// user and system CPU of the reaped children so far.
fn children_cpu() -> (Duration, Duration) {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64)
    };
    (d(usage.user_time()), d(usage.system_time()))
}

/// Runs `command` with the stream on stdin: wall, user, system.
fn measure(stream: &Path, mut command: Command) -> (Duration, Duration, Duration) {
    std::fs::read(stream).unwrap(); // both start from the page cache
    let (user0, system0) = children_cpu();
    let (status, wall) = timed(|| {
        command
            .stdin(std::fs::File::open(stream).unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap()
    });
    assert!(status.success(), "{command:?}: {status}");
    let (user1, system1) = children_cpu();
    (wall, user1 - user0, system1 - system0)
}

/// Deletes what landed and lets btrfs finish cleaning up.
fn clear(landed: &Path, mnt: &Path) {
    buttervolume::btrfs::set_read_only(landed, false).unwrap();
    buttervolume::btrfs::delete_subvolume(landed).unwrap();
    testkit::run("btrfs", &["subvolume", "sync", mnt.to_str().unwrap()]);
    testkit::run("sync", &[]);
}

pub fn run(o: &Options) -> Table {
    let mnt = test_btrfs();
    let work = mnt.join(format!("bench-receive-{}", std::process::id()));
    let outside = PathBuf::from(format!("/var/tmp/bench-receive.{}", std::process::id()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        measure_all(o, &mnt, &work, &outside)
    }));
    cleanup_dir(&work);
    let _ = std::fs::remove_dir_all(&outside);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn measure_all(o: &Options, mnt: &Path, work: &Path, outside: &Path) -> Table {
    for dir in ["volumes", "snapshots", "received", "state", "raw"] {
        std::fs::create_dir_all(work.join(dir)).unwrap();
    }
    std::fs::create_dir_all(outside).unwrap();
    let volume = work.join("volumes/v");
    buttervolume::btrfs::create_subvolume(&volume).unwrap();
    crate::app_data::write_file(&volume.join("data"), o.sizes.data_mib << 20, 0);
    let snapshot = work.join(SNAPSHOT);
    buttervolume::btrfs::snapshot(&volume, &snapshot, true).unwrap();
    let stream = outside.join("stream");
    testkit::run(
        "btrfs",
        &[
            "send",
            "-q",
            "-f",
            stream.to_str().unwrap(),
            snapshot.to_str().unwrap(),
        ],
    );
    let stream_mib = std::fs::metadata(&stream).unwrap().len() >> 20;
    println!(
        "receive of a {stream_mib} MiB full stream, {} alternating repetitions",
        o.sizes.reps
    );
    let mut plain = Vec::new();
    let mut ours = Vec::new();
    let dir = |d: &str| format!("{}/{d}/", work.display());
    for _ in 0..o.sizes.reps {
        let mut command = Command::new("btrfs");
        command.args(["receive", "-q"]).arg(work.join("raw"));
        plain.push(measure(&stream, command));
        clear(&work.join("raw").join(SNAPSHOT), mnt);
        let mut command = Command::new(testkit::bin());
        command
            .arg("ssh-command")
            .env("SSH_ORIGINAL_COMMAND", "buttervolume receive")
            .env("BUTTERVOLUME_VOLUMES_PATH", dir("volumes"))
            .env("BUTTERVOLUME_SNAPSHOTS_PATH", dir("snapshots"))
            .env("BUTTERVOLUME_TEST_REMOTE_PATH", dir("received"))
            .env("BUTTERVOLUME_STATE_PATH", dir("state"));
        ours.push(measure(&stream, command));
        clear(&work.join("snapshots").join(SNAPSHOT), mnt);
    }
    let mut t = Table::new(&["path", "wall", "median", "user CPU-s", "system CPU-s"]);
    for (path, runs) in [
        ("`btrfs receive`", &plain),
        ("`buttervolume ssh-command` (`buttervolume receive`)", &ours),
    ] {
        let secs = |d: &Duration| format!("{:.2}", d.as_secs_f64());
        let range = |pick: fn(&(Duration, Duration, Duration)) -> Duration| {
            let mut v: Vec<Duration> = runs.iter().map(pick).collect();
            v.sort();
            format!("{}-{}", secs(&v[0]), secs(&v[v.len() - 1]))
        };
        let walls: Vec<String> = runs.iter().map(|r| secs(&r.0)).collect();
        let median = Samples(runs.iter().map(|r| r.0).collect()).p50() / 1e3;
        t.row(vec![
            path.into(),
            format!("{} s", walls.join(", ")),
            format!("{median:.2} s"),
            range(|r| r.1),
            range(|r| r.2),
        ]);
    }
    t
}
