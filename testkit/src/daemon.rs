//! A daemon of its own per test: private data dirs on the test btrfs,
//! its own socket, state, RUNPATH, schedule and SSH dir, and a Docker socket
//! that does not exist unless the test gives it the private dockerd's; its
//! HTTP API as JSON in and out.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::http::{parse_json, raw_request, raw_request_tolerant};
use crate::{bin, cleanup_dir, test_btrfs, wait_until};

/// Makes each daemon's root unique within this process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A daemon with its own data dirs and socket.
pub struct Daemon {
    pub root: PathBuf,
    pub socket: PathBuf,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
    /// A program (and its arguments) the daemon runs under, e.g. prlimit.
    wrapper: Vec<String>,
    /// The daemon's program: ours ([`bin`]) unless the builder said.
    program: String,
}

/// How to start a [`Daemon`]: `Daemon::builder(test)`, then `.env(k, v)`,
/// `.socket(path)`, `.wrapper(&[..])` as needed, then `.start()`.
#[must_use = "a builder does nothing until .start()"]
pub struct DaemonBuilder {
    test: String,
    socket: Option<PathBuf>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
    program: Option<String>,
}

impl DaemonBuilder {
    /// One more environment variable for the daemon (and its CLI), after
    /// (so overriding) the harness's private paths.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The control socket elsewhere than `<root>/bv.sock` (e.g. the private
    /// dockerd's legacy plugin dir).
    pub fn socket(mut self, socket: PathBuf) -> Self {
        self.socket = Some(socket);
        self
    }

    /// A program (and its arguments) the daemon runs under, which execs it:
    /// `prlimit --nofile=... --`.
    pub fn wrapper(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|w| w.to_string()).collect();
        self
    }

    /// Another daemon program than ours, given the same private paths:
    /// the reference buttervolume ([`crate::reference_bin`]) in the
    /// benchmarks. Its data dirs and an empty schedule are made first (the
    /// reference makes none).
    pub fn program(mut self, program: &str) -> Self {
        self.program = Some(program.to_string());
        self
    }

    /// Makes the data dirs under the shared test btrfs and starts the
    /// daemon; returns once it serves.
    pub fn start(self) -> Daemon {
        let base = test_btrfs();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = base.join(format!("{}-{}-{n}", self.test, std::process::id()));
        if root.exists() {
            cleanup_dir(&root);
        }
        std::fs::create_dir_all(&root).unwrap();
        if self.program.is_some() {
            for dir in ["volumes", "snapshots", "received", "state", "config"] {
                std::fs::create_dir_all(root.join(dir)).unwrap();
            }
            std::fs::write(root.join("config/schedule.csv"), "").unwrap();
        }
        let socket = self.socket.unwrap_or_else(|| root.join("bv.sock"));
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
        env.extend(self.env);
        let mut daemon = Daemon {
            log: root.join("daemon.log"),
            root,
            socket,
            env,
            child: None,
            wrapper: self.wrapper,
            program: self.program.unwrap_or_else(|| bin().to_string()),
        };
        daemon.spawn();
        daemon
    }
}

impl Daemon {
    /// How to start a daemon whose data dirs are named after `test`.
    pub fn builder(test: &str) -> DaemonBuilder {
        DaemonBuilder {
            test: test.to_string(),
            socket: None,
            env: Vec::new(),
            wrapper: Vec::new(),
            program: None,
        }
    }

    /// `Daemon::builder(test).start()`: private paths, socket
    /// `<root>/bv.sock`.
    pub fn start(test: &str) -> Daemon {
        Self::builder(test).start()
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
                c.args(args).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
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
            format!(
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

    /// POSTs a typed request (an `api` type), asserts success and reads
    /// the typed reply.
    pub fn call<R: DeserializeOwned>(&self, path: &str, request: &impl Serialize) -> R {
        let reply = self.ok(path, serde_json::to_value(request).unwrap());
        serde_json::from_value(reply.clone())
            .unwrap_or_else(|e| panic!("{path}: unexpected reply ({e}): {reply}"))
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
        Command::new(bin())
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
