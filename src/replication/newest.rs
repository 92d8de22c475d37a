//! The peer's newest snapshot of every volume, asked once per scheduler
//! round instead of once per volume.
//!
//! An idle round ([`crate::follow::prefetch`]) asks, for each replicated
//! volume no container uses here, whether the peer holds a state this node
//! lacks. Asked one volume at a time, 1,000 idle volumes cost 1,000 peer
//! commands a minute (a forked forced command each, on the peer) for an
//! answer that is almost always "nothing new". `list-newest` answers for
//! every volume in one command; the answer is kept for [`ROUND_WINDOW`],
//! so the other jobs of the round read it from memory. Concurrent jobs of
//! one round wait for the first one's question rather than each asking.
//!
//! Only a shortcut: "nothing new" is trusted for the round (a snapshot
//! that appears on the peer meanwhile is fetched by the next round, and a
//! Mount always asks afresh); anything else goes through the full pull
//! ([`super::pull::receive`]), which lists that volume again. A peer whose
//! forced command does not know the verb (an older release) is asked per
//! volume, as before. A peer that cannot be reached fails every idle job
//! of the round with the same error, after one attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::protocol::{ListedSnapshot, PeerRequest};
use super::transport::{self, SshSettings};
use super::ReplicationError;
use crate::volumes::VolumeStore;

/// How long one `list-newest` answer serves: the jobs of one round are
/// dispatched together and the shortest schedule period is a minute.
pub const ROUND_WINDOW: Duration = Duration::from_secs(10);

/// What the peer's listing says about one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Newest {
    /// The peer cannot say for all volumes at once: ask for this one.
    Unknown,
    /// The peer holds no snapshot of it.
    Nothing,
    /// Its newest pullable snapshot on the peer.
    Is(ListedSnapshot),
}

/// One peer's answer, by volume (`None`: the verb is unknown there), or why
/// there is none.
type Answer = Result<Option<Arc<HashMap<String, ListedSnapshot>>>, String>;

struct Asked {
    at: Instant,
    answer: Answer,
}

/// A peer's last answer. The inner lock is held while asking, so the jobs
/// of a round ask once.
type Slot = Arc<Mutex<Option<Asked>>>;

/// Peer → its last answer: one per store ([`VolumeStore::newest_answers`]).
#[derive(Default)]
pub struct Answers(Mutex<HashMap<String, Slot>>);

fn slot(store: &VolumeStore, host: &str) -> Slot {
    let mut answers = store
        .newest_answers()
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    answers.entry(host.to_string()).or_default().clone()
}

/// The peer's newest snapshot of `volume`, from this round's answer
/// (asking the peer when there is none yet).
pub fn of(store: &VolumeStore, host: &str, volume: &str) -> Result<Newest, ReplicationError> {
    let slot = slot(store, host);
    let mut asked = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let fresh = asked
        .as_ref()
        .is_some_and(|a| a.at.elapsed() < ROUND_WINDOW);
    if !fresh {
        let answer = ask(store, host);
        *asked = Some(Asked {
            at: Instant::now(),
            answer,
        });
    }
    let answer = &asked.as_ref().expect("just asked").answer;
    match answer {
        Ok(None) => Ok(Newest::Unknown),
        Ok(Some(newest)) => Ok(newest
            .get(volume)
            .map_or(Newest::Nothing, |n| Newest::Is(n.clone()))),
        Err(message) => Err(ReplicationError::Receive {
            volume: volume.into(),
            host: host.into(),
            message: format!("listing its snapshots failed: {message}"),
        }),
    }
}

/// Runs `list-newest` on the peer.
fn ask(store: &VolumeStore, host: &str) -> Answer {
    let run = || -> Result<Option<HashMap<String, ListedSnapshot>>, ReplicationError> {
        transport::check_host(host)?;
        let peer = store
            .sessions()
            .open(host, &SshSettings::of(store.config()))?;
        let reply = peer.run(&PeerRequest::ListNewest { test: false }.to_command())?;
        if reply.status != 0 {
            // An older forced command refuses the verb: ask per volume.
            return Ok(None);
        }
        let listed = ListedSnapshot::parse_listing(&reply.stdout).map_err(|source| {
            ReplicationError::Listing {
                host: host.into(),
                source,
            }
        })?;
        Ok(Some(index(listed)))
    };
    run().map(|n| n.map(Arc::new)).map_err(|e| e.to_string())
}

/// The peer's lines by volume. The peer is not trusted to have sent one
/// pullable line per valid volume: other lines are dropped, and of several
/// lines for one volume the newest in the peer's creation order is kept,
/// as the full pull would choose.
fn index(listed: Vec<ListedSnapshot>) -> HashMap<String, ListedSnapshot> {
    let mut newest: HashMap<String, ListedSnapshot> = HashMap::new();
    for line in listed.into_iter().filter(|l| l.pullable()) {
        let volume = crate::names::volume_of(&line.name).to_string();
        if crate::names::check_volume(&volume).is_err() {
            continue;
        }
        let newer = newest
            .get(&volume)
            .is_none_or(|kept| line.created > kept.created);
        if newer {
            newest.insert(volume, line);
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, created: Option<u64>) -> ListedSnapshot {
        ListedSnapshot::example(name, "u", None, created, &[])
    }

    #[test]
    fn the_index_keeps_the_newest_pullable_snapshot_of_each_volume() {
        let mut marker = listed("db@3@h", Some(9));
        marker.read_only = true;
        let mut writable = listed("db@4", Some(8));
        writable.read_only = false;
        let index = index(vec![
            listed("db@1", Some(2)),
            listed("db@2", Some(5)),
            marker,
            writable,
            listed("web@1", Some(1)),
            listed("../x@1", Some(7)),
        ]);
        assert_eq!(index["db"].name, "db@2");
        assert_eq!(index["web"].name, "web@1");
        assert_eq!(index.len(), 2);
    }
}
