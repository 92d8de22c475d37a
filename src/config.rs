//! Configuration: where volumes, snapshots, the schedule and the socket live.
//!
//! Every key is resolved exactly like buttervolume 3.13 does it, so an existing
//! node keeps its settings: the environment variable `BUTTERVOLUME_<KEY>` wins,
//! then the `[DEFAULT]` section of `/etc/buttervolume/config.ini`, then the
//! built-in default. `SSH_PORT` is read from the plain `SSH_PORT` variable, as
//! the reference (and the managed plugin's settable env) does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The socket's file name, in the legacy plugin dir and in a managed
/// plugin's own dir alike.
pub const SOCKET_FILE: &str = "btrfs.sock";

/// The default config file, as in the reference.
pub const CONFIG_INI: &str = "/etc/buttervolume/config.ini";

/// Every setting the daemon and the CLI need, resolved once at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub volumes_path: PathBuf,
    pub snapshots_path: PathBuf,
    pub test_remote_path: PathBuf,
    /// Private state that must not show up as a volume or a snapshot
    /// (mount counts, scheduler run times, receive staging).
    pub state_path: PathBuf,
    pub schedule: PathBuf,
    pub drivername: String,
    pub runpath: PathBuf,
    pub socket: PathBuf,
    /// Seconds between two scheduler ticks.
    pub timer: u64,
    pub dtformat: String,
    pub loglevel: String,
    pub ssh_port: u16,
    /// Keys and known_hosts for SSH to peers (the managed plugin binds
    /// /var/lib/buttervolume/ssh here).
    pub ssh_dir: PathBuf,
    /// Compress send streams with zstd when the peer is this plugin.
    pub send_compression: bool,
    /// Bandwidth limit of sends in MiB/s (0: none).
    pub send_bwlimit: u64,
    /// Which SSH client carries send streams (`SEND_TRANSPORT`).
    pub send_transport: SendTransport,
    /// Seconds a transfer may make no progress before it is cut
    /// (`SSH_TIMEOUT`).
    pub ssh_timeout_secs: u64,
    /// Where the Docker engine API answers (labels, plugin discovery).
    pub docker_socket: PathBuf,
    /// Jobs the scheduler runs at once per pool (`SCHEDULE_WORKERS`).
    pub schedule_workers: usize,
    /// How long a socket connection may take to send a request header or
    /// body, or stay idle between requests (`READ_TIMEOUT`, seconds).
    pub read_timeout_secs: u64,
    /// Open socket connections wanted at most (`MAX_CONNECTIONS`; the
    /// server lowers it to fit the descriptor limit).
    pub max_connections: usize,
    /// FOLLOW: replicated volumes follow their containers between the two
    /// nodes ([`crate::follow`]); `false` turns it off everywhere.
    pub follow: bool,
    /// Where the Prometheus metrics listener binds (`METRICS_ADDR`, e.g.
    /// `127.0.0.1:9470`); `None` (the default, an empty value): no listener.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where backup targets are described, one `<name>.env` file each
    /// (`BACKUP_TARGETS_PATH`, see [`crate::backup`]).
    pub backup_targets_path: PathBuf,
    /// How long a restic repository locked by another restic is tried
    /// again before the backup fails (`BACKUP_LOCK_WAIT`, seconds).
    pub backup_lock_wait_secs: u64,
    /// How a purge pattern's timeframes are counted (`PURGE_TIMEFRAMES`).
    pub purge_timeframes: PurgeTimeframes,
}

/// How an uncounted purge pattern (`1h:1d:1w`) counts its timeframes
/// ([`crate::purge`]). Counted patterns (`1h/4:1d/3`) and single-step ones
/// (`2h`) always use the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PurgeTimeframes {
    /// `age` (the default): buttervolume 3.13's rule, timeframes counted on
    /// each snapshot's age at the purge.
    #[default]
    Age,
    /// `calendar`: upstream buttervolume master's rule, timeframes counted
    /// from 1970-01-01 on the moment each snapshot was taken.
    Calendar,
}

