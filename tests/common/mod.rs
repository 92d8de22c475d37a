//! Test harness: a real daemon on a real btrfs, one private data directory
//! per test so tests can run in parallel without sharing state.
//!
//! The btrfs filesystem comes from `scripts/test-btrfs.sh` (CI runs it); its
//! mountpoint is `BUTTERVOLUME_TEST_BTRFS` or `/mnt/buttervolume-test`. A
//! test that cannot get root or btrfs fails, saying what is missing.
//!
//! Nothing here touches the host's Docker or a production buttervolume:
//! daemons get private paths for everything (socket, data, state, RUNPATH,
//! schedule) and a Docker socket that does not exist, unless a test gives
//! them the private test dockerd's ([`dockerd::Dockerd`]).
#![allow(dead_code)]

pub mod dockerd;
pub mod metrics;
pub mod nodes;

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const BIN: &str = env!("CARGO_BIN_EXE_buttervolume");

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

/// A daemon with its own data dirs and socket.
pub struct Daemon {
    pub root: PathBuf,
    pub socket: PathBuf,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
    /// A program (and its arguments) the daemon runs under, e.g. prlimit.
    wrapper: Vec<String>,
}

impl Daemon {
    /// Data dirs under the shared test btrfs; the socket defaults to
    /// `<root>/bv.sock`.
    pub fn start(test: &str) -> Daemon {
        Self::start_with(test, None, &[])
    }

    /// `socket`: put the socket elsewhere (Docker's legacy plugin dir).
    /// `extra`: more environment variables.
    pub fn start_with(test: &str, socket: Option<PathBuf>, extra: &[(&str, &str)]) -> Daemon {
        Self::start_wrapped(test, socket, extra, &[])
    }

    /// [`Daemon::start_with`], the daemon run as `<wrapper...> buttervolume
    /// run` (a wrapper that execs it, like `prlimit --nofile=... --`).
    pub fn start_wrapped(
        test: &str,
        socket: Option<PathBuf>,
        extra: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        let base = test_btrfs();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = base.join(format!("{test}-{}-{n}", std::process::id()));
        if root.exists() {
            cleanup_dir(&root);
        }
        std::fs::create_dir_all(&root).unwrap();
        let socket = socket.unwrap_or_else(|| root.join("bv.sock"));
        let d = |sub: &str| format!("{}/{sub}/", root.display());
        let mut env = vec![
            ("BUTTERVOLUME_VOLUMES_PATH".to_string(), d("volumes")),
            ("BUTTERVOLUME_SNAPSHOTS_PATH".to_string(), d("snapshots")),
            ("BUTTERVOLUME_TEST_REMOTE_PATH".to_string(), d("received")),
            ("BUTTERVOLUME_STATE_PATH".to_string(), d("state")),
            (
                "BUTTERVOLUME_SCHEDULE".to_string(),
                format!("{}/config/schedule.csv", root.display()),
            ),
            (
                "BUTTERVOLUME_SOCKET".to_string(),
                socket.display().to_string(),
            ),
            // Never the host's Docker nor its plugin dir.
            (
                "BUTTERVOLUME_DOCKER_SOCKET".to_string(),
                format!("{}/no-docker.sock", root.display()),
            ),
            (
                "BUTTERVOLUME_RUNPATH".to_string(),
                format!("{}/run", root.display()),
            ),
            // Never the host's SSH keys either.
            (
                "BUTTERVOLUME_SSH_DIR".to_string(),
                format!("{}/ssh", root.display()),
            ),
            ("RUST_LOG".to_string(), "debug".to_string()),
        ];
        for (k, v) in extra {
            env.push((k.to_string(), v.to_string()));
        }
        let mut daemon = Daemon {
            log: root.join("daemon.log"),
            root,
            socket,
            env,
            child: None,
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
        };
        daemon.spawn();
        daemon
    }

    /// Starts (or restarts) the daemon process and waits until it serves
    /// (its socket is bound before its data directories are ready: an
    /// answer means they are).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .arg("run")
            .envs(self.env.iter().cloned())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning the daemon");
        self.child = Some(child);
        let socket = self.socket.clone();
        wait_until(
            &format!(
                "the daemon to open {} (log: {})",
                socket.display(),
                self.log.display()
            ),
            10,
            || UnixStream::connect(&socket).is_ok(),
        );
        let (status, body) = raw_request_tolerant(&socket, "/Plugin.Activate", b"");
        assert_eq!(status, 200, "the daemon does not serve: {body:?}");
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.terminate();
        self.wait()
    }

    /// Sends SIGTERM without waiting for the daemon to exit.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Waits for the daemon to exit; its exit status (`None`: not running).
    pub fn wait(&mut self) -> Option<std::process::ExitStatus> {
        Some(self.child.take()?.wait().unwrap())
    }

    /// Whether the daemon process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The value the daemon was given for environment variable `key`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// POSTs a JSON body; returns (HTTP status, JSON reply).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = raw_request(&self.socket, "POST", path, body.to_string().as_bytes());
        (status, parse_json(&text))
    }

    /// POSTs and asserts success (`Err` empty), returning the reply.
    pub fn ok(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.post(path, &body);
        assert_eq!(status, 200, "{path} {body}: {reply}");
        assert_eq!(reply["Err"], "", "{path} {body}: {reply}");
        reply
    }

    /// POSTs and asserts failure, returning the `Err` text.
    pub fn err(&self, path: &str, body: Value) -> String {
        let (_, reply) = self.post(path, &body);
        let err = reply["Err"].as_str().unwrap_or_default().to_string();
        assert!(!err.is_empty(), "{path} {body} should fail: {reply}");
        err
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = raw_request(&self.socket, "GET", path, b"");
        (status, parse_json(&text))
    }

    /// Runs our CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("running the CLI")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        cleanup_dir(&self.root);
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text:?}"))
}

fn request_bytes(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes raw bytes and reads the whole answer: (status, body), or `None`
/// when the connection failed or closed without an answer.
fn exchange(socket: &Path, bytes: &[u8]) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    // The daemon may answer (413) and close before reading everything.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// Sends one HTTP/1.1 request with `Connection: close` and returns status
/// and body. Raw on purpose, so tests can also send malformed requests.
pub fn raw_request(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    send_raw(socket, &request_bytes(method, path, body))
}

/// Like [`raw_request`] (POST), but a connection closed without an answer
/// (the daemon was killed) gives status 0 and an empty body.
pub fn raw_request_tolerant(socket: &Path, path: &str, body: &[u8]) -> (u16, String) {
    exchange(socket, &request_bytes("POST", path, body)).unwrap_or((0, String::new()))
}

/// Writes raw bytes, reads the whole answer, parses status and body.
pub fn send_raw(socket: &Path, bytes: &[u8]) -> (u16, String) {
    exchange(socket, bytes).unwrap_or_else(|| panic!("no HTTP answer from {}", socket.display()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
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

/// Polls `check` until it holds; panics after `secs` seconds, naming
/// `what`. The one wait of the tests: polls every 5 ms at first (a state
/// that shows up quickly is seen quickly), backing off to every 100 ms.
pub fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut pause = Duration::from_millis(5);
    loop {
        if check() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
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

/// One HTTP/1.1 request, as a stand-in server (a fake Docker, a stopped
/// plugin's socket) reads it.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Reads one request: request line, headers, a `Content-Length` body.
/// `None` at the end of the connection or on a request cut short.
pub fn read_http_request(reader: &mut impl BufRead) -> Option<HttpRequest> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(HttpRequest { method, path, body })
}

/// A `200 OK` answer carrying `body`.
pub fn http_answer(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
