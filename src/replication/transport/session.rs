//! One libssh2 session to a peer (the `ssh2` crate): no `ssh` process, no
//! shell. Each command is a channel of the session; a session kept by the
//! [`super::pool`] that the peer dropped meanwhile is replaced once,
//! transparently, when its first channel cannot open.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ssh2::{Channel, CheckResult, KnownHostFileKind, Session};

use super::{
    check_host, split_user, SshSettings, TransportError, CONNECT_TIMEOUT, MAX_REPLY, MAX_STDERR,
};

/// Ciphers offered to the peer, fastest through libssh2 first. libssh2
/// (1.11, `_libssh2_transport_send`) encrypts AES packets one 16-byte block
/// per `EVP_Cipher` call, which made aes128-gcm the bottleneck of a bulk
/// send (29 % of the run's CPU); chacha20-poly1305 is the one cipher it
/// encrypts a whole packet at a time, about 20 % faster end to end here.
/// The AES ciphers stay as fallbacks for peers that disable chacha20.
/// (Full sends do not go through libssh2 at all: [`super::openssh`].)
const CIPHER_PREFERENCE: &str = "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,\
aes128-ctr,aes256-gcm@openssh.com,aes256-ctr";

/// Result of a command run on the peer.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// The connection proper; swapped whole when a stale one is replaced.
struct Conn {
    session: Session,
    /// A handle on the session's socket, to cut it without waiting: a
    /// broken session's polite disconnect would stall on a dead link.
    tcp: TcpStream,
}

/// A channel read by a pull's sink, noting a read that timed out.
struct Watched<'a> {
    channel: &'a mut Channel,
    stalled: &'a Cell<bool>,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.channel.read(buf);
        if matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::TimedOut) {
            self.stalled.set(true);
        }
        read
    }
}

/// One authenticated SSH session to a peer.
pub struct Peer {
    conn: RefCell<Conn>,
    /// As given: `[user@]host`.
    target: String,
    /// The host name or address alone.
    host: String,
    settings: SshSettings,
    /// Taken from the pool: the peer may have dropped it since.
    reused: Cell<bool>,
    /// An error happened on it: do not give it back to the pool.
    broken: Cell<bool>,
    /// It stalled: the link is dead, cut the socket instead of saying
    /// goodbye (which would wait as long again). A session whose command
    /// failed otherwise closes politely: the peer's command may still be
    /// cleaning up and logging, and an abrupt cut could kill it.
    cut: Cell<bool>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let conn = self.conn.get_mut();
        if self.cut.get() {
            let _ = conn.tcp.shutdown(Shutdown::Both);
        }
        // libssh2 closes the session politely (channel closes, disconnect),
        // each step waiting up to the session's timeout: on a link that
        // died meanwhile that was SSH_TIMEOUT several times over, past
        // Docker's timeout for an Unmount. A live peer answers in
        // milliseconds.
        conn.session.set_timeout(CLOSE_TIMEOUT_MS);
    }
}

/// How long closing a session may wait for the peer at each step.
const CLOSE_TIMEOUT_MS: u32 = 1000;

/// How long a kept session may take to open a channel before it is
/// replaced by a new connection.
const REUSED_OPEN_TIMEOUT_MS: u32 = 3000;

/// `SSH_TIMEOUT` as libssh2's blocking timeout.
fn stall_ms(settings: &SshSettings) -> u32 {
    settings.stall.as_millis().min(u32::MAX as u128) as u32
}

impl Peer {
    /// Connects, verifies the host key against `<ssh dir>/known_hosts` and
    /// authenticates with the first key of the ssh dir the peer accepts.
    /// Prefer [`super::open`], which reuses a session kept from earlier.
    pub fn connect(target: &str, settings: &SshSettings) -> Result<Peer, TransportError> {
        check_host(target)?;
        let (user, name) = split_user(target);
        let port = settings.port;
        let connect_err = |message: String| TransportError::Connect {
            host: name.into(),
            port,
            message,
        };
        let addr = (name.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| connect_err(e.to_string()))?
            .next()
            .ok_or_else(|| connect_err("no address".into()))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let handle = tcp.try_clone().map_err(|e| connect_err(e.to_string()))?;
        let ssh_err = |e: ssh2::Error| TransportError::Ssh {
            host: name.into(),
            message: e.to_string(),
        };
        let mut session = Session::new().map_err(ssh_err)?;
        session.set_tcp_stream(tcp);
        session.set_timeout(stall_ms(settings));
        for direction in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
            let _ = session.method_pref(direction, CIPHER_PREFERENCE);
        }
        session.handshake().map_err(ssh_err)?;
        // No libssh2 keepalive: in blocking mode its wait for the socket
        // ends at the next keepalive due with LIBSSH2_ERROR_TIMEOUT, so a
        // peer quiet for 10 s (a cut link that comes back, a receiver busy
        // on a full disk) failed a transfer long before SSH_TIMEOUT. A kept
        // session the peer dropped meanwhile is replaced at its next use.