/// Which SSH client carries send streams ([`crate::replication::transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendTransport {
    /// `auto` (the default): full sends through OpenSSH's `ssh` when it is
    /// installed, everything else through libssh2.
    #[default]
    Auto,
    /// Every send stream through `ssh`.
    OpenSsh,
    /// Every send stream through libssh2 (as before 2026-12).
    Libssh2,
}

/// Default of `SSH_TIMEOUT`.
pub const DEFAULT_SSH_TIMEOUT_SECS: u64 = 30;
/// Default of `SCHEDULE_WORKERS`.
pub const DEFAULT_SCHEDULE_WORKERS: usize = 4;
/// Default of `READ_TIMEOUT`.
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 10;
/// Default of `MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a key's value comes from, in the reference's order.
struct Keys<'a> {
    env: &'a HashMap<String, String>,
    ini: &'a HashMap<String, String>,
}

impl Keys<'_> {
    /// `BUTTERVOLUME_<KEY>`, else `key` in the ini's `[DEFAULT]`, else
    /// `default`. The reference uses `environ.get(...) or config.get(...)`:
    /// an empty environment variable counts as unset.
    fn get(&self, key: &str, default: &str) -> String {
        self.env
            .get(&format!("BUTTERVOLUME_{key}"))
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| self.ini.get(&key.to_ascii_lowercase()).cloned())
            .unwrap_or_else(|| default.to_string())
    }

    /// A whole number greater than 0.
    fn positive(
        &self,
        key: &'static str,
        default: u64,
        reason: &'static str,
    ) -> Result<u64, ConfigError> {
        let raw = self.get(key, &default.to_string());
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ConfigError::Invalid {
                key,
                value: raw,
                reason,
            })
    }

    /// One of a few words (case-insensitive), each meaning a value.
    fn choice<T: Copy>(
        &self,
        key: &'static str,
        default: &str,
        words: &[(&str, T)],
        reason: &'static str,
    ) -> Result<T, ConfigError> {
        let raw = self.get(key, default);
        let word = raw.trim().to_ascii_lowercase();
        words
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, value)| *value)
            .ok_or(ConfigError::Invalid {
                key,
                value: raw,
                reason,
            })
    }
}

