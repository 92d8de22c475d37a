//! Cluster mode: one writer per replicated volume, held on etcd, with
//! failover to the freshest replica when the owner dies and the old owner
//! fenced. Off unless `ETCD_ENDPOINTS` is set (pair mode, unchanged).
//!
//! The owner of a volume and its epoch (the fencing token, grows at every
//! change of owner) are one etcd record ([`records`]), changed only by
//! compare-and-swap transactions. Each node holds one lease, kept alive
//! once for all its volumes ([`watchdog`]); its alive key dies with it.
//!
//! - **Mount** ([`Cluster::claim`], rule in [`rule::claim`]): a free or
//!   released volume is taken (next epoch); one owned here stays (a
//!   restart keeps it); one mounted by a live owner is refused; one
//!   mounted by an owner whose lease expired is taken over, unless the
//!   owner answers over the pair's SSH or this node promised it not to.
//! - **Unmount** releases it (after the follow's final send).
//! - **Fencing** ([`watchdog`]): an owner that heard neither from etcd nor
//!   from its peer for `OWNER_TTL - margin` makes its volumes read-only.
//!
//! ## Why there are never two writers
//!
//! A takeover of O's volume by P needs, at the moment of P's etcd
//! transaction, (1) O's alive key gone: O's lease expired, which is at
//! least `OWNER_TTL` after the last keep-alive O sent that etcd confirmed;
//! (2) O silent over SSH to P's bounded check; (3) P's promise to O
//! over: P did not answer a ping of O within the last `OWNER_TTL` (every
//! answer promises exactly that, [`ping`]); and (4) P is O's pair peer,
//! the one node O pings (the `peer` of O's owner record), or O has none
//! (then O has no failsafe and fences as soon as etcd is silent). With
//! more than two storage nodes, a third node's takeover is refused: O
//! may be writing on through its peer's answers. O fences at the latest
//! `OWNER_TTL - margin` after the later of its last confirmed keep-alive
//! and its last answered ping (both measured from when O *sent* them, so
//! before etcd or P saw them). Hence O is read-only before (1) and (3) can
//! both hold: before any takeover. Each cut link, taken alone or together:
//!
//! | cut | owner O | peer P |
//! |---|---|---|
//! | O–etcd | P answers its pings: writes on (failsafe) | O's lease expires, but O answers P's check and P promised: no takeover |
//! | O–P | etcd keeps O's lease: writes on | O's lease lives: Mount refused |
//! | P–etcd | writes on | no transaction possible: no takeover |
//! | O–etcd, O–P | fences at `TTL - margin` | takes over after the lease expired, the promise ran out and the check failed |
//! | O–etcd, P–etcd | pings answered: writes on | no takeover without etcd |
//! | O–P, P–etcd | etcd keeps O's lease: writes on | no takeover |
//! | all | fences | no takeover |
//!
//! A ping's answer also lists the epochs P knows: an O that learns there
//! that P took a volume over fences it at once. O unfences only when etcd
//! confirms it still owns the volume at its epoch, after its alive key
//! exists again (so a concurrent takeover transaction, which compares that
//! key's absence, either came first and O sees it, or fails). A node back
//! with a stale epoch keeps the volume read-only, keeps what it wrote as a
//! diverged snapshot ([`local`]), never pushes it (its sends are refused
//! here and by the receiver, which compares the sender's `--epoch`), and
//! serves as the passive node.

mod claim;
pub mod etcd;
pub mod failover;
pub mod local;
pub mod mount;
pub mod ping;
mod push;
pub mod records;
pub mod report;
pub mod rule;
pub mod watchdog;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, Config};
use etcd::{Etcd, EtcdError};
use local::Local;
use records::OwnerRecord;

