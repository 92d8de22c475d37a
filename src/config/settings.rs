//! The one definition of every setting: its key, where it is read from,
//! its default and what it means. [`super::Config::resolve`] reads each
//! key through its definition here (the default it falls back to is the
//! one written here), and README's configuration table is [`readme_table`]
//! (a unit test checks README carries it verbatim, so the documentation
//! cannot miss a key or show another default).

/// Where a setting's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `BUTTERVOLUME_<KEY>` (empty counts as unset), else the key in the
    /// `[DEFAULT]` section of config.ini, else the default: buttervolume
    /// 3.13's order.
    Buttervolume,
    /// The plain environment variable `<KEY>` only, as the reference (and
    /// the managed plugin's settable env) reads `SSH_PORT`.
    PlainEnv,
}

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// This text, read exactly as a value that was set (empty: unset).
    Text(&'static str),
    /// Computed at load from other settings or the system; the text says
    /// how (it is what README shows).
    Derived(&'static str),
}

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    pub source: Source,
    pub default: Default,
    /// What it means, one line of Markdown.
    pub doc: &'static str,
}

impl Setting {
    const fn new(key: &'static str, default: &'static str, doc: &'static str) -> Setting {
        Setting {
            key,
            source: Source::Buttervolume,
            default: Default::Text(default),
            doc,
        }
    }

    const fn derived(key: &'static str, how: &'static str, doc: &'static str) -> Setting {
        Setting {
            key,
            source: Source::Buttervolume,
            default: Default::Derived(how),
            doc,
        }
    }

    /// The default as a whole number, at compile time (for the constants
    /// other modules need, so the number is written once, here).
    pub const fn default_number(&self) -> usize {
        let Default::Text(text) = self.default else {
            panic!("a derived default is no number")
        };
        let bytes = text.as_bytes();
        assert!(!bytes.is_empty(), "an empty default is no number");
        let mut n = 0;
        let mut i = 0;
        while i < bytes.len() {
            assert!(bytes[i].is_ascii_digit(), "the default is no number");
            n = n * 10 + (bytes[i] - b'0') as usize;
            i += 1;
        }
        n
    }
}

pub const VOLUMES_PATH: Setting = Setting::new(
    "VOLUMES_PATH",
    "/var/lib/buttervolume/volumes/",
    "the volumes, one btrfs subvolume each",
);
pub const SNAPSHOTS_PATH: Setting = Setting::new(
    "SNAPSHOTS_PATH",
    "/var/lib/buttervolume/snapshots/",
    "snapshots, the ones received from peers included",
);
pub const TEST_REMOTE_PATH: Setting = Setting::new(
    "TEST_REMOTE_PATH",
    "/var/lib/buttervolume/received/",
    "where test-mode sends and syncs land (the reference's test mode)",
);
pub const STATE_PATH: Setting = Setting::derived(
    "STATE_PATH",
    "`state` beside `VOLUMES_PATH` (`/var/lib/buttervolume/state`)",
    "private state: mount counts, scheduler history, receive staging",
);
pub const SCHEDULE: Setting = Setting::new(
    "SCHEDULE",
    "/etc/buttervolume/schedule.csv",
    "the schedule (`<SCHEDULE>.disabled` pauses it all)",
);
pub const DRIVERNAME: Setting = Setting::new(
    "DRIVERNAME",
    "anybox/buttervolume:latest",
    "the managed plugin the CLI looks for when `SOCKET` is absent",
);
pub const RUNPATH: Setting = Setting::new("RUNPATH", "/run/docker", "Docker's run directory");
pub const SOCKET: Setting = Setting::derived(
    "SOCKET",
    "`$RUNPATH/plugins/btrfs.sock`",
    "the plugin socket",
);
pub const TIMER: Setting = Setting::new("TIMER", "60", "seconds between two scheduler ticks");
pub const DTFORMAT: Setting = Setting::new(
    "DTFORMAT",
    crate::names::DTFORMAT,
    "the timestamp format of snapshot names",
);
pub const LOGLEVEL: Setting =
    Setting::new("LOGLEVEL", "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`");
