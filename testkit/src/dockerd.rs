//! The tests' private Docker daemon (`tests/dockerd/dockerd.sh`), never the
//! host's: `scripts/test.sh` starts one per run and exports its state dir as
//! `BUTTERVOLUME_TEST_DOCKERD` (and `DOCKER_HOST`). It runs in its own mount
//! and network namespaces: its `/run/docker/plugins` is `<dir>/run/docker/plugins`
//! here, its `/var/lib/buttervolume` is a directory of the run's test btrfs.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::{run, succeeded};

pub const DOCKERD_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/dockerd/dockerd.sh");

/// A handle on the run's private dockerd.
pub struct Dockerd {
    pub dir: PathBuf,
}

impl Dockerd {
    /// The run's private dockerd; fails (never skips) when there is none.
    pub fn get() -> Dockerd {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the Docker tests need root (namespaces, btrfs, dockerd)"
        );
        let dir = std::env::var_os("BUTTERVOLUME_TEST_DOCKERD").unwrap_or_else(|| {
            panic!(
                "no private test dockerd: run the Docker tests through scripts/test.sh \
                 (e.g. scripts/test.sh --test docker_e2e), which starts one \
                 (tests/dockerd/dockerd.sh) and sets BUTTERVOLUME_TEST_DOCKERD; \
                 the tests never use the host's dockerd"
            )
        });
        let dockerd = Dockerd { dir: dir.into() };
        let out = dockerd.docker_output(&["image", "inspect", "bv-busybox:latest"]);
        assert!(
            out.status.success(),
            "the private dockerd at {} does not answer or lacks bv-busybox: {}",
            dockerd.socket().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dockerd
    }

    /// Its API socket, seen from here.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/docker.sock")
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Its legacy plugin discovery dir (`/run/docker/plugins` inside).
    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.join("run/docker/plugins")
    }

    /// The daemon's pid (changes at each restart).
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("run/docker.pid"))
            .unwrap_or_else(|e| panic!("private dockerd pid file in {}: {e}", self.dir.display()));
        text.trim().parse().expect("a pid")
    }

    /// A path of the daemon's mount namespace (e.g. its
    /// /var/lib/buttervolume), seen from here.
    pub fn path(&self, inside: &str) -> PathBuf {
        let inside = inside.trim_start_matches('/');
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(inside)
    }

    /// `docker` against this daemon (DOCKER_HOST set explicitly).
    pub fn docker_output(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.docker_host())
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI is required (apt-get install docker.io)")
    }

    /// `docker`, asserting success; trimmed stdout. A failure shows the
    /// tail of the dockerd's log.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        let what = match out.status.success() {
            true => String::new(),
            // 125..=127: docker's own failures; above: the container's
            // process died of a signal (128 + n), which the kernel log may
            // explain (OOM killer, a btrfs error).
            false if out.status.code().is_some_and(|c| c > 127) => format!(
                "docker {args:?} (dockerd log tail:\n{}\n) (kernel log tail:\n{}\n)",
                self.log_tail(30),
                kernel_log_tail(20)
            ),
            false => format!(
                "docker {args:?} (dockerd log tail:\n{}\n)",
                self.log_tail(30)
            ),
        };
        succeeded(out, &what).trim().to_string()
    }

    /// `docker` that must fail; its stderr.
    pub fn docker_err(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        assert!(!out.status.success(), "docker {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `docker run --rm -v <volume>:/data bv-busybox sh -c <script>`;
    /// trimmed stdout.
    pub fn in_container(&self, volume: &str, script: &str) -> String {
        let mount = format!("{volume}:/data");
        self.docker(&[
            "run",
            "--rm",
            "-v",
            &mount,
            "bv-busybox",
            "sh",
            "-c",
            script,
        ])
    }

    /// Runs a command inside the daemon's mount and network namespaces, where
    /// this Docker is the machine's (/var/run/docker.sock, /var/lib/buttervolume,
    /// /run/docker/plugins).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new(DOCKERD_SH)
            .arg("exec")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running dockerd.sh exec")
    }

    /// [`Dockerd::exec`], asserting success; stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        succeeded(
            self.exec(args),
            &format!("in the dockerd's namespaces: {args:?}"),
        )
    }

    /// Stops and starts the daemon again (same data-root and options); the
    /// host's dockerd is not involved.
    ///
    /// Legacy plugin sockets nobody listens on any more (the tombstones of a
    /// finished test process) are removed first: a fresh dockerd would find
    /// them in its plugin dir and retry each for ~15 s.
    pub fn restart(&self) {
        if let Ok(entries) = std::fs::read_dir(self.plugins_dir()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "sock")
                    && std::os::unix::net::UnixStream::connect(&path).is_err()
                {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let dir = self.dir.display().to_string();
        run(DOCKERD_SH, &["restart", &dir]);
    }

    /// Whether something listens on 127.0.0.1:`port` in the daemon's
    /// network namespace (where its managed plugins run).
    pub fn port_open(&self, port: u16) -> bool {
        let netns = PathBuf::from(format!("/proc/{}/ns/net", self.pid()));
        std::thread::spawn(move || {
            // setns only changes this thread's network namespace.
            let Ok(file) = std::fs::File::open(&netns) else {
                return false;
            };
            if nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return false;
            }
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
                .is_ok()
        })
        .join()
        .unwrap_or(false)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("dockerd.log"), lines)
    }
}

/// The last `lines` lines of the kernel log (`dmesg`), or why not.
fn kernel_log_tail(lines: usize) -> String {
    match Command::new("dmesg").output() {
        Ok(out) => last_lines(&String::from_utf8_lossy(&out.stdout), lines),
        Err(e) => format!("dmesg: {e}"),
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

fn last_lines(text: &str, lines: usize) -> String {
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Keeps a stopped legacy plugin's socket answering until this test process
/// exits. Docker never forgets a legacy plugin it used: with its socket
/// dead, every lookup of an unknown volume name and every unfiltered
/// `docker volume ls` retries it for ~15 s, which would slow down (and
/// could time out) the other tests sharing the private dockerd. The
/// stand-in says it is a volume driver with no volumes.
pub fn tombstone(socket: &Path) {
    let _ = std::fs::remove_file(socket);
    let Ok(listener) = std::os::unix::net::UnixListener::bind(socket) else {
        return;
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || tombstone_answer(stream));
        }
    });
}

fn tombstone_answer(mut stream: std::os::unix::net::UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(clone);
    while let Some(request) = crate::read_http_request(&mut reader) {
        let reply = match request.path.as_str() {
            "/Plugin.Activate" => r#"{"Implements":["VolumeDriver"]}"#,
            "/VolumeDriver.List" => r#"{"Volumes":[],"Err":""}"#,
            "/VolumeDriver.Capabilities" => r#"{"Capabilities":{"Scope":"local"}}"#,
            _ => r#"{"Err":"this test's plugin has stopped"}"#,
        };
        let answer = crate::http_answer("application/vnd.docker.plugins.v1+json", reply);
        if std::io::Write::write_all(&mut stream, &answer).is_err() {
            return;
        }
    }
}