pub use push::admit_push;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{volume} is owned by {owner} since {since}, with a container using it, and {owner} is alive: stop the app there first (or use handover)")]
    OwnedElsewhere {
        volume: String,
        owner: String,
        since: String,
    },
    #[error("{volume} is owned by {owner}, whose etcd lease expired, but {owner} still answers here over SSH: it lost etcd, not its data; not taking it over")]
    OwnerAnswers { volume: String, owner: String },
    #[error("{volume} is owned by {owner}, whose etcd lease expired and which does not answer, but only its pair peer {peer} may take it over ({owner} keeps writing without etcd while {peer} answers it): mount it on {peer}")]
    NotPeer {
        volume: String,
        owner: String,
        peer: String,
    },
    #[error("cannot reach etcd to take ownership of {volume} ({source}); a takeover needs etcd's quorum")]
    Etcd {
        volume: String,
        source: Box<EtcdError>,
    },
    #[error("{volume}: another node changed its owner at the same time; try again")]
    Raced { volume: String },
    #[error("{volume} is owned by {owner} (epoch {epoch}), which took it over while this node was cut off: this node's writes since are kept as a diverged snapshot; the mount is refused")]
    Stale {
        volume: String,
        owner: String,
        epoch: u64,
    },
    #[error("{volume}: the freshest replica here is {lag}s older than {owner}'s last snapshot, more than MAX_LAG_ON_FAILOVER ({max}s): not taking it over")]
    TooStale {
        volume: String,
        owner: String,
        lag: i64,
        max: u64,
    },
    #[error("{volume} is owned by {owner} (epoch {epoch}): this node may not push it")]
    NotOwner {
        volume: String,
        owner: String,
        epoch: u64,
    },
    #[error("{volume} is fenced here (read-only until etcd confirms this node still owns it): it is not pushed meanwhile")]
    Fenced { volume: String },
    #[error("cluster mode: {0}")]
    Io(#[from] std::io::Error),
}

/// What a first Mount got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Owned here already: `mounted` when etcd still shows it in use here
    /// (a restart: the state here is the newest); else released here or
    /// handed here by `handover` (the peer may hold a newer state).
    Mine { mounted: bool },
    /// Taken (free or released), epoch given; a `from` node released it.
    Taken { epoch: u64, from: Option<String> },
    /// Taken over from a dead owner: restore the freshest replica here.
    TookOver { epoch: u64, from: String },
}

/// The liveness figures the watchdog keeps (and `status` shows).
#[derive(Debug)]
pub struct Liveness {
    pub lease: Option<i64>,
    /// When the last keep-alive that etcd confirmed was sent.
    pub etcd_ok: Instant,
    /// When the lease was granted.
    pub lease_since: Option<Instant>,
    /// Per peer host: when the last ping it answered was sent.
    pub peer_ok: std::collections::BTreeMap<String, Instant>,
}

