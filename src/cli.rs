//! The `buttervolume` command line, verb for verb compatible with
//! buttervolume 3.13: same arguments, same output on stdout, errors on
//! stderr as `ERROR:root:<message>` (what the reference's logging printed)
//! and exit status 1 on failure. Every client verb is one HTTP call to the
//! daemon's socket, found like the reference finds it (SOCKET if it exists,
//! else the managed plugin DRIVERNAME through the Docker API).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{self, ClientError};
use crate::config::Config;

/// How long the CLI waits for the daemon: sends of big volumes take long.
const CLI_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Plugin names tried after DRIVERNAME when looking for a managed plugin.
const KNOWN_PLUGIN_NAMES: [&str; 2] = ["anybox/buttervolume:latest", "ccomb/buttervolume:latest"];

#[derive(Parser, Debug)]
#[command(
    name = "buttervolume",
    version = "3.13",
    about = "Command-line client for the BTRFS Docker Volume Plugin"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Verb>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Run the plugin in foreground
    Run {
        /// Also run and supervise the OpenSSH server peers send to (managed plugin)
        #[arg(long)]
        sshd: bool,
    },
    /// Prepare the data directory (loop-mounted btrfs image when needed)
    Init {
        /// Size of the sparse loop image created when the data dir is not btrfs
        #[arg(long, default_value = crate::init::DEFAULT_LOOP_SIZE)]
        loop_size: String,
    },
    /// Snapshot a volume
    Snapshot { name: String },
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
    /// Find (and with --fix repair) local/btrfs duplicate volumes and stale sockets
    Doctor {
        #[arg(long)]
        fix: bool,
    },
    /// SSH forced command: serve a peer's request (see authorized_keys)
    #[command(hide = true)]
    SshCommand,
    /// Show a volume's options, labels, non-migrable flag and snapshots
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// A CLI failure: printed on stderr, exit status 1.
struct Failure(String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Connect { .. } => Failure(format!(
                "Failed to connect to Buttervolume ({e}). You can start it with: buttervolume run"
            )),
            other => Failure(other.to_string()),
        }
    }
}

pub fn main(args: Cli) -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => return fail(Failure(e.to_string())),
    };
    init_logging(&config);
    let Some(verb) = args.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    match verb {
        Verb::Run { sshd } => {
            crate::daemon::close_inherited_fds();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime starts");
            match runtime.block_on(crate::daemon::run(config, sshd)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(Failure(e.to_string())),
            }
        }
        Verb::Doctor { fix } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime starts");
            match runtime.block_on(crate::doctor::run(&config, fix)) {
                Ok(findings) if findings.is_empty() => {
                    println!("no problem found");
                    ExitCode::SUCCESS
                }
                Ok(findings) => {
                    for f in findings {
                        println!(
                            "{}
  -> {}",
                            f.problem, f.action
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(Failure(e)),
            }
        }
        Verb::SshCommand => ExitCode::from(crate::replication::forced_command::run(&config) as u8),
        Verb::Init { loop_size } => match crate::init::init(&config, &loop_size) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(Failure(e.to_string())),
        },
        verb => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime starts");
            match runtime.block_on(client_verb(&config, verb)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(f) => fail(f),
            }
        }
    }
}

fn fail(f: Failure) -> ExitCode {
    eprintln!("ERROR:root:{}", f.0);
    ExitCode::FAILURE
}