        let known_hosts = settings.known_hosts();
        let (key, _) = session.host_key().ok_or_else(|| TransportError::Ssh {
            host: name.into(),
            message: "no host key".into(),
        })?;
        let mut known = session.known_hosts().map_err(ssh_err)?;
        if known_hosts.exists() {
            known
                .read_file(&known_hosts, KnownHostFileKind::OpenSSH)
                .map_err(ssh_err)?;
        }
        match known.check_port(name, port, key) {
            CheckResult::Match => {}
            CheckResult::Mismatch => {
                return Err(TransportError::HostKeyMismatch {
                    host: name.into(),
                    port,
                    known_hosts,
                })
            }
            CheckResult::NotFound | CheckResult::Failure => {
                return Err(TransportError::UnknownHostKey {
                    host: name.into(),
                    port,
                    known_hosts,
                })
            }
        }

        for private in settings.keys() {
            if session
                .userauth_pubkey_file(user, None, &private, None)
                .is_ok()
                && session.authenticated()
            {
                super::pool::count_opened(name);
                return Ok(Peer {
                    conn: RefCell::new(Conn {
                        session,
                        tcp: handle,
                    }),
                    target: target.into(),
                    host: name.into(),
                    settings: settings.clone(),
                    reused: Cell::new(false),
                    broken: Cell::new(false),
                    cut: Cell::new(false),
                });
            }
        }
        Err(TransportError::Auth(settings.dir.clone()))
    }

    /// The host this session is connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `[user@]host`, as connected to.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    pub(super) fn is_broken(&self) -> bool {
        self.broken.get()
    }

    pub(super) fn set_reused(&self) {
        self.reused.set(true);
    }

    fn stall_ms(&self) -> u32 {
        stall_ms(&self.settings)
    }

    /// Cuts the socket now: the channel and session still to be dropped
    /// then fail at once instead of each waiting for the dead link as long
    /// again (their close messages).
    fn cut_now(&self) {
        self.broken.set(true);
        self.cut.set(true);
        let _ = self.conn.borrow().tcp.shutdown(Shutdown::Both);
    }

    /// Marks the session unusable (it goes back to no pool) and wraps the
    /// error; a stall becomes [`TransportError::Stalled`].
    fn fail(&self, context: &str, e: impl Into<std::io::Error>) -> TransportError {
        self.give_up();
        let e: std::io::Error = e.into();
        if e.kind() == std::io::ErrorKind::TimedOut {
            self.cut_now();
            return TransportError::Stalled {
                host: self.host.clone(),
                seconds: self.settings.stall.as_secs(),
            };
        }
        TransportError::Ssh {
            host: self.host.clone(),
            message: if context.is_empty() {
                e.to_string()
            } else {
                format!("{context}: {e}")
            },
        }
    }

    /// Marks the session unusable: nothing more is done on it but closing,
    /// quickly (see Drop).
    fn give_up(&self) {
        self.broken.set(true);
        self.conn.borrow().session.set_timeout(CLOSE_TIMEOUT_MS);
    }

    /// A new channel with `command` started on it. A session from the pool
    /// that cannot open a channel (the peer closed it while it was kept) is
    /// replaced by a new connection, once: nothing was sent on it yet.
    fn exec(&self, command: &str) -> Result<Channel, TransportError> {
        let opened = {
            let session = &self.conn.borrow().session;
            if self.reused.get() {
                // A live peer opens a channel in milliseconds: a kept session
                // that does not answer soon (a dead link) is replaced, not
                // waited on for the whole SSH_TIMEOUT.
                session.set_timeout(REUSED_OPEN_TIMEOUT_MS.min(self.stall_ms()));
            }
            let opened = session.channel_session();
            session.set_timeout(self.stall_ms());
            opened
        };
        let mut channel = match opened {
            Ok(channel) => channel,
            Err(e) if self.reused.get() => {
                tracing::info!(host = %self.host, error = %e, "a kept SSH session went stale: connecting anew");
                let fresh = Peer::connect(&self.target, &self.settings)?;
                std::mem::swap(&mut *self.conn.borrow_mut(), &mut *fresh.conn.borrow_mut());
                // `fresh` now holds the stale connection: cut it.
                fresh.cut_now();
                self.reused.set(false);
                let session = &self.conn.borrow().session;
                session.channel_session().map_err(|e| self.fail("", e))?
            }
            Err(e) => return Err(self.fail("", e)),
        };
        channel.exec(command).map_err(|e| self.fail("", e))?;
        Ok(channel)
    }

    /// Runs `command` on the peer and hands its standard output, as a
    /// stream, to `sink`; then collects its exit status and stderr (stdout
    /// left unread by `sink` is discarded). For the pull: the peer sends a
    /// snapshot, `sink` receives it.
    pub fn pull<T>(
        &self,
        command: &str,
        sink: impl FnOnce(&mut dyn Read) -> T,
    ) -> Result<(T, Output), TransportError> {
        let mut channel = self.exec(command)?;
        channel.send_eof().map_err(|e| self.fail("", e))?;
        let stalled = Cell::new(false);
        let result = sink(&mut Watched {
            channel: &mut channel,
            stalled: &stalled,
        });
        if stalled.get() {
            // A dead link: closing politely would wait as long again.
            self.cut_now();
            return Err(TransportError::Stalled {
                host: self.host.clone(),
                seconds: self.settings.stall.as_secs(),
            });
        }
        // What the sink left unread is not wanted: stop the peer's sender.
        let _ = channel.close();
        let mut stderr = String::new();
        let _ = channel
            .stderr()
            .take(MAX_STDERR)
            .read_to_string(&mut stderr);
        // A channel cut short has no exit status: -1, and the sink's own
        // result (say, a refused stream) still says what happened. Such a
        // session is not reused.
        let status = channel
            .wait_close()
            .and_then(|()| channel.exit_status())
            .unwrap_or_else(|_| {
                self.broken.set(true);
                -1
            });
        Ok((
            result,
            Output {
                status,
                stdout: Vec::new(),
                stderr,
            },
        ))
    }

    /// Runs `command` on the peer and collects its output.
    pub fn run(&self, command: &str) -> Result<Output, TransportError> {
        self.stream(command, &mut std::io::empty(), None, |_| {})
    }

    /// Runs `command` on the peer with `input` streamed to its stdin (then
    /// EOF); `progress` is called with the byte count as data goes out.
    /// `limit`: at most that many bytes per second on the wire.
    pub fn stream(
        &self,
        command: &str,
        input: &mut dyn Read,
        limit: Option<u64>,
        mut progress: impl FnMut(u64),
    ) -> Result<Output, TransportError> {
        let started = Instant::now();
        let mut channel = self.exec(command)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent: u64 = 0;
        let mut last_report = Instant::now();
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken.set(true);
                    return Err(TransportError::Ssh {
                        host: self.host.clone(),
                        message: format!("reading the local stream: {e}"),
                    });
                }
            };
            channel
                .write_all(&buf[..n])
                .map_err(|e| self.fail("sending", e))?;
            sent += n as u64;
            if let Some(rate) = limit.filter(|r| *r > 0) {
                // Sleep until the average rate is back under the limit.
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            if last_report.elapsed() >= Duration::from_millis(500) {
                progress(sent);
                last_report = Instant::now();
            }
        }
        progress(sent);
        channel.send_eof().map_err(|e| self.fail("", e))?;
        // The peer's command has SSH_TIMEOUT from here to answer and exit:
        // one that drips bytes, or never closes, cannot hold the send (and
        // the volume) for ever.
        let deadline = Instant::now() + self.settings.stall;
        let reply = self.reply(&mut channel, deadline);
        if reply.is_ok() {
            // Kept for the next command (a failed session is not).
            self.conn.borrow().session.set_timeout(self.stall_ms());
        }
        reply
    }

    /// Reads the reply of a command whose input is closed, its exit status
    /// last, all before `deadline`.
    fn reply(&self, channel: &mut Channel, deadline: Instant) -> Result<Output, TransportError> {
        let mut stdout = Vec::new();
        let mut until = Until {
            peer: self,
            channel,
            deadline,
            expired: false,
        };
        let read = (&mut until).take(MAX_REPLY + 1).read_to_end(&mut stdout);
        let expired = until.expired;
        match read {
            Err(_) if expired => return Err(self.no_exit()),
            Err(e) => return Err(self.fail("", e)),
            Ok(_) => {}
        }
        if stdout.len() as u64 > MAX_REPLY {
            // A hostile or broken peer: not read further, not reused.
            self.give_up();
            return Err(TransportError::ReplyTooLarge {
                host: self.host.clone(),
            });
        }
        let mut stderr = String::new();
        self.wait_at_most(deadline);
        let _ = channel
            .stderr()
            .take(MAX_STDERR)
            .read_to_string(&mut stderr);
        self.wait_at_most(deadline);
        channel.wait_close().map_err(|e| {
            let e = std::io::Error::from(e);
            match e.kind() {
                std::io::ErrorKind::TimedOut => self.no_exit(),
                _ => self.fail("", e),
            }
        })?;
        let status = channel.exit_status().map_err(|e| self.fail("", e))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Lets the next blocking call wait only until `deadline`.
    fn wait_at_most(&self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        // 0 would be no timeout at all.
        let ms = left.as_millis().clamp(1, u32::MAX as u128) as u32;
        self.conn.borrow().session.set_timeout(ms);
    }

    /// The peer's command outstayed its deadline: cut.
    fn no_exit(&self) -> TransportError {
        self.cut_now();
        TransportError::NoExit {
            host: self.host.clone(),
            seconds: self.settings.stall.as_secs(),
        }
    }
}

/// A channel's reply read against a deadline: each read waits only what
/// is left of it, so a peer that drips bytes cannot keep it waiting.
struct Until<'a> {
    peer: &'a Peer,
    channel: &'a mut Channel,
    deadline: Instant,
    expired: bool,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.peer.wait_at_most(self.deadline);
        let read = self.channel.read(buf);
        if matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::TimedOut) {
            self.expired = true;
        }
        read
    }
}
