//! Client verbs of the backups ([`crate::backup`]): `backup`, `backups`,
//! `restore-backup`, `check-backups`.

use clap::Subcommand;

use super::client::Daemon;
use super::{print, Failure};
use crate::api::backup::{
    path, BackupCheckReply, BackupCheckRequest, BackupListReply, BackupListRequest, BackupReply,
    BackupRequest, BackupRestoreReply, BackupRestoreRequest,
};

#[derive(Subcommand, Debug)]
pub enum BackupVerb {
    /// Back up a volume to a restic target; prints the snapshot and the restic snapshot id
    Backup { target: String, volume: String },
    /// List the backups in a restic target
    Backups {
        target: String,
        volume: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a volume's newest backup (or <volume>@<timestamp>) in place or into a new volume
    RestoreBackup {
        target: String,
        /// <volume> or <volume>@<timestamp>
        volume: String,
        new_volume: Option<String>,
    },
    /// Run restic's check on a target
    CheckBackups {
        target: String,
        /// Also read this part of the data (n% or n/t)
        #[arg(long)]
        read_data_subset: Option<String>,
    },
}

pub async fn run(daemon: &Daemon, verb: BackupVerb) -> Result<(), Failure> {
    match verb {
        BackupVerb::Backup { target, volume } => {
            let reply: BackupReply = daemon
                .post(
                    path::BACKUP,
                    BackupRequest {
                        target: target.clone(),
                        name: volume,
                    },
                )
                .await?;
            if reply.created {
                println!("{} {}", reply.snapshot, reply.id);
            } else {
                println!("{} {} (already in {target})", reply.snapshot, reply.id);
            }
        }
        BackupVerb::Backups {
            target,
            volume,
            json,
        } => {
            let reply: BackupListReply = daemon
                .post(
                    path::BACKUP_LIST,
                    BackupListRequest {
                        target,
                        name: volume,
                    },
                )
                .await?;
            if json {
                print::json(&serde_json::to_value(&reply).expect("replies serialize"));
            } else {
                println!(
                    "{:<24} {:<48} {:<10} {:<26} BYTES",
                    "VOLUME", "SNAPSHOT", "ID", "TIME"
                );
                for b in reply.backups {
                    let bytes = b.bytes.map_or_else(|| "-".to_string(), |n| n.to_string());
                    let short: String = b.id.chars().take(8).collect();
                    println!(
                        "{:<24} {:<48} {:<10} {:<26} {bytes}",
                        b.volume, b.snapshot, short, b.time
                    );
                }
            }
        }
        BackupVerb::RestoreBackup {
            target,
            volume,
            new_volume,
        } => {
            let reply: BackupRestoreReply = daemon
                .post(
                    path::BACKUP_RESTORE,
                    BackupRestoreRequest {
                        target,
                        name: volume,
                        new_name: new_volume,
                    },
                )
                .await?;
            println!("{}", reply.volume);
            if let Some(previous) = reply.volume_backup {
                println!("{previous}");
            }
        }
        BackupVerb::CheckBackups {
            target,
            read_data_subset,
        } => {
            let reply: BackupCheckReply = daemon
                .post(
                    path::BACKUP_CHECK,
                    BackupCheckRequest {
                        target,
                        read_data_subset,
                    },
                )
                .await?;
            println!("{}", reply.summary);
        }
    }
    Ok(())
}
