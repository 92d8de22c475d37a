//! Client verbs that move data between nodes: send, replicate, receive,
//! sync.

use clap::Subcommand;
use serde_json::Value;

use super::client::Daemon;
use super::{print, progress, Failure};
use crate::api::{self, path};

#[derive(Subcommand, Debug)]
pub enum PeerVerb {
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
    /// Hand a volume over to another host: pre-sync while the app runs
    /// (prints `presynced`), then, once it is stopped, the final send
    /// (prints `handed-over` and the downtime-critical seconds)
    Handover { volume: String, host: String },
    /// Sync a volume from other host(s)
    Sync { volume: String, hosts: Vec<String> },
}

pub async fn run(daemon: &Daemon, verb: PeerVerb) -> Result<(), Failure> {
    match verb {
        PeerVerb::Send {
            host,
            snapshot,
            compress,
            bwlimit,
        } => {
            let request = api::SendRequest {
                name: snapshot.clone(),
                host: host.clone(),
                test: false,
                compress: compress.then_some(true),
                bwlimit,
                detail: true,
            };
            // Progress on a terminal's stderr while the daemon sends; the
            // one summary line at the end either way (stdout stays empty,
            // as with 3.13's send).
            let sent = daemon.post::<api::SummaryReply>(path::SNAPSHOT_SEND, request);
            let reply = progress::while_sending(daemon, &snapshot, &host, sent).await?;
            eprintln!("{}", reply.summary);
        }
        PeerVerb::Replicate { host, volume } => {
            peer_volume(daemon, path::REPLICATE, host, volume).await?;
        }
        PeerVerb::Receive { host, volume } => {
            peer_volume(daemon, path::SNAPSHOT_RECEIVE, host, volume).await?;
        }
        PeerVerb::Handover { volume, host } => {
            let request = api::PeerVolumeRequest { name: volume, host };
            let reply: api::HandoverReply = daemon.post(path::HANDOVER, request).await?;
            let critical = reply
                .critical_seconds
                .map(|s| format!(" in {s:.2} s"))
                .unwrap_or_default();
            eprintln!(
                "{}: {} ({} round(s), {} bytes{critical})",
                reply.phase, reply.snapshot, reply.rounds, reply.bytes
            );
            println!("{}", reply.phase);
        }
        PeerVerb::Sync { volume, hosts } => {
            let request = api::SyncRequest {
                volumes: vec![volume],
                hosts,
                test: false,
            };
            daemon.post::<Value>(path::SYNC, request).await?;
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
