//! Fixtures for the integration tests (`tests/it/`) and the benchmarks
//! (`bench/`): a real daemon on a real btrfs ([`Daemon`]), one private data
//! directory per daemon so tests run in parallel without sharing state;
//! network-namespace nodes ([`nodes::Nodes`]) and a three-member etcd on
//! them ([`etcd::Etcd`]); the private dockerd
//! ([`dockerd::Dockerd`]); metrics scrapes and a real Prometheus
//! ([`metrics`]); raw HTTP over unix sockets ([`http`]); the one wait
//! ([`wait_until`]).
//!
//! The btrfs filesystem comes from `scripts/test-btrfs.sh` (scripts/test.sh
//! makes one); its mountpoint is `BUTTERVOLUME_TEST_BTRFS` or
//! `/mnt/buttervolume-test`. A test that cannot get root or btrfs fails,
//! saying what is missing.
//!
//! Nothing here touches the host's Docker or a production buttervolume:
//! daemons get private paths for everything (socket, data, state, RUNPATH,
//! schedule) and a Docker socket that does not exist, unless a test gives
//! them the private test dockerd's.

pub mod daemon;
pub mod dockerd;
pub mod etcd;
pub mod http;
pub mod metrics;
pub mod nodes;
pub mod pairs;
pub mod swarm;
pub mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use daemon::{Daemon, DaemonBuilder};
pub use http::{
    http_answer, raw_request, raw_request_tolerant, read_http_request, send_raw, HttpRequest,
};
pub use wait::{wait_for, wait_until};

/// The repository's root (tests/nodes/nodes.sh, tests/data/, plugin/ live
/// under it).
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The `buttervolume` binary under test: `BUTTERVOLUME_BIN`, else the one
/// cargo built beside the running test or benchmark program
/// (`target/<profile>/buttervolume`; integration tests live in
/// `target/<profile>/deps/`).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("BUTTERVOLUME_BIN") {
            return path.to_string_lossy().into_owned();
        }
        let exe = std::env::current_exe().expect("the running program's path");
        let mut dir = exe
            .parent()
            .expect("a program is in a directory")
            .to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let bin = dir.join("buttervolume");
        assert!(
            bin.exists(),
            "{} missing: build it first (cargo build) or set BUTTERVOLUME_BIN",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

/// The btrfs mountpoint shared by all tests (each uses its own subdir).
pub fn test_btrfs() -> PathBuf {
    let mnt = PathBuf::from(
        std::env::var("BUTTERVOLUME_TEST_BTRFS").unwrap_or("/mnt/buttervolume-test".into()),
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (btrfs subvolume ioctls, docker)"
    );
    assert!(
        buttervolume::btrfs::is_btrfs(&mnt),
        "{} is not a btrfs mount: run scripts/test-btrfs.sh first (or set BUTTERVOLUME_TEST_BTRFS)",
        mnt.display()
    );
    mnt
}

/// The names in `dir`, sorted (none when it cannot be read).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Deletes every subvolume under `dir` (deepest first), then the dir.
pub fn cleanup_dir(dir: &Path) {
    fn walk(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir {
                continue;
            }
            walk(&path);
            if buttervolume::btrfs::is_subvolume(&path) {
                let _ = buttervolume::btrfs::set_read_only(&path, false);
                if let Err(e) = buttervolume::btrfs::delete_subvolume(&path) {
                    eprintln!("cleanup: cannot delete {}: {e}", path.display());
                }
            }
        }
    }
    walk(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// A suffix unique to this test process, for Docker driver, plugin, volume
/// and project names: two runs never share one.
pub fn run_tag() -> String {
    std::process::id().to_string()
}

/// Runs a program, asserting success; returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    succeeded(out, &format!("{program} {args:?}"))
}

/// Asserts that a finished command (`what`, for the message) succeeded;
/// returns its stdout.
pub fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The reference buttervolume 3.13 (`bin/buttervolume` of the venv
/// scripts/reference-venv.sh makes; BUTTERVOLUME_REFERENCE_VENV overrides
/// /opt/bv-ref).
pub fn reference_bin() -> PathBuf {
    python_bin("BUTTERVOLUME_REFERENCE_VENV", "/opt/bv-ref")
}

/// The buttervolume 3.4 client (BUTTERVOLUME_REFERENCE34_VENV overrides
/// /opt/bv-ref34).
pub fn reference34_bin() -> PathBuf {
    python_bin("BUTTERVOLUME_REFERENCE34_VENV", "/opt/bv-ref34")
}

fn python_bin(venv_var: &str, default: &str) -> PathBuf {
    let venv = std::env::var(venv_var).unwrap_or(default.into());
    let bin = PathBuf::from(venv).join("bin/buttervolume");
    assert!(
        bin.exists(),
        "Python buttervolume missing at {}: run scripts/reference-venv.sh",
        bin.display()
    );
    bin
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `command` with `input` on its stdin (written from a thread, so a
/// child that stops reading early cannot deadlock the test) and collects
/// its output.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the command");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("waiting for the command");
    writer.join().expect("the stdin writer does not panic");
    out
}
