//! A first Mount's ownership of a volume: the rule ([`super::rule::claim`])
//! applied to etcd's owner record, the wait for a silent owner's lease,
//! the owner's check over SSH, the pull of a newer replica before a
//! takeover, and the compare-and-swap transaction that makes it so.

use std::time::{Duration, Instant};

use super::records::{self, OwnerRecord};
use super::rule::{self, Claim};
use super::{failover, ping, Claimed, Cluster, ClusterError};

impl Cluster {
    /// The first Mount of `volume` here, which replicates to `peers` (the
    /// first is its pair peer). Blocking. A volume mounted by an owner
    /// whose lease still lives but who does not answer over SSH (its
    /// daemon died: its forced command fenced it; or its node is gone) is
    /// waited for, up to `OWNER_TTL` and a second, and taken over once the
    /// lease expired. An etcd error is tried again up to the same
    /// deadline (a leader election after a member died).
    pub fn claim(
        &self,
        store: &crate::volumes::VolumeStore,
        volume: &str,
        peers: &[String],
    ) -> Result<Claimed, ClusterError> {
        let peer = peers.first().map(String::as_str);
        let deadline = Instant::now() + self.ttl + Duration::from_secs(1);
        let mut silent: Option<String> = None;
        loop {
            match self.claim_once(store, volume, peers, silent.as_deref()) {
                // Without a pair peer to check the owner through, a
                // refusal is final.
                Err(ClusterError::OwnedElsewhere { owner, .. })
                    if peer.is_some()
                        && silent.as_deref() != Some(owner.as_str())
                        && !ping::answers_any(self, peers, &owner) =>
                {
                    tracing::info!(
                        volume,
                        owner,
                        "the owner does not answer: waiting for its lease to expire"
                    );
                    silent = Some(owner);
                }
                Err(ClusterError::OwnedElsewhere { .. })
                    if silent.is_some() && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                // etcd electing a leader (a member just died with its
                // node) answers errors for a moment: tried again until
                // the same deadline, then the error is the Mount's.
                Err(ClusterError::Etcd { volume, source }) if Instant::now() < deadline => {
                    tracing::debug!(volume, error = %source, "etcd failed: trying again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// One evaluation of the rule; `silent` is an owner this Mount already
    /// checked over SSH without an answer.
    fn claim_once(
        &self,
        store: &crate::volumes::VolumeStore,
        volume: &str,
        peers: &[String],
        silent: Option<&str>,
    ) -> Result<Claimed, ClusterError> {
        let peer_host = peers.first().map_or("", String::as_str);
        let etcd_err = |source| ClusterError::Etcd {
            volume: volume.into(),
            source: Box::new(source),
        };
        let seen = match self.wait(self.etcd.owner(volume)) {
            Ok(seen) => seen,
            // Failsafe: a volume owned here, not fenced, stays mountable
            // while etcd is away (a restart during an etcd outage).
            Err(e) => {
                let mine = self.local.owner(volume).filter(|r| r.node == self.node);
                return match mine {
                    Some(r) if !self.local.is_fenced(volume) => {
                        Ok(Claimed::Mine { mounted: r.mounted })
                    }
                    _ => Err(etcd_err(e)),
                };
            }
        };
        let record = seen.as_ref().map(|v| &v.record);
        if let Some(r) = record {
            self.local.learn(volume, r)?;
        }
        let owner_alive = match record {
            Some(r) if r.node != self.node && r.mounted => {
                self.wait(self.etcd.alive(&r.node)).map_err(etcd_err)?
            }
            _ => true,
        };
        let epoch = record
            .map_or(0, |r| r.epoch)
            .max(self.local.owner(volume).map_or(0, |r| r.epoch));
        let revision = seen.as_ref().map(|v| v.mod_revision);
        let swap = |new: &OwnerRecord, dead: Option<&str>| -> Result<(), ClusterError> {
            let won = self
                .wait(self.etcd.swap_owner(volume, revision, dead, new))
                .map_err(etcd_err)?;
            if !won {
                return Err(ClusterError::Raced {
                    volume: volume.into(),
                });
            }
            self.local.learn(volume, new)?;
            Ok(())
        };
        let me = self.me.look();
        match rule::claim(record, &self.node, owner_alive, |host| me.names(host)) {
            Claim::Mine => {
                let r = record.expect("Mine has a record");
                if !r.mounted {
                    let mut new = r.clone();
                    new.mounted = true;
                    new.peer = peer_host.into();
                    swap(&new, None)?;
                }
                Ok(Claimed::Mine { mounted: r.mounted })
            }
            Claim::Take { from } => {
                let how = match &from {
                    Some(node) => format!("took {volume} from {node} (released)"),
                    None => format!("took {volume} (free)"),
                };
                swap(&self.record(epoch + 1, true, peer_host, how), None)?;
                Ok(Claimed::Taken {
                    epoch: epoch + 1,
                    from,
                })
            }
            Claim::Refuse { owner, since } => Err(ClusterError::OwnedElsewhere {
                volume: volume.into(),
                owner,
                since: records::format_time(since),
            }),
            Claim::NotPeer { owner, peer } => Err(ClusterError::NotPeer {
                volume: volume.into(),
                owner,
                peer,
            }),
            Claim::Failover { from } => {
                let promised = self.local.since_promise(&from);
                let answers =
                    silent != Some(from.as_str()) && ping::answers_any(self, peers, &from);
                if !rule::promise_over(self.ttl, promised) || answers {
                    return Err(ClusterError::OwnerAnswers {
                        volume: volume.into(),
                        owner: from,
                    });
                }
                let pulled = failover::pull_newer(self, store, volume, &from, peers);
                let mut how = failover::check_lag(self, store, volume, &from)?;
                if let Some(pulled) = pulled {
                    how = format!("{how} ({pulled})");
                }
                swap(
                    &self.record(epoch + 1, true, peer_host, how.clone()),
                    Some(&from),
                )?;
                self.takeovers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(volume, from, epoch = epoch + 1, "{how}");
                Ok(Claimed::TookOver {
                    epoch: epoch + 1,
                    from,
                })
            }
        }
    }
}
