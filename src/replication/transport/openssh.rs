//! OpenSSH's `ssh` client for bulk streams (full sends) and for rsync: the
//! one place its options are written. An argument vector, never a shell.
//!
//! The options make it use exactly what the libssh2 sessions use and
//! nothing of the machine's own ssh setup: no config file, the plugin's
//! keys only, the plugin's known_hosts only, a host key that is not there
//! (or changed) refuses the connection, no prompt, no agent, no X11.
//! A stalled stream is cut after `SSH_TIMEOUT` by our own wait on the pipe
//! into `ssh` ([`stream_with_openssh`]): a dead link, or a peer that stops
//! reading, fills it. Once the stream is out, the peer's command has
//! `SSH_TIMEOUT` to exit: a peer that stays (ssh's keepalives would keep
//! its session up for ever) is cut, `ssh` killed, and the send fails. Its
//! reply is read up to the limits the libssh2 sessions use (`MAX_REPLY` on
//! stdout, more cuts it; the first `MAX_STDERR` of stderr kept), so a
//! peer cannot grow this process by talking.
//!
//! A full send moves the send ioctl's pipe into `ssh`'s standard input with
//! `splice(2)` (the kernel moves page references, no copy here), counting
//! bytes for the progress report and the bandwidth limit on the way.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{
    check_host, split_user, Output, SshSettings, TransportError, CONNECT_TIMEOUT, MAX_REPLY,
    MAX_STDERR,
};

/// Ciphers offered, the hardware-accelerated AES-GCM first.
const CIPHERS: &str =
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr";

/// `ssh`'s exit status when it failed itself (connection, host key,
/// authentication, timeout), not the remote command.
const SSH_FAILED: i32 = 255;

/// How much one splice moves at most.
const CHUNK: usize = crate::replication::PIPE_SIZE;

/// How often the exit of an `ssh` whose outputs are closed is checked.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// `ssh` and its options to reach `target` (`[user@]host`), up to and
/// including the host: append the remote command.
pub fn ssh_argv(target: &str, settings: &SshSettings) -> Result<Vec<OsString>, TransportError> {
    check_host(target)?;
    let (user, host) = split_user(target);
    let mut argv = ssh_options(settings);
    argv.extend([
        "-l".into(),
        user.into(),
        host.trim_matches(['[', ']']).into(),
    ]);
    Ok(argv)
}

