//! Sessions kept between transfers, per peer: a scheduler round that lists,
//! sends or pulls many volumes of one peer connects once, not once per
//! volume (each connection is a TCP + key exchange + authentication, and
//! a process forked by the peer's sshd).
//!
//! One [`Sessions`] per store ([`crate::volumes::VolumeStore::sessions`]).
//! [`Sessions::open`] lends a session: a kept one if there is one for this peer and
//! these settings, else a new connection. Dropping the [`Lease`] gives it
//! back unless an error happened on it. A kept session is used by one
//! caller at a time (libssh2 sessions are not shared between threads
//! here), so concurrent transfers to one peer hold one session each, at
//! most the scheduler's workers plus the endpoints in flight. Sessions
//! idle for longer than [`IDLE_MAX`] are closed; one the peer closed
//! meanwhile is replaced on its first use ([`Peer`]).

use std::ops::Deref;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Peer, SshSettings, TransportError};

/// How long an unused session is kept.
const IDLE_MAX: Duration = Duration::from_secs(300);
/// Sessions kept per peer at most.
const KEEP_PER_PEER: usize = 4;

struct Kept {
    peer: Peer,
    since: Instant,
}

/// The sessions kept between transfers.
#[derive(Default)]
pub struct Sessions(Mutex<Vec<Kept>>);

/// A libssh2 session was opened (the metrics page counts them per peer;
/// reuse keeps the count low).
pub(super) fn count_opened(host: &str) {
    crate::metrics::record_session_opened(host);
}

impl Sessions {
    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session to `target` (`[user@]host`): a kept one, or a new one.
    pub fn open(&self, target: &str, settings: &SshSettings) -> Result<Lease<'_>, TransportError> {
        // Sessions are closed (a message to the peer) outside the lock.
        let mut expired = Vec::new();
        let reused = {
            let mut kept = self.kept();
            let mut i = 0;
            while i < kept.len() {
                if kept[i].since.elapsed() >= IDLE_MAX {
                    expired.push(kept.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            kept.iter()
                .position(|k| k.peer.target() == target && k.peer.settings() == settings)
                .map(|i| kept.swap_remove(i).peer)
        };
        drop(expired);
        let peer = match reused {
            Some(peer) => {
                peer.set_reused();
                peer
            }
            None => Peer::connect(target, settings)?,
        };
        Ok(Lease {
            sessions: self,
            peer: Some(peer),
        })
    }
}

/// A session lent by [`Sessions::open`]; given back when dropped, unless
/// broken.
pub struct Lease<'a> {
    sessions: &'a Sessions,
    peer: Option<Peer>,
}

impl Deref for Lease<'_> {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        self.peer
            .as_ref()
            .expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        if peer.is_broken() {
            return;
        }
        let mut kept = self.sessions.kept();
        let same = kept
            .iter()
            .filter(|k| k.peer.target() == peer.target())
            .count();
        if same < KEEP_PER_PEER {
            kept.push(Kept {
                peer,
                since: Instant::now(),
            });
        } else {
            drop(kept);
            drop(peer);
        }
    }
}
