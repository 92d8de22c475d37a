//! Client verbs: each is one HTTP call to the daemon's socket, found like
//! the reference finds it (SOCKET if it exists, else the managed plugin
//! DRIVERNAME through the Docker API). Bodies and replies are the
//! [`crate::api`] types the server uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::print;
use super::Failure;
use crate::api::{self, path};
use crate::client::{self, ClientError};
use crate::config::Config;

/// How long the CLI waits for the daemon: sends of big volumes take long.
const CLI_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Plugin names tried after DRIVERNAME when looking for a managed plugin.
const KNOWN_PLUGIN_NAMES: [&str; 2] = ["anybox/buttervolume:latest", "ccomb/buttervolume:latest"];

/// Verbs that call the daemon.
#[derive(Subcommand, Debug)]
pub enum ClientVerb {
    /// Snapshot a volume
    Snapshot {
        name: String,
        /// Only if the volume changed since its newest snapshot (else print
        /// that one)
        #[arg(long)]
        if_changed: bool,
    },
    /// List snapshots
    Snapshots {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Schedule, unschedule, pause or resume a periodic snapshot, replication, synchronization or purge
    Schedule {
        /// snapshot, replicate:<host>, purge:<pattern>, synchronize:<host[,host2]>
        action: String,
        /// Minutes between two runs, or cron:<expr>; 0/delete removes, pause, resume
        timer: String,
        name: String,
    },
    /// List, pause or resume all the scheduled actions
    Scheduled {
        #[arg(default_value = "list", value_parser = ["list", "pause", "resume"])]
        action: String,
        /// Show next run, last run and last result of each job
        #[arg(long, short)]
        verbose: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot (a volume name restores its latest snapshot)
    Restore {
        name: String,
        target: Option<String>,
        /// Restore even into a mounted or non-migrable volume
        #[arg(long)]
        force: bool,
    },
    /// Clone a volume
    Clone {
        name: String,
        target: Option<String>,
    },
    /// Send a snapshot to another host
    Send {
        host: String,
        snapshot: String,
        /// Compress the stream with zstd (peer must be this plugin)
        #[arg(long)]
        compress: bool,
        /// Bandwidth limit in MiB/s
        #[arg(long)]
        bwlimit: Option<u64>,
    },
    /// Snapshot a volume now and send it to another host (prints the
    /// snapshot's name)
    Replicate { host: String, volume: String },
    /// Receive the newest snapshot of a volume from another host (restores
    /// nothing; prints the snapshot's name)
    Receive { host: String, volume: String },
    /// Sync a volume from other host(s)
    Sync { volume: String, hosts: Vec<String> },
    /// Delete a snapshot
    Rm { name: String },
    /// Purge old snapshots using a purge pattern (e.g. 4h:1d:1w)
    Purge {
        pattern: String,
        name: String,
        /// Don't really purge but tell what would be deleted
        #[arg(long)]
        dryrun: bool,
    },
    /// Show every volume's snapshots, replication to peers, jobs and the
    /// problems (first)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Show a volume's options, labels, non-migrable flag and snapshots
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// Finds the daemon's socket like the reference: SOCKET when it exists,
/// otherwise the managed plugin's socket found through the Docker API.
pub async fn discover_socket(config: &Config) -> PathBuf {
    if config.socket.exists() {
        return config.socket.clone();
    }
    let mut names = vec![config.drivername.as_str()];
    names.extend(
        KNOWN_PLUGIN_NAMES
            .iter()
            .filter(|n| **n != config.drivername),
    );
    for name in names {
        if let Ok(Some(id)) = crate::docker::plugin_id(&config.docker_socket, name).await {
            let socket = config
                .runpath
                .join("plugins")
                .join(id)
                .join(crate::config::SOCKET_FILE);
            if socket.exists() {
                return socket;
            }
        }
    }
    config.socket.clone()
}

/// The daemon's socket, and how to call it.
struct Daemon {
    socket: PathBuf,
}

fn connect_failure(e: ClientError) -> Failure {
    match e {
        ClientError::Connect { .. } => Failure(format!(
            "Failed to connect to Buttervolume ({e}). You can start it with: buttervolume run"
        )),
        other => Failure(other.to_string()),
    }
}

impl Daemon {
    /// Calls the daemon; a non-empty `Err` becomes a failure.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let (_, reply) = client::request(&self.socket, method, path, body.as_ref(), CLI_TIMEOUT)
            .await
            .map_err(connect_failure)?;
        match reply.get("Err").and_then(Value::as_str) {
            Some(err) if !err.is_empty() => Err(Failure(err.to_string())),
            _ => Ok(reply),
        }
    }

    /// POSTs a typed request and decodes the typed reply.
    async fn post<R: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Serialize,
    ) -> Result<R, Failure> {
        let body = serde_json::to_value(body).expect("requests serialize");
        let reply = self.call(Method::POST, path, Some(body)).await?;
        decode(path, reply)
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, Failure> {
        let reply = self.call(Method::GET, path, None).await?;
        decode(path, reply)
    }
}

fn decode<R: DeserializeOwned>(path: &str, reply: Value) -> Result<R, Failure> {
    R::deserialize(reply).map_err(|e| Failure(format!("unexpected reply from {path}: {e}")))
}

fn name(name: String) -> api::NameRequest {
    api::NameRequest { name }
}

/// Runs one client verb.
pub async fn run(config: &Config, verb: ClientVerb) -> Result<(), Failure> {
    let daemon = Daemon {
        socket: discover_socket(config).await,
    };
    match verb {
        ClientVerb::Snapshot { name, if_changed } => {
            let request = api::SnapshotRequest { name, if_changed };
            let reply: api::SnapshotReply = daemon.post(path::SNAPSHOT, request).await?;
            print::line(&reply.snapshot);
        }
        ClientVerb::Snapshots { name, json } => {
            let path = match &name {
                Some(n) => format!("{}/{n}", path::SNAPSHOT_LIST),
                None => path::SNAPSHOT_LIST.to_string(),
            };
            let reply: api::SnapshotsReply = daemon.get(&path).await?;
            print::list(&reply.snapshots, json);
        }
        ClientVerb::Schedule {
            action,
            timer,
            name,
        } => {
            let request = api::ScheduleRequest {
                name,
                action,
                timer,
            };
            daemon.post::<Value>(path::SCHEDULE, request).await?;
        }
        ClientVerb::Scheduled {
            action,
            verbose,
            json,
        } => scheduled(&daemon, &action, verbose, json).await?,
        ClientVerb::Restore {
            name,
            target,
            force,
        } => {
            let request = api::RestoreRequest {
                name,
                target,
                force,
            };
            let reply: api::RestoreReply = daemon.post(path::SNAPSHOT_RESTORE, request).await?;
            print::line(reply.volume_backup.as_deref().unwrap_or_default());
        }
        ClientVerb::Clone { name, target } => {
            let Some(target) = target else {
                return Err(Failure("clone needs a target volume name".into()));
            };
            let request = api::CloneRequest {
                name,
                target: Some(target),
            };
            let reply: api::CloneReply = daemon.post(path::CLONE, request).await?;
            print::line(&reply.volume_cloned);
        }
        ClientVerb::Send {
            host,
            snapshot,
            compress,
            bwlimit,
        } => {
            let request = api::SendRequest {
                name: snapshot,
                host,
                test: false,
                compress: compress.then_some(true),
                bwlimit,
            };
            let reply: api::SummaryReply = daemon.post(path::SNAPSHOT_SEND, request).await?;
            eprintln!("{}", reply.summary);
        }
        ClientVerb::Receive { host, volume } => {
            peer_volume(&daemon, path::SNAPSHOT_RECEIVE, host, volume).await?;
        }
        ClientVerb::Replicate { host, volume } => {
            peer_volume(&daemon, path::REPLICATE, host, volume).await?;
        }
        ClientVerb::Sync { volume, hosts } => {
            let request = api::SyncRequest {
                volumes: vec![volume],
                hosts,
                test: false,
            };
            daemon.post::<Value>(path::SYNC, request).await?;
        }
        ClientVerb::Rm { name: snapshot } => {
            daemon
                .post::<Value>(path::SNAPSHOT_REMOVE, name(snapshot))
                .await?;
        }
        ClientVerb::Purge {
            pattern,
            name,
            dryrun,
        } => {
            let request = api::PurgeRequest {
                name,
                pattern,
                dry_run: dryrun,
            };
            let reply: api::PurgeReply = daemon.post(path::PURGE, request).await?;
            if dryrun {
                print::list(&reply.purged, false);
            }
        }
        ClientVerb::Status { json } => {
            super::status::print(&daemon.get(path::STATUS).await?, json);
        }
        ClientVerb::Inspect { name: volume, json } => {
            let reply: Value = daemon.post(path::INSPECT, name(volume)).await?;
            let volume = reply.get("Volume").cloned().unwrap_or(json!({}));
            if json {
                print::json(&volume);
            } else {
                print::inspect(&volume);
            }
        }
    }
    Ok(())
}

/// `receive` and `replicate`: the summary on stderr, the snapshot on stdout.
async fn peer_volume(
    daemon: &Daemon,
    path: &str,
    host: String,
    volume: String,
) -> Result<(), Failure> {
    let request = api::PeerVolumeRequest { name: volume, host };
    let reply: api::SnapshotReply = daemon.post(path, request).await?;
    if let Some(summary) = reply.summary {
        eprintln!("{summary}");
    }
    print::line(&reply.snapshot);
    Ok(())
}

/// `scheduled [list|pause|resume]`.
async fn scheduled(
    daemon: &Daemon,
    action: &str,
    verbose: bool,
    json: bool,
) -> Result<(), Failure> {
    match action {
        "pause" => {
            daemon
                .post::<Value>(path::SCHEDULE_PAUSE, json!({}))
                .await?;
        }
        "resume" => {
            daemon
                .post::<Value>(path::SCHEDULE_RESUME, json!({}))
                .await?;
        }
        _ => {
            let reply: Value = daemon.get(path::SCHEDULE_LIST).await?;
            let jobs = reply.get("Schedule").cloned().unwrap_or(json!([]));
            if json {
                print::json(&jobs);
            } else {
                print::schedule(&jobs, verbose);
            }
            // Lines of schedule.csv the scheduler skips: on stderr, so
            // stdout stays the reference's.
            print::invalid_lines(&reply);
        }
    }
    Ok(())
}
