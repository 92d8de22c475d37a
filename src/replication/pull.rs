//! `receive <host> <volume>`: fetch the newest snapshot of a volume that a
//! peer holds (the other direction of a send). Restores nothing.
//!
//! 1. take the volume's activity lock (one receive, send, restore or remove
//!    of a volume at a time);
//! 2. ask the peer for its snapshots of the volume; a peer that cannot
//!    answer is an error, never "the peer has nothing";
//! 3. the peer's newest is the last in *its* btrfs creation order (never
//!    names or clocks); if a local snapshot already has its identity, done;
//! 4. the parent is the newest of the peer's older snapshots whose identity
//!    this node holds too (by UUID / received UUID); none: a full send;
//! 5. the peer streams it through its forced command (`buttervolume send`)
//!    and it lands here exactly like a pushed stream: confined and atomic
//!    ([`super::receive`]); a half-received leftover is never visible;
//! 6. the marker `<snapshot>@<host>` records that the peer has it (the next
//!    send's parent).

use std::time::Instant;

use super::protocol::{ListedSnapshot, PeerRequest};
use super::receive;
use super::transport::{self, Peer};
use super::ReplicationError;
use crate::names;
use crate::volumes::{Activity, VolumeStore};

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The snapshot now here (the peer's newest).
    pub snapshot: String,
    /// The parent of an incremental pull, `None` for a full one.
    pub parent: Option<String>,
    pub bytes: u64,
    pub seconds: f64,
    /// This node already had it: nothing moved.
    pub already_present: bool,
}

impl PullReport {
    pub fn summary(&self, host: &str) -> String {
        let snapshot = &self.snapshot;
        if self.already_present {
            return format!("{snapshot} from {host} is already here");
        }
        let how = match &self.parent {
            Some(p) => format!("incrementally from {p}"),
            None => "in full".to_string(),
        };
        format!(
            "received {snapshot} from {host} {how}: {:.1} MiB in {:.2} s",
            self.bytes as f64 / (1u64 << 20) as f64,
            self.seconds
        )
    }
}

/// Pulls the newest snapshot of `volume` from `host`. Blocking.
pub fn receive(
    store: &VolumeStore,
    host: &str,
    volume: &str,
) -> Result<PullReport, ReplicationError> {
    names::check_volume(volume)?;
    transport::check_host(host)?;
    names::check_marker_host(host)?;
    let config = store.config();
    let _held = store
        .hold(volume, Activity::Receive)
        .map_err(ReplicationError::Busy)?;
    let started = Instant::now();
    let fail = |message: String| ReplicationError::Receive {
        volume: volume.into(),
        host: host.into(),
        message,
    };

    let peer = Peer::connect(host, config.ssh_port, &config.ssh_dir)?;
    let list = PeerRequest::List {
        volume: volume.into(),
        test: false,
    };
    let listing = peer.run(&list.to_command())?;
    if listing.status != 0 {
        return Err(fail(format!(
            "it could not list its snapshots ({}): a buttervolume 3.13 peer cannot be received from",
            listing.stderr.trim()
        )));
    }
    let remote = ListedSnapshot::parse_listing(&listing.stdout)
        .map_err(|e| fail(format!("unreadable listing: {e}")))?;
    // Snapshots only (not markers), complete, in the peer's creation order.
    let mut snapshots: Vec<&ListedSnapshot> = remote
        .iter()
        .filter(|r| r.read_only && !names::is_marker(&r.name))
        .filter(|r| names::volume_of(&r.name) == volume)
        .collect();
    if snapshots.iter().any(|r| r.created.is_none()) {
        return Err(fail("its listing has no creation order".into()));
    }
    snapshots.sort_by_key(|r| r.created);
    let Some(newest) = snapshots.pop() else {
        return Err(fail(format!("it has no snapshot of {volume}")));
    };

    let local = crate::snapshots::by_creation(store.fs(), &config.snapshots_path, volume, false);
    let report = |parent, bytes, already_present| PullReport {
        snapshot: newest.name.clone(),
        parent,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        already_present,
    };
    if let Some(here) = local.iter().find(|p| newest.same_as(&p.identity)) {
        if here.name != newest.name {
            return Err(fail(format!(
                "its newest snapshot {} is {} here under another name",
                newest.name, here.name
            )));
        }
        return Ok(report(None, 0, true));
    }
    if config.snapshots_path.join(&newest.name).exists() {
        return Err(ReplicationError::Conflict {
            host: "this node".into(),
            name: newest.name.clone(),
        });
    }
    // The newest of its older snapshots that is here too.
    let parent = snapshots.iter().rev().find_map(|r| {
        local
            .iter()
            .find(|p| r.same_as(&p.identity))
            .map(|p| (r.name.clone(), receive::parent_key(&p.identity)))
    });
    let request = PeerRequest::Send {
        snapshot: newest.name.clone(),
        parent: parent.as_ref().map(|(name, _)| name.clone()),
        test: false,
    };
    let expected = parent.as_ref().map(|(_, key)| key.as_str());
    let (landed, output) = peer.pull(&request.to_command(), |stream| {
        receive::receive(&config.snapshots_path, stream, expected)
    })?;
    let landed = match landed {
        Ok(landed) if output.status == 0 => landed,
        Ok(_) => return Err(fail(format!("its send failed: {}", output.stderr.trim()))),
        Err(e) => {
            return Err(fail(format!("{e} ({})", output.stderr.trim())));
        }
    };
    if landed.name != newest.name {
        // The stream named another snapshot than the one asked for.
        if !landed.already_present {
            let _ = store.fs().delete(&config.snapshots_path.join(&landed.name));
        }
        return Err(fail(format!(
            "it sent {} instead of {}",
            landed.name, newest.name
        )));
    }
    super::send::record_marker(store, &landed.name, volume, host)?;
    Ok(report(
        parent.map(|(name, _)| name),
        landed.bytes,
        landed.already_present,
    ))
}
