//! Configuration: where volumes, snapshots, the schedule and the socket live.
//!
//! Every key is resolved exactly like buttervolume 3.13 does it, so an existing
//! node keeps its settings: the environment variable `BUTTERVOLUME_<KEY>` wins,
//! then the `[DEFAULT]` section of `/etc/buttervolume/config.ini`, then the
//! built-in default. `SSH_PORT` is read from the plain `SSH_PORT` variable, as
//! the reference (and the managed plugin's settable env) does.
//!
//! Each key is defined once in [`settings`] (key, source, default, meaning):
//! [`Config::resolve`] reads it through that definition and README's
//! configuration table is generated from it. [`cluster`] checks the
//! cluster-mode settings.

pub mod cluster;
pub mod settings;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub use cluster::ClusterConfig;
use settings::{Setting, Source};

/// The socket's file name, in the legacy plugin dir and in a managed
/// plugin's own dir alike.
pub const SOCKET_FILE: &str = "btrfs.sock";

/// The default config file, as in the reference.
pub const CONFIG_INI: &str = "/etc/buttervolume/config.ini";

/// Every setting the daemon and the CLI need, resolved once at start.
#[derive(Debug, Clone, PartialEq)]
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
    /// Cluster mode (ownership on etcd): `ETCD_ENDPOINTS`, `NODE_NAME`,
    /// `OWNER_TTL`, `MAX_LAG_ON_FAILOVER`.
    pub cluster: ClusterConfig,
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

/// Default of `SCHEDULE_WORKERS` (the scheduler's own default).
pub const DEFAULT_SCHEDULE_WORKERS: usize = settings::SCHEDULE_WORKERS.default_number();

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

/// Where a key's value comes from, in the reference's order; remembers
/// which keys were read (a test checks every [`settings::SETTINGS`] entry is).
struct Keys<'a> {
    env: &'a HashMap<String, String>,
    ini: &'a HashMap<String, String>,
    read: RefCell<BTreeSet<&'static str>>,
}