impl Config {
    /// Loads the configuration from the process environment and the default
    /// config file (a missing file is fine, an unreadable one is not).
    pub fn load() -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let ini_path = Path::new(CONFIG_INI);
        let ini = match std::fs::read_to_string(ini_path) {
            Ok(text) => parse_ini_defaults(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: ini_path.into(),
                    source,
                })
            }
        };
        Config::resolve(&env, &ini)
    }

    /// Resolves every key from an environment and the `[DEFAULT]` section of
    /// a config file. Pure, so tests can feed it anything.
    pub fn resolve(
        env: &HashMap<String, String>,
        ini: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let keys = Keys { env, ini };
        let get = |key: &str, default: &str| keys.get(key, default);
        let runpath = get("RUNPATH", "/run/docker");
        let default_socket = Path::new(&runpath).join("plugins").join(SOCKET_FILE);
        let port_raw = env
            .get("SSH_PORT")
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| "1122".into());
        let ssh_port = port_raw
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(ConfigError::Invalid {
                key: "SSH_PORT",
                value: port_raw.clone(),
                reason: "expected a TCP port number",
            })?;
        let volumes_path = PathBuf::from(get("VOLUMES_PATH", "/var/lib/buttervolume/volumes/"));
        // State lives beside the volumes dir by default, so one data mount
        // (the managed plugin's /var/lib/buttervolume) carries everything.
        let default_state = volumes_path
            .parent()
            .unwrap_or(Path::new("/var/lib/buttervolume"))
            .join("state");
        let bwlimit_raw = get("SEND_BWLIMIT", "0");
        let send_bwlimit = bwlimit_raw
            .trim()
            .parse::<u64>()
            .map_err(|_| ConfigError::Invalid {
                key: "SEND_BWLIMIT",
                value: bwlimit_raw.clone(),
                reason: "expected MiB/s as a whole number (0: no limit)",
            })?;
        let metrics_raw = get("METRICS_ADDR", "");
        let metrics_addr = match metrics_raw.trim() {
            "" => None,
            addr => Some(addr.parse().map_err(|_| ConfigError::Invalid {
                key: "METRICS_ADDR",
                value: metrics_raw.clone(),
                reason: "expected an IP address and a port, like 127.0.0.1:9470 or [::1]:9470 (empty: no metrics listener)",
            })?),
        };
        const SECONDS: &str = "expected a positive number of seconds";
        const BOOLEAN: &[(&str, bool)] = &[
            ("true", true),
            ("yes", true),
            ("1", true),
            ("false", false),
            ("no", false),
            ("0", false),
        ];
        Ok(Config {
            follow: keys.choice("FOLLOW", "true", BOOLEAN, "expected true or false")?,
            metrics_addr,
            send_compression: keys.choice(
                "SEND_COMPRESSION",
                "",
                &[
                    ("", false),
                    ("none", false),
                    ("false", false),
                    ("zstd", true),
                    ("true", true),
                ],
                "expected zstd or none",
            )?,
            send_bwlimit,
            purge_timeframes: keys.choice(
                "PURGE_TIMEFRAMES",
                "age",
                &[
                    ("age", PurgeTimeframes::Age),
                    ("calendar", PurgeTimeframes::Calendar),
                ],
                "expected age or calendar",
            )?,
            send_transport: keys.choice(
                "SEND_TRANSPORT",
                "auto",
                &[
                    ("auto", SendTransport::Auto),
                    ("openssh", SendTransport::OpenSsh),
                    ("libssh2", SendTransport::Libssh2),
                ],
                "expected auto, openssh or libssh2",
            )?,
            ssh_timeout_secs: keys.positive("SSH_TIMEOUT", DEFAULT_SSH_TIMEOUT_SECS, SECONDS)?,
            schedule_workers: keys.positive(
                "SCHEDULE_WORKERS",
                DEFAULT_SCHEDULE_WORKERS as u64,
                "expected a number of jobs at once, at least 1",
            )? as usize,
            read_timeout_secs: keys.positive("READ_TIMEOUT", DEFAULT_READ_TIMEOUT_SECS, SECONDS)?,
            max_connections: keys.positive(
                "MAX_CONNECTIONS",
                DEFAULT_MAX_CONNECTIONS as u64,
                "expected a number of connections, at least 1",
            )? as usize,
            snapshots_path: get("SNAPSHOTS_PATH", "/var/lib/buttervolume/snapshots/").into(),
            test_remote_path: get("TEST_REMOTE_PATH", "/var/lib/buttervolume/received/").into(),
            state_path: get("STATE_PATH", &default_state.to_string_lossy()).into(),
            schedule: get("SCHEDULE", "/etc/buttervolume/schedule.csv").into(),
            drivername: get("DRIVERNAME", "anybox/buttervolume:latest"),
            socket: get("SOCKET", &default_socket.to_string_lossy()).into(),
            runpath: runpath.into(),
            timer: keys.positive("TIMER", 60, SECONDS)?,
            dtformat: get("DTFORMAT", crate::names::DTFORMAT),
            loglevel: get("LOGLEVEL", "INFO"),
            ssh_port,
            docker_socket: get("DOCKER_SOCKET", "/var/run/docker.sock").into(),
            ssh_dir: get("SSH_DIR", "/root/.ssh").into(),
            backup_targets_path: get("BACKUP_TARGETS_PATH", "/etc/buttervolume/backup/").into(),
            backup_lock_wait_secs: keys.positive("BACKUP_LOCK_WAIT", 120, SECONDS)?,
            volumes_path,
        })
    }

    /// The file whose presence means "schedule globally paused".
    pub fn schedule_disabled(&self) -> PathBuf {
        let mut name = self.schedule.clone().into_os_string();
        name.push(".disabled");
        name.into()
    }

    /// Creates the data directories the daemon needs (the reference does the
    /// same for volumes and snapshots at start).
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [&self.volumes_path, &self.snapshots_path, &self.state_path] {
            std::fs::create_dir_all(dir)?;
        }
        if let Some(parent) = self.schedule.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if let Some(parent) = self.socket.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(())
    }
}