/// Cluster mode's state for one node (held by the store).
pub struct Cluster {
    /// Held while this daemon lives ([`local::DaemonLock`]).
    _daemon_lock: local::DaemonLock,
    pub node: String,
    pub ttl: Duration,
    pub(crate) max_lag: u64,
    /// This node's names, to know an owner record's `peer` is this node.
    me: crate::schedule::SelfHost,
    etcd: Etcd,
    local: Local,
    runtime: tokio::runtime::Handle,
    ssh: crate::replication::transport::SshSettings,
    liveness: Mutex<Liveness>,
    takeovers: std::sync::atomic::AtomicU64,
    /// The replica record key last written per volume by this process.
    replicas_put: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Cluster {
    /// Cluster mode when `ETCD_ENDPOINTS` is set. Must run inside the
    /// daemon's runtime.
    pub async fn start(config: &Config) -> Result<Option<Cluster>, EtcdError> {
        let settings: &ClusterConfig = &config.cluster;
        if settings.endpoints.is_empty() {
            return Ok(None);
        }
        let etcd = Etcd::connect(&settings.endpoints).await?;
        let local = Local::of(config);
        local.set_identity(&settings.node_name)?;
        let daemon_lock = local.hold_daemon_lock()?;
        Ok(Some(Cluster {
            _daemon_lock: daemon_lock,
            node: settings.node_name.clone(),
            ttl: Duration::from_secs(settings.owner_ttl_secs),
            max_lag: settings.max_lag_secs,
            me: crate::schedule::SelfHost::node(&settings.node_name),
            etcd,
            local,
            runtime: tokio::runtime::Handle::current(),
            ssh: crate::replication::transport::SshSettings::of(config),
            liveness: Mutex::new(Liveness {
                lease: None,
                etcd_ok: Instant::now(),
                lease_since: None,
                peer_ok: Default::default(),
            }),
            replicas_put: Default::default(),
            takeovers: Default::default(),
        }))
    }

    pub fn local(&self) -> &Local {
        &self.local
    }

    pub fn ssh(&self) -> &crate::replication::transport::SshSettings {
        &self.ssh
    }

    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    pub fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn replicas_put(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, String>> {
        self.replicas_put.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs an etcd call from blocking code (the handlers' blocking
    /// threads).
    pub(crate) fn wait<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(fut)
    }

    fn record(&self, epoch: u64, mounted: bool, peer: &str, how: String) -> OwnerRecord {
        OwnerRecord {
            node: self.node.clone(),
            epoch,
            since: records::now(),
            mounted,
            peer: peer.into(),
            how,
        }
    }

    /// The last Unmount here: the volume is released for a Mount
    /// elsewhere. An etcd outage leaves it held (logged): a Mount
    /// elsewhere then waits for this node's lease, or fails over.
    pub fn release(&self, volume: &str) {
        let result = self.wait(async {
            let Some(seen) = self.etcd.owner(volume).await? else {
                return Ok(false);
            };
            if seen.record.node != self.node || !seen.record.mounted {
                return Ok(false);
            }
            let mut new = seen.record.clone();
            new.mounted = false;
            let won = self
                .etcd()
                .swap_owner(volume, Some(seen.mod_revision), None, &new)
                .await?;
            if won {
                let _ = self.local.learn(volume, &new);
            }
            Ok::<_, EtcdError>(won)
        });
        if let Err(e) = result {
            tracing::warn!(volume, error = %e, "could not release the volume in etcd");
        }
    }

    /// Hands `volume` to `node` (handover's final phase): next epoch, not
    /// mounted, so `node`'s Mount takes it at once.
    pub fn hand_to(&self, volume: &str, node: &str) -> Result<u64, ClusterError> {
        let etcd_err = |source| ClusterError::Etcd {
            volume: volume.into(),
            source: Box::new(source),
        };
        let seen = self.wait(self.etcd.owner(volume)).map_err(etcd_err)?;
        if let Some(s) = &seen {
            if s.record.node != self.node {
                return Err(ClusterError::NotOwner {
                    volume: volume.into(),
                    owner: s.record.node.clone(),
                    epoch: s.record.epoch,
                });
            }
        }
        let epoch = seen.as_ref().map_or(0, |s| s.record.epoch) + 1;
        let new = OwnerRecord {
            node: node.into(),
            epoch,
            since: records::now(),
            mounted: false,
            peer: String::new(),
            how: format!("handed over by {}", self.node),
        };
        let revision = seen.as_ref().map(|s| s.mod_revision);
        let won = self
            .wait(self.etcd.swap_owner(volume, revision, None, &new))
            .map_err(etcd_err)?;
        if !won {
            return Err(ClusterError::Raced {
                volume: volume.into(),
            });
        }
        self.local.learn(volume, &new)?;
        Ok(epoch)
    }

    /// Makes a fenced volume writable again and forgets the fence (this
    /// node owns it again, etcd said so).
    pub fn unfence(
        &self,
        store: &crate::volumes::VolumeStore,
        volume: &str,
    ) -> Result<(), ClusterError> {
        if let Ok(path) = store.existing(volume) {
            store
                .fs()
                .set_read_only(&path, false)
                .map_err(std::io::Error::other)?;
        }
        self.local.set_fenced(volume, false)?;
        Ok(())
    }

    /// Refuses when the newest owner record known here names another node
    /// (this node was fenced and another took the volume over).
    pub fn still_owner(&self, volume: &str) -> Result<(), ClusterError> {
        match self.local.owner(volume) {
            Some(r) if r.node != self.node => Err(ClusterError::Stale {
                volume: volume.into(),
                owner: r.node,
                epoch: r.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// The epoch a push of `volume` from here carries; refused when
    /// another node owns it (a node back with a stale epoch never pushes
    /// its diverged state). `None`: no owner record known.
    pub fn push_epoch(&self, volume: &str) -> Result<Option<u64>, ClusterError> {
        match self.local.owner(volume) {
            None => Ok(None),
            Some(r) if r.node == self.node && self.local.is_fenced(volume) => {
                Err(ClusterError::Fenced {
                    volume: volume.into(),
                })
            }
            Some(r) if r.node == self.node => Ok(Some(r.epoch)),
            Some(r) => Err(ClusterError::NotOwner {
                volume: volume.into(),
                owner: r.node,
                epoch: r.epoch,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
