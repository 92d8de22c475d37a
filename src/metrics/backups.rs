//! The backup figures of the metrics page, from `status`'s
//! ([`crate::api::backup::BackupStatus`] of each volume).

use super::exposition::{Exposition, Kind};
use crate::api::StatusReply;

pub(super) fn render(page: &mut Exposition, status: &StatusReply) {
    const LAST: &str = "buttervolume_backup_last_success_timestamp_seconds";
    page.family(
        LAST,
        Kind::Gauge,
        "When the volume's last backup to the restic target was made (Unix time); absent when never.",
    );
    for v in &status.volumes {
        for b in &v.backups {
            let at = b
                .time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let Some(at) = at {
                let labels = [("volume", v.name.as_str()), ("target", b.target.as_str())];
                page.sample(LAST, &labels, at.timestamp() as f64);
            }
        }
    }
    const BYTES: &str = "buttervolume_backup_bytes";
    page.family(
        BYTES,
        Kind::Gauge,
        "Bytes of the volume's files in its last backup to the target.",
    );
    for v in &status.volumes {
        for b in &v.backups {
            if let Some(bytes) = b.bytes {
                let labels = [("volume", v.name.as_str()), ("target", b.target.as_str())];
                page.sample(BYTES, &labels, bytes as f64);
            }
        }
    }
    const FAILING: &str = "buttervolume_backup_failing";
    page.family(
        FAILING,
        Kind::Gauge,
        "1 when the volume's last backup attempt to the target failed, else 0.",
    );
    for v in &status.volumes {
        for b in &v.backups {
            let labels = [("volume", v.name.as_str()), ("target", b.target.as_str())];
            page.sample(
                FAILING,
                &labels,
                f64::from(u8::from(b.last_error.is_some())),
            );
        }
    }
}