/// `ssh` and its options, without a destination (rsync's `-e`, which adds
/// the user and host itself).
pub fn ssh_options(settings: &SshSettings) -> Vec<OsString> {
    let alive = settings.stall.as_secs().div_ceil(3).max(1);
    let mut argv: Vec<OsString> = vec!["ssh".into(), "-F".into(), "/dev/null".into()];
    let options = [
        "BatchMode=yes".to_string(),
        "IdentitiesOnly=yes".into(),
        "StrictHostKeyChecking=yes".into(),
        format!("UserKnownHostsFile={}", settings.known_hosts().display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "UpdateHostKeys=no".into(),
        format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
        format!("ServerAliveInterval={alive}"),
        "ServerAliveCountMax=4".into(),
        format!("Ciphers={CIPHERS}"),
        "Compression=no".into(),
        "LogLevel=ERROR".into(),
    ];
    for option in options {
        argv.push("-o".into());
        argv.push(option.into());
    }
    for key in settings.keys() {
        argv.push("-i".into());
        argv.push(key.into());
    }
    argv.extend([
        "-T".into(),
        "-x".into(),
        "-a".into(),
        "-p".into(),
        settings.port.to_string().into(),
    ]);
    argv
}

/// Whether an `ssh` client is on the PATH (a few stats, asked once per
/// full send).
pub fn openssh_installed() -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join("ssh"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// What a bulk stream reads.
pub enum Input<'a> {
    /// A pipe (the send ioctl's): spliced, no copy.
    Pipe(&'a File),
    /// Anything else (a zstd encoder over the pipe): copied.
    Reader(&'a mut dyn Read),
}

/// Runs `command` on the peer through `ssh`, with `input` as its standard
/// input (then EOF); `progress` is called with the byte count as data goes
/// out; `limit`: at most that many bytes per second. Returns the remote
/// command's exit status, stdout and stderr; `ssh`'s own failures (its exit
/// status 255) are errors with its message, and so are a reply over
/// [`MAX_REPLY`] ([`TransportError::ReplyTooLarge`]) and a command still
/// running `SSH_TIMEOUT` after its input ended ([`TransportError::NoExit`]):
/// `ssh` is killed then.
pub fn stream_with_openssh(
    target: &str,
    settings: &SshSettings,
    command: &str,
    input: Input<'_>,
    limit: Option<u64>,
    mut progress: impl FnMut(u64),
) -> Result<Output, TransportError> {
    let argv = ssh_argv(target, settings)?;
    let (_, host) = split_user(target);
    let fail = |message: String| TransportError::Ssh {
        host: host.into(),
        message,
    };
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run ssh: {e}")))?;
    let stdin = child.stdin.take().expect("stdin was piped");
    let readers = collect_output(&mut child);
    let _ = fcntl(
        stdin.as_raw_fd(),
        FcntlArg::F_SETPIPE_SZ(crate::replication::PIPE_SIZE as i32),
    );
    let _ = fcntl(stdin.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut pump = Pump {
        out: stdin,
        stall: settings.stall,
        too_much: readers.too_much.clone(),
        limit,
        started: Instant::now(),
        sent: 0,
        last_report: Instant::now(),
    };
    let pumped = match input {
        Input::Pipe(pipe) => pump.splice_all(pipe, &mut progress),
        Input::Reader(reader) => pump.copy_all(reader, &mut progress),
    };
    progress(pump.sent);
    // EOF for the peer's command; `ssh` then exits with its status.
    drop(pump);
    // The peer must not take a stream cut short for a whole one.
    if matches!(pumped, Err(Pumped::Stalled | Pumped::Input(_))) {
        let _ = child.kill();
    }
    let ended = wait_for_exit(&mut child, &readers.heard, settings.stall)
        .map_err(|e| fail(format!("waiting for ssh: {e}")))?;
    let too_much = readers.too_much.load(Ordering::Relaxed);
    let (stdout, stderr) = readers.join();
    if too_much {
        return Err(TransportError::ReplyTooLarge { host: host.into() });
    }
    let status = match (pumped, ended) {
        (Err(Pumped::Stalled), _) => {
            return Err(TransportError::Stalled {
                host: host.into(),
                seconds: settings.stall.as_secs(),
            })
        }
        (Err(Pumped::Input(e)), _) => return Err(fail(format!("reading the local stream: {e}"))),
        (_, Ended::Stayed) => {
            return Err(TransportError::NoExit {
                host: host.into(),
                seconds: settings.stall.as_secs(),
            })
        }
        // A write that failed because ssh exited: its status and stderr
        // say why.
        (Ok(()) | Err(Pumped::Output), Ended::Exited(status)) => status,
    };
    if status.code() == Some(SSH_FAILED) {
        return Err(fail(stderr.trim().to_string()));
    }
    Ok(Output {
        status: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

/// How the wait for `ssh` to exit ended.
enum Ended {
    Exited(ExitStatus),
    /// It did not exit in time, or printed more than [`MAX_REPLY`]: killed.
    Stayed,
}

/// Waits up to `within` for `ssh` to exit; kills it (and reaps it) when it
/// does not, or as soon as its stdout goes over [`MAX_REPLY`]. Woken by
/// its outputs closing ([`Heard`]), which is how its exit shows first.
fn wait_for_exit(
    child: &mut Child,
    heard: &Receiver<Heard>,
    within: Duration,
) -> std::io::Result<Ended> {
    let deadline = Instant::now() + within;
    let mut listening = true;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::Exited(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let cut = if left.is_zero() {
            true
        } else if listening {
            match heard.recv_timeout(left) {
                Ok(Heard::TooMuch) => true,
                Ok(Heard::Closed) | Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => {
                    listening = false;
                    false
                }
            }
        } else {
            // Both outputs closed: ssh is on its way out.
            std::thread::sleep(left.min(EXIT_POLL));
            false
        };
        if cut {
            let _ = child.kill();
            child.wait()?;
            return Ok(Ended::Stayed);
        }
    }
}

/// Why a pump stopped early.
enum Pumped {
    /// The peer took nothing for the whole stall timeout.
    Stalled,
    Input(std::io::Error),
    /// Writing to ssh failed (it exited), or the peer's reply went over
    /// [`MAX_REPLY`] (ssh is about to be killed).
    Output,
}

/// Moves bytes into `ssh`'s standard input, non-blocking, so that a peer
/// that stops reading is noticed.
struct Pump {
    out: ChildStdin,
    stall: Duration,
    /// Set when the peer's reply went over [`MAX_REPLY`]: stop.
    too_much: Arc<AtomicBool>,
    limit: Option<u64>,
    started: Instant,
    sent: u64,
    last_report: Instant,
}

impl Pump {
    fn splice_all(&mut self, pipe: &File, progress: &mut dyn FnMut(u64)) -> Result<(), Pumped> {
        loop {
            self.wait_writable()?;
            match splice(
                pipe.as_fd(),
                None,
                self.out.as_fd(),
                None,
                CHUNK,
                SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE,
            ) {
                Ok(0) => return Ok(()),
                Ok(n) => self.advance(n, progress),
                // The pipe to ssh filled up again since the poll.
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(_) => return Err(Pumped::Output),
            }
        }
    }

    fn copy_all(
        &mut self,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), Pumped> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Pumped::Input(e)),
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                self.wait_writable()?;
                match self.out.write(rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(Pumped::Output),
                }
            }
            self.advance(n, progress);
        }
    }

    /// Waits until ssh's pipe takes bytes again; [`Pumped::Stalled`] after
    /// the stall timeout.
    fn wait_writable(&self) -> Result<(), Pumped> {
        let waited = Instant::now();
        loop {
            if self.too_much.load(Ordering::Relaxed) {
                return Err(Pumped::Output);
            }
            let left = self.stall.saturating_sub(waited.elapsed());
            if left.is_zero() {
                return Err(Pumped::Stalled);
            }
            let timeout =
                PollTimeout::try_from(left.min(Duration::from_secs(1))).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.out.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                // Writable, or an error (ssh gone) the write will report.
                Ok(_) => return Ok(()),
                Err(_) => return Err(Pumped::Output),
            }
        }
    }

    fn advance(&mut self, n: usize, progress: &mut dyn FnMut(u64)) {
        self.sent += n as u64;
        if let Some(rate) = self.limit.filter(|r| *r > 0) {
            // Sleep until the average rate is back under the limit.
            let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if self.last_report.elapsed() >= Duration::from_millis(500) {
            progress(self.sent);
            self.last_report = Instant::now();
        }
    }
}

/// What a reader of ssh's output tells [`wait_for_exit`].
enum Heard {
    /// Its output closed (ssh is exiting).
    Closed,
    /// More than [`MAX_REPLY`] on stdout: not read further.
    TooMuch,
}

/// Threads draining ssh's stdout and stderr, so it never blocks on them,
/// within the limits.
struct Readers {
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    heard: Receiver<Heard>,
    too_much: Arc<AtomicBool>,
}

fn collect_output(child: &mut Child) -> Readers {
    let (tell, heard) = mpsc::channel();
    let too_much = Arc::new(AtomicBool::new(false));
    let mut out = child.stdout.take().expect("stdout was piped");
    let (flag, told) = (too_much.clone(), tell.clone());
    let stdout = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut out).take(MAX_REPLY + 1).read_to_end(&mut bytes);
        if bytes.len() as u64 > MAX_REPLY {
            flag.store(true, Ordering::Relaxed);
            let _ = told.send(Heard::TooMuch);
            return Vec::new();
        }
        let _ = told.send(Heard::Closed);
        bytes
    });
    let mut err = child.stderr.take().expect("stderr was piped");
    let stderr = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut err).take(MAX_STDERR).read_to_end(&mut bytes);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        let _ = tell.send(Heard::Closed);
        bytes
    });
    Readers {
        stdout,
        stderr,
        heard,
        too_much,
    }
}

