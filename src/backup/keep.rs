//! `KEEP=<purge pattern>` in a target file: after each scheduled backup,
//! the volume's backups there are thinned with this plugin's purge rule
//! (each backup aged from its restic time), then `restic forget` by id and
//! `restic prune`. The newest backup of the volume is never deleted.

use chrono::NaiveDateTime;

use super::restic::{Restic, ResticSnapshot};
use super::{record, target, volume_tag, Result, TAG};
use crate::config::PurgeTimeframes;
use crate::volumes::VolumeStore;

/// Thins `volume`'s backups in `target_name` by its `KEEP` (nothing
/// without one); returns the ids forgotten.
pub fn thin(store: &VolumeStore, target_name: &str, volume: &str) -> Result<Vec<String>> {
    let target = target(store, target_name)?;
    let Some(pattern) = target.keep.clone() else {
        return Ok(Vec::new());
    };
    let restic = Restic::new(&target, store.config());
    let list = restic.snapshots(&[TAG.to_string(), volume_tag(volume)])?;
    let timeframes = store.config().purge_timeframes;
    let doomed = to_forget(
        &list,
        &pattern,
        timeframes,
        chrono::Local::now().naive_local(),
    );
    if !doomed.is_empty() {
        tracing::info!(target = %target.name, volume, count = doomed.len(), "forgetting backups (KEEP)");
        restic.forget_and_prune(&doomed)?;
        record::forget(&store.config().state_path, &target.name, &doomed);
    }
    Ok(doomed)
}

/// The purge rule on backups (oldest first, as listed): the ids to forget,
/// never the newest. The one place that calls into [`crate::purge`].
pub fn to_forget(
    list: &[ResticSnapshot],
    pattern: &str,
    timeframes: PurgeTimeframes,
    now: NaiveDateTime,
) -> Vec<String> {
    let Ok(pattern) = crate::purge::Pattern::parse(pattern) else {
        return Vec::new();
    };
    let candidates: Vec<crate::purge::Candidate> = list
        .iter()
        .enumerate()
        .map(|(i, s)| crate::purge::Candidate {
            name: s.id.clone(),
            taken: Some(s.time.with_timezone(&chrono::Local).naive_local()),
            order: (0, i as u64),
            received: false,
        })
        .collect();
    let newest = list.last().map(|s| s.id.as_str());
    crate::purge::plan(&candidates, &pattern, timeframes, now)
        .into_iter()
        .filter(|id| Some(id.as_str()) != newest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, hours_ago: i64, now: chrono::DateTime<chrono::Local>) -> ResticSnapshot {
        ResticSnapshot {
            id: id.into(),
            time: (now - chrono::Duration::hours(hours_ago)).fixed_offset(),
            tags: vec![],
            paths: vec![],
        }
    }

    #[test]
    fn thins_by_age_and_keeps_the_newest() {
        let now = chrono::Local::now();
        // Hourly backups for 30 hours; keep hourly for 1d, daily for 1w.
        let list: Vec<ResticSnapshot> = (0..30)
            .rev()
            .map(|h| snap(&format!("id{h:02}"), h, now))
            .collect();
        let gone = to_forget(&list, "1h:1d:1w", PurgeTimeframes::Age, now.naive_local());
        assert!(!gone.is_empty());
        assert!(!gone.contains(&"id00".to_string()));
        // Within the first day nothing goes.
        assert!(
            gone.iter().all(|id| id[2..].parse::<i64>().unwrap() > 23),
            "{gone:?}"
        );
        // Older than the longest part: everything goes but the newest.
        let old: Vec<ResticSnapshot> = (0..3)
            .rev()
            .map(|i| snap(&format!("o{i}"), 24 * 400 + i, now))
            .collect();
        let mut gone = to_forget(&old, "1h:1d", PurgeTimeframes::Age, now.naive_local());
        gone.sort();
        assert_eq!(gone, vec!["o1".to_string(), "o2".to_string()]);
    }
}