/// Reads the `[DEFAULT]` section of a Python-configparser style file.
///
/// Keys are lower-cased (configparser is case-insensitive), `key = value` and
/// `key: value` are both accepted, `#`/`;` lines are comments. Only the
/// DEFAULT section matters to buttervolume.
pub fn parse_ini_defaults(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut in_default = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            in_default = &line[1..line.len() - 1] == "DEFAULT";
            continue;
        }
        if !in_default {
            continue;
        }
        let split = line.find(['=', ':']);
        if let Some(pos) = split {
            let key = line[..pos].trim().to_ascii_lowercase();
            let value = line[pos + 1..].trim().to_string();
            out.insert(key, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_reference() {
        let c = Config::resolve(&HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(c.volumes_path, Path::new("/var/lib/buttervolume/volumes/"));
        assert_eq!(c.socket, Path::new("/run/docker/plugins/btrfs.sock"));
        assert_eq!(c.state_path, Path::new("/var/lib/buttervolume/state"));
        assert_eq!(c.timer, 60);
        assert_eq!(c.ssh_port, 1122);
        assert_eq!(c.metrics_addr, None);
        assert_eq!(
            c.schedule_disabled(),
            Path::new("/etc/buttervolume/schedule.csv.disabled")
        );
    }

    #[test]
    fn env_beats_ini_beats_default() {
        let ini = parse_ini_defaults(
            "[DEFAULT]\nVOLUMES_PATH = /ini/vols\nTIMER: 5\n[other]\nSOCKET=/nope\n",
        );
        let env = map(&[("BUTTERVOLUME_TIMER", "7"), ("BUTTERVOLUME_RUNPATH", "/r")]);
        let c = Config::resolve(&env, &ini).unwrap();
        assert_eq!(c.volumes_path, Path::new("/ini/vols"));
        assert_eq!(c.timer, 7);
        assert_eq!(c.socket, Path::new("/r/plugins/btrfs.sock"));
    }

    #[test]
    fn metrics_addr_is_an_address_and_a_port() {
        let ini = parse_ini_defaults("[DEFAULT]\nmetrics_addr = 127.0.0.1:9470\n");
        let c = Config::resolve(&HashMap::new(), &ini).unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9470".parse().unwrap()));
        let env = map(&[("BUTTERVOLUME_METRICS_ADDR", "[::1]:9")]);
        let c = Config::resolve(&env, &ini).unwrap();
        assert_eq!(c.metrics_addr, Some("[::1]:9".parse().unwrap()));
        for bad in ["9470", "localhost:9470", "127.0.0.1", "127.0.0.1:x"] {
            let env = map(&[("BUTTERVOLUME_METRICS_ADDR", bad)]);
            let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
            assert!(err.to_string().contains("METRICS_ADDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_numbers_are_clear_errors() {
        let env = map(&[("BUTTERVOLUME_TIMER", "soon")]);
        let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("TIMER"), "{err}");
        let env = map(&[("SSH_PORT", "99999")]);
        assert!(Config::resolve(&env, &HashMap::new()).is_err());
        for key in [
            "SCHEDULE_WORKERS",
            "READ_TIMEOUT",
            "MAX_CONNECTIONS",
            "SSH_TIMEOUT",
        ] {
            for bad in ["0", "-1", "ten", "1.5"] {
                let env = map(&[(&format!("BUTTERVOLUME_{key}"), bad)]);
                let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
                assert!(err.to_string().contains(key), "{key}={bad}: {err}");
            }
        }
    }

    #[test]
    fn purge_timeframes_are_age_unless_set_to_calendar() {
        let c = Config::resolve(&HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(c.purge_timeframes, PurgeTimeframes::Age);
        let ini = parse_ini_defaults("[DEFAULT]\npurge_timeframes = Calendar\n");
        let c = Config::resolve(&HashMap::new(), &ini).unwrap();
        assert_eq!(c.purge_timeframes, PurgeTimeframes::Calendar);
        let env = map(&[("BUTTERVOLUME_PURGE_TIMEFRAMES", "weekly")]);
        let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("PURGE_TIMEFRAMES"), "{err}");
    }
}