impl Readers {
    fn join(self) -> (Vec<u8>, String) {
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        (stdout, String::from_utf8_lossy(&stderr).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argv_uses_only_the_plugins_keys_and_known_hosts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id_ed25519"), "key").unwrap();
        let settings = SshSettings {
            port: 1122,
            dir: dir.path().into(),
            stall: Duration::from_secs(30),
        };
        let argv: Vec<String> = ssh_argv("backup@10.0.0.2", &settings)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = argv.join(" ");
        assert_eq!(argv[..3], ["ssh", "-F", "/dev/null"]);
        assert!(joined.contains("-o StrictHostKeyChecking=yes"), "{joined}");
        assert!(
            joined.contains(&format!(
                "-o UserKnownHostsFile={}/known_hosts",
                dir.path().display()
            )),
            "{joined}"
        );
        assert!(joined.contains("-o ServerAliveInterval=10 -o ServerAliveCountMax=4"));
        assert!(joined.contains(&format!("-i {}/id_ed25519", dir.path().display())));
        assert!(!joined.contains("id_rsa"), "absent keys are not offered");
        assert!(joined.ends_with("-p 1122 -l backup 10.0.0.2"), "{joined}");
        assert!(ssh_argv("-oProxyCommand=x", &settings).is_err());
    }
}