fn init_logging(config: &Config) {
    let level = match config.loglevel.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
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

/// Calls the daemon; a non-empty `Err` becomes a failure.
async fn call(
    socket: &std::path::Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let (_, reply) = client::request(socket, method, path, body.as_ref(), CLI_TIMEOUT).await?;
    match reply.get("Err").and_then(Value::as_str) {
        Some(err) if !err.is_empty() => Err(Failure(err.to_string())),
        _ => Ok(reply),
    }
}

fn print_field(reply: &Value, key: &str) {
    if let Some(s) = reply
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        println!("{s}");
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

async fn client_verb(config: &Config, verb: Verb) -> Result<(), Failure> {
    let socket = discover_socket(config).await;
    let post = |path: &'static str, body: Value| call(&socket, Method::POST, path, Some(body));
    match verb {
        Verb::Snapshot { name } => {
            let reply = post("/VolumeDriver.Snapshot", json!({ "Name": name })).await?;
            print_field(&reply, "Snapshot");
        }
        Verb::Snapshots { name, json } => {
            let path = match &name {
                Some(n) => format!("/VolumeDriver.Snapshot.List/{n}"),
                None => "/VolumeDriver.Snapshot.List".to_string(),
            };
            let reply = call(&socket, Method::GET, &path, None).await?;
            let snapshots = reply.get("Snapshots").cloned().unwrap_or(json!([]));
            if json {
                print_json(&snapshots);
            } else if let Some(list) = snapshots.as_array() {
                for s in list.iter().filter_map(Value::as_str) {
                    println!("{s}");
                }
            }
        }
        Verb::Schedule {
            action,
            timer,
            name,
        } => {
            post(
                "/VolumeDriver.Schedule",
                json!({ "Name": name, "Action": action, "Timer": timer }),
            )
            .await?;
        }
        Verb::Scheduled {
            action,
            verbose,
            json,
        } => match action.as_str() {
            "pause" => {
                post("/VolumeDriver.Schedule.Pause", json!({})).await?;
            }
            "resume" => {
                post("/VolumeDriver.Schedule.Resume", json!({})).await?;
            }
            _ => {
                let reply = call(&socket, Method::GET, "/VolumeDriver.Schedule.List", None).await?;
                let jobs = reply.get("Schedule").cloned().unwrap_or(json!([]));
                if json {
                    print_json(&jobs);
                } else {
                    print_schedule(&jobs, verbose);
                }
                // Lines of schedule.csv the scheduler skips: on stderr, so
                // stdout stays the reference's.
                for bad in reply
                    .get("Invalid")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    eprintln!(
                        "WARNING: schedule line {} skipped ({}): {}",
                        bad.get("Line").and_then(Value::as_u64).unwrap_or(0),
                        bad.get("Error").and_then(Value::as_str).unwrap_or(""),
                        bad.get("Text").and_then(Value::as_str).unwrap_or("")
                    );
                }
            }
        },
        Verb::Restore {
            name,
            target,
            force,
        } => {
            let mut body = json!({ "Name": name, "Target": target });
            if force {
                body["Force"] = json!(true);
            }
            let reply = post("/VolumeDriver.Snapshot.Restore", body).await?;
            print_field(&reply, "VolumeBackup");
        }
        Verb::Clone { name, target } => {
            let Some(target) = target else {
                return Err(Failure("clone needs a target volume name".into()));
            };
            let reply = post(
                "/VolumeDriver.Clone",
                json!({ "Name": name, "Target": target }),
            )
            .await?;
            print_field(&reply, "VolumeCloned");
        }
        Verb::Send {
            host,
            snapshot,
            compress,
            bwlimit,
        } => {
            let mut body = json!({ "Name": snapshot, "Host": host });
            if compress {
                body["Compress"] = json!(true);
            }
            if let Some(limit) = bwlimit {
                body["BwLimit"] = json!(limit);
            }
            let reply = post("/VolumeDriver.Snapshot.Send", body).await?;
            if let Some(summary) = reply.get("Summary").and_then(Value::as_str) {
                eprintln!("{summary}");
            }
        }
        Verb::Receive {
            ref host,
            ref volume,
        }
        | Verb::Replicate {
            ref host,
            ref volume,
        } => {
            let path = if matches!(verb, Verb::Receive { .. }) {
                "/VolumeDriver.Snapshot.Receive"
            } else {
                "/VolumeDriver.Replicate"
            };
            let reply = post(path, json!({ "Name": volume, "Host": host })).await?;
            if let Some(summary) = reply.get("Summary").and_then(Value::as_str) {
                eprintln!("{summary}");
            }
            print_field(&reply, "Snapshot");
        }
        Verb::Sync { volume, hosts } => {
            post(
                "/VolumeDriver.Volume.Sync",
                json!({ "Volumes": [volume], "Hosts": hosts }),
            )
            .await?;
        }
        Verb::Rm { name } => {
            post("/VolumeDriver.Snapshot.Remove", json!({ "Name": name })).await?;
        }
        Verb::Purge {
            pattern,
            name,
            dryrun,
        } => {
            let reply = post(
                "/VolumeDriver.Snapshots.Purge",
                json!({ "Name": name, "Pattern": pattern, "Dryrun": dryrun }),
            )
            .await?;
            if dryrun {
                if let Some(list) = reply.get("Purged").and_then(Value::as_array) {
                    for s in list.iter().filter_map(Value::as_str) {
                        println!("{s}");
                    }
                }
            }
        }
        Verb::Inspect { name, json } => {
            let reply = post("/VolumeDriver.Inspect", json!({ "Name": name })).await?;
            let volume = reply.get("Volume").cloned().unwrap_or(json!({}));
            if json {
                print_json(&volume);
            } else {
                print_inspect(&volume);
            }
        }
        Verb::Run { .. } | Verb::Init { .. } | Verb::SshCommand | Verb::Doctor { .. } => {
            unreachable!("handled by main")
        }
    }
    Ok(())
}

/// `<action> <timer> <name> ` lines, `(paused)` after paused jobs: the
/// reference's exact format, trailing space included.
fn print_schedule(jobs: &Value, verbose: bool) {
    let Some(jobs) = jobs.as_array() else { return };
    for job in jobs {
        let field = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let paused = if field("Active") == "False" {
            "(paused)"
        } else {
            ""
        };
        let mut line = format!(
            "{} {} {} {}",
            field("Action"),
            field("Timer"),
            field("Name"),
            paused
        );
        if verbose {
            let took = job
                .get("LastDurationMs")
                .and_then(Value::as_u64)
                .map(|ms| format!(" ({ms} ms)"))
                .unwrap_or_default();
            let running = if job.get("Running").and_then(Value::as_bool) == Some(true) {
                "  (running)"
            } else {
                ""
            };
            line = format!(
                "{line}\n    next: {}  last: {}  result: {}{took}{running}",
                or_dash(field("NextRun")),
                or_dash(field("LastRun")),
                or_dash(field("LastResult"))
            );
        }
        println!("{line}");
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn print_inspect(volume: &Value) {
    let text = |k: &str| {
        volume.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    for key in [
        "Name",
        "Mountpoint",
        "CreatedAt",
        "NonMigrable",
        "Options",
        "Labels",
        "Snapshots",
        "LatestSnapshot",
        "Mounts",
    ] {
        if let Some(value) = text(key) {
            println!("{key}: {value}");
        }
    }
}