impl Keys<'_> {
    /// The setting's text: see [`settings::Source`]. The reference uses
    /// `environ.get(...) or config.get(...)`: an empty environment
    /// variable counts as unset. `derived` is the default of a
    /// [`settings::Default::Derived`] setting.
    fn raw(&self, setting: &Setting, derived: Option<&str>) -> String {
        self.read.borrow_mut().insert(setting.key);
        let default = match (setting.default, derived) {
            (settings::Default::Text(text), None) => text.to_string(),
            (settings::Default::Derived(_), Some(value)) => value.to_string(),
            _ => unreachable!("{}: a derived default is computed by resolve", setting.key),
        };
        match setting.source {
            Source::PlainEnv => self
                .env
                .get(setting.key)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or(default),
            Source::Buttervolume => self
                .env
                .get(&format!("BUTTERVOLUME_{}", setting.key))
                .filter(|v| !v.is_empty())
                .cloned()
                .or_else(|| self.ini.get(&setting.key.to_ascii_lowercase()).cloned())
                .unwrap_or(default),
        }
    }

    fn get(&self, setting: &Setting) -> String {
        self.raw(setting, None)
    }

    fn invalid(setting: &Setting, value: String, reason: &'static str) -> ConfigError {
        ConfigError::Invalid {
            key: setting.key,
            value,
            reason,
        }
    }

    /// Parsed by `parse`, whose error is the reason given.
    fn parsed<T>(
        &self,
        setting: &Setting,
        derived: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Result<T, ConfigError> {
        let raw = self.raw(setting, derived);
        parse(raw.trim()).map_err(|reason| Self::invalid(setting, raw, reason))
    }

    /// A whole number at least `min`.
    fn at_least(
        &self,
        setting: &Setting,
        min: u64,
        reason: &'static str,
    ) -> Result<u64, ConfigError> {
        self.parsed(setting, None, |raw| {
            raw.parse::<u64>().ok().filter(|n| *n >= min).ok_or(reason)
        })
    }

    /// One of a few words (case-insensitive), each meaning a value.
    fn choice<T: Copy>(
        &self,
        setting: &Setting,
        words: &[(&str, T)],
        reason: &'static str,
    ) -> Result<T, ConfigError> {
        self.parsed(setting, None, |raw| {
            let word = raw.to_ascii_lowercase();
            words
                .iter()
                .find(|(w, _)| *w == word)
                .map(|(_, value)| *value)
                .ok_or(reason)
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
    /// a config file. Pure (but for the host name, `NODE_NAME`'s default),
    /// so tests can feed it anything.
    pub fn resolve(
        env: &HashMap<String, String>,
        ini: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let keys = Keys {
            env,
            ini,
            read: RefCell::default(),
        };
        Config::from_keys(&keys)
    }

    fn from_keys(keys: &Keys) -> Result<Config, ConfigError> {
        use settings::*;
        let runpath = keys.get(&RUNPATH);
        let default_socket = Path::new(&runpath).join("plugins").join(SOCKET_FILE);
        let volumes_path = PathBuf::from(keys.get(&VOLUMES_PATH));
        // State lives beside the volumes dir by default, so one data mount
        // (the managed plugin's /var/lib/buttervolume) carries everything.
        let default_state = volumes_path
            .parent()
            .unwrap_or(Path::new("/var/lib/buttervolume"))
            .join("state");
        let endpoints = keys.parsed(&ETCD_ENDPOINTS, None, cluster::parse_endpoints)?;
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
            follow: keys.choice(&FOLLOW, BOOLEAN, "expected true or false")?,
            metrics_addr: keys.parsed(&METRICS_ADDR, None, |raw| match raw {
                "" => Ok(None),
                addr => addr.parse().map(Some).map_err(|_| {
                    "expected an IP address and a port, like 127.0.0.1:9470 or [::1]:9470 (empty: no metrics listener)"
                }),
            })?,
            send_compression: keys.choice(
                &SEND_COMPRESSION,
                &[
                    ("", false),
                    ("none", false),
                    ("false", false),
                    ("zstd", true),
                    ("true", true),
                ],
                "expected zstd or none",
            )?,
            send_bwlimit: keys.parsed(&SEND_BWLIMIT, None, |raw| {
                raw.parse::<u64>()
                    .map_err(|_| "expected MiB/s as a whole number (0: no limit)")
            })?,
            purge_timeframes: keys.choice(
                &PURGE_TIMEFRAMES,
                &[
                    ("age", PurgeTimeframes::Age),
                    ("calendar", PurgeTimeframes::Calendar),
                ],
                "expected age or calendar",
            )?,
            send_transport: keys.choice(
                &SEND_TRANSPORT,
                &[
                    ("auto", SendTransport::Auto),
                    ("openssh", SendTransport::OpenSsh),
                    ("libssh2", SendTransport::Libssh2),
                ],
                "expected auto, openssh or libssh2",
            )?,
            ssh_timeout_secs: keys.at_least(&SSH_TIMEOUT, 1, SECONDS)?,
            schedule_workers: keys.at_least(
                &SCHEDULE_WORKERS,
                1,
                "expected a number of jobs at once, at least 1",
            )? as usize,
            read_timeout_secs: keys.at_least(&READ_TIMEOUT, 1, SECONDS)?,
            max_connections: keys.at_least(
                &MAX_CONNECTIONS,
                1,
                "expected a number of connections, at least 1",
            )? as usize,
            snapshots_path: keys.get(&SNAPSHOTS_PATH).into(),
            test_remote_path: keys.get(&TEST_REMOTE_PATH).into(),
            state_path: keys
                .raw(&STATE_PATH, Some(&default_state.to_string_lossy()))
                .into(),
            schedule: keys.get(&SCHEDULE).into(),
            drivername: keys.get(&DRIVERNAME),
            socket: keys
                .raw(&SOCKET, Some(&default_socket.to_string_lossy()))
                .into(),
            runpath: runpath.into(),
            timer: keys.at_least(&TIMER, 1, SECONDS)?,
            dtformat: keys.get(&DTFORMAT),
            loglevel: keys.get(&LOGLEVEL),
            ssh_port: keys.parsed(&SSH_PORT, None, |raw| {
                raw.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or("expected a TCP port number")
            })?,
            docker_socket: keys.get(&DOCKER_SOCKET).into(),
            ssh_dir: keys.get(&SSH_DIR).into(),
            backup_targets_path: keys.get(&BACKUP_TARGETS_PATH).into(),
            backup_lock_wait_secs: keys.at_least(&BACKUP_LOCK_WAIT, 1, SECONDS)?,
            volumes_path,
            cluster: ClusterConfig {
                node_name: keys.parsed(&NODE_NAME, Some(&cluster::host_name()), |raw| {
                    // Only cluster mode uses it: an odd host name never
                    // stops a pair-mode node.
                    match endpoints.is_empty() {
                        true => Ok(raw.to_string()),
                        false => cluster::check_node_name(raw).map(|()| raw.to_string()),
                    }
                })?,
                endpoints,
                owner_ttl_secs: keys.at_least(
                    &OWNER_TTL,
                    cluster::MIN_OWNER_TTL_SECS,
                    "expected a number of seconds, at least 3",
                )?,
                max_lag_secs: keys.parsed(&MAX_LAG_ON_FAILOVER, None, |raw| {
                    raw.parse::<u64>()
                        .map_err(|_| "expected a whole number of seconds (0: no bound)")
                })?,
            },
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
mod tests;
