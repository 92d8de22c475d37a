//! SSH to the peer node, with libssh2 (the `ssh2` crate): no `ssh` process,
//! no shell.
//!
//! The peer's sshd runs `buttervolume ssh-command` as a forced command, so
//! each "command" we send is a request that the peer validates (see
//! `forced_command`). Keys and known_hosts come from the plugin's ssh
//! directory (`/root/.ssh`, which the managed plugin binds to
//! `/var/lib/buttervolume/ssh`). An unknown or changed host key is an error,
//! never accepted silently.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ssh2::{CheckResult, KnownHostFileKind, Session};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid host {0:?}: expected a hostname or IP address, optionally user@host")]
    Host(String),
    #[error("cannot connect to {host}:{port}: {message}")]
    Connect {
        host: String,
        port: u16,
        message: String,
    },
    #[error("host key of [{host}]:{port} is not in {known_hosts}: pair the nodes first (scripts/pair-nodes.sh)")]
    UnknownHostKey {
        host: String,
        port: u16,
        known_hosts: PathBuf,
    },
    #[error("HOST KEY MISMATCH for [{host}]:{port}: refusing to connect (check {known_hosts})")]
    HostKeyMismatch {
        host: String,
        port: u16,
        known_hosts: PathBuf,
    },
    #[error("no usable key in {0} was accepted by the peer")]
    Auth(PathBuf),
    #[error("ssh to {host}: {message}")]
    Ssh { host: String, message: String },
}

/// How long a single blocking SSH operation may stall (a cut link shows up
/// as a stalled write).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Ciphers offered to the peer, fastest through libssh2 first. libssh2
/// (1.11, `_libssh2_transport_send`) encrypts AES packets one 16-byte block
/// per `EVP_Cipher` call, which made aes128-gcm the bottleneck of a bulk
/// send (29 % of the run's CPU); chacha20-poly1305 is the one cipher it
/// encrypts a whole packet at a time, about 20 % faster end to end here.
/// The AES ciphers stay as fallbacks for peers that disable chacha20.
const CIPHER_PREFERENCE: &str = "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,\
aes128-ctr,aes256-gcm@openssh.com,aes256-ctr";

/// The private keys tried, in this order, in the plugin's ssh directory
/// (also by `sync`'s rsync).
pub const KEY_FILES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// Result of a command run on the peer.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// One authenticated SSH session to a peer.
pub struct Peer {
    session: Session,
    host: String,
}

/// Checks a host argument ([`crate::names::check_host`], the one rule).
pub fn check_host(host: &str) -> Result<(), TransportError> {
    crate::names::check_host(host).map_err(|_| TransportError::Host(host.into()))
}

fn split_user(host: &str) -> (Option<&str>, &str) {
    match host.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, host),
    }
}

impl Peer {
    /// Connects, verifies the host key against `<ssh_dir>/known_hosts` and
    /// authenticates with the first key of `<ssh_dir>` the peer accepts.
    pub fn connect(host: &str, port: u16, ssh_dir: &Path) -> Result<Peer, TransportError> {
        check_host(host)?;
        let (user, name) = split_user(host);
        let user = user.unwrap_or("root");
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
        let ssh_err = |e: ssh2::Error| TransportError::Ssh {
            host: name.into(),
            message: e.to_string(),
        };
        let mut session = Session::new().map_err(ssh_err)?;
        session.set_tcp_stream(tcp);
        session.set_timeout(IO_TIMEOUT.as_millis() as u32);
        for direction in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
            let _ = session.method_pref(direction, CIPHER_PREFERENCE);
        }
        session.handshake().map_err(ssh_err)?;
        session.set_keepalive(true, 10);

        let known_hosts = ssh_dir.join("known_hosts");
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

        for key_name in KEY_FILES {
            let private = ssh_dir.join(key_name);
            if private.exists()
                && session
                    .userauth_pubkey_file(user, None, &private, None)
                    .is_ok()
                && session.authenticated()
            {
                return Ok(Peer {
                    session,
                    host: name.into(),
                });
            }
        }
        Err(TransportError::Auth(ssh_dir.into()))
    }

    fn ssh_err(&self, e: impl std::fmt::Display) -> TransportError {
        TransportError::Ssh {
            host: self.host.clone(),
            message: e.to_string(),
        }
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
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| self.ssh_err(e))?;
        channel.exec(command).map_err(|e| self.ssh_err(e))?;
        channel.send_eof().map_err(|e| self.ssh_err(e))?;
        let result = sink(&mut channel);
        // What the sink left unread is not wanted: stop the peer's sender.
        let _ = channel.close();
        let mut stderr = String::new();
        let _ = channel.stderr().read_to_string(&mut stderr);
        // A channel cut short has no exit status: -1, and the sink's own
        // result (say, a refused stream) still says what happened.
        let status = channel
            .wait_close()
            .and_then(|()| channel.exit_status())
            .unwrap_or(-1);
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
    /// The host this session is connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

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
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| self.ssh_err(e))?;
        channel.exec(command).map_err(|e| self.ssh_err(e))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent: u64 = 0;
        let mut last_report = Instant::now();
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.ssh_err(format!("reading the local stream: {e}"))),
            };
            channel
                .write_all(&buf[..n])
                .map_err(|e| self.ssh_err(format!("sending: {e}")))?;
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
        channel.send_eof().map_err(|e| self.ssh_err(e))?;
        let mut stdout = Vec::new();
        channel
            .read_to_end(&mut stdout)
            .map_err(|e| self.ssh_err(e))?;
        let mut stderr = String::new();
        let _ = channel.stderr().read_to_string(&mut stderr);
        channel.wait_close().map_err(|e| self.ssh_err(e))?;
        let status = channel.exit_status().map_err(|e| self.ssh_err(e))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}