pub const DOCKER_SOCKET: Setting = Setting::new(
    "DOCKER_SOCKET",
    "/var/run/docker.sock",
    "the Docker engine API (volume labels, plugin discovery)",
);
pub const SSH_DIR: Setting = Setting::new(
    "SSH_DIR",
    "/root/.ssh",
    "keys and `known_hosts` for SSH to peers",
);
pub const SSH_PORT: Setting = Setting {
    key: "SSH_PORT",
    source: Source::PlainEnv,
    default: Default::Text("1122"),
    doc: "the peers' sshd port (and the managed plugin's own)",
};
pub const SSH_TIMEOUT: Setting = Setting::new(
    "SSH_TIMEOUT",
    "30",
    "seconds a transfer may make no progress before it is cut; a stalled connect or command fails after it",
);
pub const SEND_COMPRESSION: Setting = Setting::new(
    "SEND_COMPRESSION",
    "",
    "`zstd`: compress send streams when the peer is this plugin; empty or `none`: do not",
);
pub const SEND_BWLIMIT: Setting = Setting::new(
    "SEND_BWLIMIT",
    "0",
    "bandwidth limit of sends in MiB/s (`0`: none)",
);
pub const SEND_TRANSPORT: Setting = Setting::new(
    "SEND_TRANSPORT",
    "auto",
    "`auto`: full sends through OpenSSH's `ssh`, the rest through libssh2; `openssh` or `libssh2`: every send stream through that one (see \"Replication\")",
);
pub const SCHEDULE_WORKERS: Setting = Setting::new(
    "SCHEDULE_WORKERS",
    "4",
    "scheduled jobs run at once per pool",
);
pub const READ_TIMEOUT: Setting = Setting::new(
    "READ_TIMEOUT",
    "10",
    "seconds a socket connection has to send its request header, and its body; also the idle limit between keep-alive requests",
);
pub const MAX_CONNECTIONS: Setting = Setting::new(
    "MAX_CONNECTIONS",
    "1024",
    "open socket connections at most (lowered to the open-files limit minus 256)",
);
pub const FOLLOW: Setting = Setting::new(
    "FOLLOW",
    "true",
    "`false`: replicated volumes never follow their containers between nodes (see \"Volumes follow their containers\")",
);
pub const METRICS_ADDR: Setting = Setting::new(
    "METRICS_ADDR",
    "",
    "empty: no metrics listener; `127.0.0.1:9470`, `[::1]:9470` or `0.0.0.0:9470`: Prometheus metrics on `http://<addr>/metrics` (see \"Status and metrics\")",
);
pub const BACKUP_TARGETS_PATH: Setting = Setting::new(
    "BACKUP_TARGETS_PATH",
    "/etc/buttervolume/backup/",
    "one `<target>.env` per restic repository (see \"Backups\")",
);
pub const BACKUP_LOCK_WAIT: Setting = Setting::new(
    "BACKUP_LOCK_WAIT",
    "120",
    "seconds a restic repository locked by another restic is tried again before the backup fails",
);
pub const PURGE_TIMEFRAMES: Setting = Setting::new(
    "PURGE_TIMEFRAMES",
    "age",
    "`age`: 3.13's purge rule; `calendar`: upstream master's (see \"Retention\")",
);
pub const ETCD_ENDPOINTS: Setting = Setting::new(
    "ETCD_ENDPOINTS",
    "",
    "cluster mode: comma-separated etcd endpoints, `http://host:port,...`; empty: pair mode",
);
pub const NODE_NAME: Setting = Setting::derived(
    "NODE_NAME",
    "the host name",
    "cluster mode: this node's name (letters, digits, `.`, `-`, `_`)",
);
pub const OWNER_TTL: Setting = Setting::new(
    "OWNER_TTL",
    "15",
    "cluster mode: seconds a volume owner's lease lives without renewal (at least 3)",
);
pub const MAX_LAG_ON_FAILOVER: Setting = Setting::new(
    "MAX_LAG_ON_FAILOVER",
    "0",
    "cluster mode: seconds a replica may be older than the owner's last confirmed snapshot and still take over (`0`: no bound)",
);

/// Every setting, in README's order.
pub const SETTINGS: &[Setting] = &[
    VOLUMES_PATH,
    SNAPSHOTS_PATH,
    TEST_REMOTE_PATH,
    STATE_PATH,
    SCHEDULE,
    DRIVERNAME,
    RUNPATH,
    SOCKET,
    TIMER,
    DTFORMAT,
    LOGLEVEL,
    DOCKER_SOCKET,
    SSH_DIR,
    SSH_PORT,
    SSH_TIMEOUT,
    SEND_COMPRESSION,
    SEND_BWLIMIT,
    SEND_TRANSPORT,
    SCHEDULE_WORKERS,
    READ_TIMEOUT,
    MAX_CONNECTIONS,
    FOLLOW,
    METRICS_ADDR,
    BACKUP_TARGETS_PATH,
    BACKUP_LOCK_WAIT,
    PURGE_TIMEFRAMES,
    ETCD_ENDPOINTS,
    NODE_NAME,
    OWNER_TTL,
    MAX_LAG_ON_FAILOVER,
];

/// README's configuration table: every setting, its default and meaning.
pub fn readme_table() -> String {
    let mut table = String::from("| key | default | meaning |\n|---|---|---|\n");
    for setting in SETTINGS {
        let key = match setting.source {
            Source::Buttervolume => format!("`{}`", setting.key),
            Source::PlainEnv => format!("`{}` (plain env only)", setting.key),
        };
        let default = match setting.default {
            Default::Text("") => "empty".to_string(),
            Default::Text(text) => format!("`{text}`"),
            Default::Derived(how) => how.to_string(),
        };
        table.push_str(&format!("| {key} | {default} | {} |\n", setting.doc));
    }
    table
}
