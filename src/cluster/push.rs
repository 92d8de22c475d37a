//! The receiving end of a push in cluster mode: the forced command admits
//! a snapshot of a volume only from a sender whose `--epoch` is not older
//! than the epoch this node knows ([`super::local`]); the sending end is
//! [`super::Cluster::push_epoch`].

use super::local::Local;
use crate::config::Config;

/// Whether a push of a snapshot of `volume` carrying `epoch` may land here
/// (the receiving forced command): refused when this node knows a newer
/// epoch of the volume. Pair mode (no owner record here) admits anything.
pub fn admit_push(config: &Config, volume: &str, epoch: Option<u64>) -> Result<(), String> {
    let Some(known) = Local::of(config).owner(volume) else {
        return Ok(());
    };
    match epoch {
        Some(e) if e >= known.epoch => Ok(()),
        Some(e) => Err(format!(
            "{volume}: the sender's epoch {e} is stale ({} owns it at epoch {}): push refused",
            known.node, known.epoch
        )),
        None => Err(format!(
            "{volume} is owned in cluster mode ({} at epoch {}): a push without an epoch is refused",
            known.node, known.epoch
        )),
    }
}
