//! Client verbs on this node's volumes and snapshots: snapshot, list,
//! restore, clone, remove, purge, inspect.

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{name, Daemon};
use super::{print, Failure};
use crate::api::{self, path};

#[derive(Subcommand, Debug)]
pub enum LocalVerb {
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
    /// Delete a snapshot
    Rm { name: String },
    /// Purge old snapshots using a purge pattern (e.g. 4h:1d:1w, 1h/24:1d/7)
    Purge {
        pattern: String,
        name: String,
        /// Don't really purge but tell what would be deleted
        #[arg(long)]
        dryrun: bool,
        /// Print every snapshot, kept or deleted, and why
        #[arg(long)]
        explain: bool,
        /// Evaluate the pattern as of this time (DTFORMAT, like a snapshot
        /// name's date); only with --dryrun
        #[arg(long, requires = "dryrun")]
        at: Option<String>,
        /// Print JSON (the Explain entries with --explain, else the list)
        #[arg(long)]
        json: bool,
    },
    /// Show every volume's snapshots, replication to peers, jobs and the
    /// problems (first)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Cluster mode: show a volume's owner, epoch and lease, and whether
    /// it is fenced or keeps a diverged state here
    Owner {
        name: String,
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

pub async fn run(daemon: &Daemon, verb: LocalVerb) -> Result<(), Failure> {
    match verb {
        LocalVerb::Snapshot { name, if_changed } => {
            let request = api::SnapshotRequest { name, if_changed };
            let reply: api::SnapshotReply = daemon.post(path::SNAPSHOT, request).await?;
            print::line(&reply.snapshot);
        }
        LocalVerb::Snapshots { name, json } => {
            let path = match &name {
                Some(n) => format!("{}/{n}", path::SNAPSHOT_LIST),
                None => path::SNAPSHOT_LIST.to_string(),
            };
            let reply: api::SnapshotsReply = daemon.get(&path).await?;
            print::list(&reply.snapshots, json);
        }
        LocalVerb::Restore {
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
        LocalVerb::Clone { name, target } => {
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
        LocalVerb::Rm { name: snapshot } => {
            daemon
                .post::<Value>(path::SNAPSHOT_REMOVE, name(snapshot))
                .await?;
        }
        LocalVerb::Purge {
            pattern,
            name,
            dryrun,
            explain,
            at,
            json,
        } => {
            // The socket answers 3.13's bare "Invalid purge pattern": say
            // why here.
            crate::purge::Pattern::parse(&pattern)?;
            let request = api::PurgeRequest {
                name,
                pattern,
                dry_run: dryrun,
                explain,
                at,
            };
            let reply: api::PurgeReply = daemon.post(path::PURGE, request).await?;
            if let Some(entries) = reply.explain.filter(|_| explain) {
                if json {
                    print::json(&json!(entries));
                } else {
                    for entry in &entries {
                        println!("{}", crate::purge::explain::line(entry));
                    }
                }
            } else if dryrun {
                print::list(&reply.purged.unwrap_or_default(), json);
            }
        }
        LocalVerb::Status { json } => {
            super::status::print(&daemon.get(path::STATUS).await?, json);
        }
        LocalVerb::Owner { name: volume, json } => {
            let reply: crate::api::cluster::OwnerReply = daemon
                .post(crate::api::cluster::path::OWNER, name(volume))
                .await?;
            if json {
                print::json(&json!(reply));
            } else {
                print::owner(&reply);
            }
        }
        LocalVerb::Inspect { name: volume, json } => {
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
