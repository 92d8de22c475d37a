//! Retention purges: which snapshots a pattern like `1h:1d:1w:4w:1y` deletes.
//!
//! [`compute_purges`] is buttervolume 3.13's rule, quirks included, because
//! existing nodes' schedules rely on it and `tests/data/purge-vectors.json`
//! pins it: ages are whole seconds divided by 60 (a float), measured from
//! local naive time; the pattern is sorted into minutes `p0 < ... < pk`; for
//! each consecutive pair the snapshots aged between them are walked oldest
//! first and one per `p(i)`-wide timeframe is kept; anything older than `pk`
//! goes; names whose timestamp does not parse are skipped.
//!
//! [`plan`] adds what the reference lacks: the newest sent marker
//! `<vol>@<ts>@<host>` of each host, and the snapshot `<vol>@<ts>` it was
//! taken from, are never deleted, because they are the parents of the next
//! incremental send.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDateTime;

use crate::names::parse_timestamp;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PurgeError {
    #[error("Invalid purge pattern {0:?}: expected at least two parts like 1h:1d:4w, each a positive number followed by m, h, d, w or y")]
    Pattern(String),
}

/// A parsed pattern: durations in minutes, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    minutes: Vec<u64>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PurgeError> {
        let invalid = || PurgeError::Pattern(text.to_string());
        let mut minutes = text
            .split(':')
            .map(|part| {
                let unit = part.chars().last().ok_or_else(invalid)?;
                let factor = match unit {
                    'm' => 1,
                    'h' => 60,
                    'd' => 60 * 24,
                    'w' => 60 * 24 * 7,
                    'y' => 60 * 24 * 365,
                    _ => return Err(invalid()),
                };
                let digits = &part[..part.len() - 1];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let n: u64 = digits.parse().map_err(|_| invalid())?;
                match n.checked_mul(factor) {
                    Some(m) if m > 0 => Ok(m),
                    _ => Err(invalid()),
                }
            })
            .collect::<Result<Vec<u64>, PurgeError>>()?;
        if minutes.len() < 2 {
            return Err(invalid());
        }
        minutes.sort_unstable();
        Ok(Pattern { minutes })
    }
}

/// A snapshot as a purge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// When it was taken, for its age: the timestamp in its name, except
    /// for a name dated after now (a peer's clock ahead of ours, or a
    /// hostile name), which is aged from its creation time on this node.
    /// `None` (no timestamp in the name): never purged, as the reference.
    pub taken: Option<NaiveDateTime>,
    /// Its place in btrfs creation order, for "newest marker".
    pub order: (u64, u64),
}

/// The reference's rule on names alone. Returns the snapshots to delete,
/// sorted, without duplicates.
pub fn compute_purges(
    snapshots: &[String],
    pattern: &Pattern,
    now: NaiveDateTime,
    dtformat: &str,
) -> Vec<String> {
    let mut sorted: Vec<&String> = snapshots.iter().collect();
    sorted.sort();
    let aged: Vec<(&String, NaiveDateTime)> = sorted
        .into_iter()
        .filter_map(|name| {
            let stamp = crate::names::timestamp_of(name)?;
            Some((name, parse_timestamp(stamp, dtformat)?))
        })
        .collect();
    purges_by_age(&aged, pattern, now)
}

/// The reference's rule on (name, time taken), oldest first.
fn purges_by_age(
    taken: &[(&String, NaiveDateTime)],
    pattern: &Pattern,
    now: NaiveDateTime,
) -> Vec<String> {
    // (name, age in minutes), oldest first.
    let aged: Vec<(&String, f64)> = taken
        .iter()
        .map(|(name, taken)| {
            // Python: int((now - taken).total_seconds()) / 60 -- truncation
            // toward zero, then true division.
            let seconds = (now - *taken)
                .num_microseconds()
                .map_or_else(|| (now - *taken).num_seconds(), |us| us / 1_000_000);
            (*name, seconds as f64 / 60.0)
        })
        .collect();
    // Descending, as the reference walks it.
    let descending: Vec<f64> = pattern.minutes.iter().rev().map(|m| *m as f64).collect();
    let max_age = descending[0];
    let mut purged: Vec<&String> = Vec::new();
    for pair in descending.windows(2) {
        let (upper, lower) = (pair[0], pair[1]);
        let mut last_timeframe = -1.0_f64;
        for (name, age) in &aged {
            let age = *age;
            if (age > upper && upper < max_age) || age < lower {
                continue;
            }
            let timeframe = python_floordiv(age, lower);
            if timeframe == last_timeframe || age > max_age {
                purged.push(name);
            }
            last_timeframe = timeframe;
        }
    }
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> = purged
        .into_iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect();
    out.sort();
    out
}

/// Python's float `//`, which is not always `floor(a / b)`: it divides the
/// exact remainder out first, so results agree with the reference when
/// `a / b` rounds across an integer.
fn python_floordiv(a: f64, b: f64) -> f64 {
    let remainder = a % b;
    let mut div = (a - remainder) / b;
    if remainder != 0.0 && ((b < 0.0) != (remainder < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0.0;
    }
    let mut floor = div.floor();
    if div - floor > 0.5 {
        floor += 1.0;
    }
    floor
}

/// Snapshots that must survive any purge: for each host, the newest (in
/// creation order) sent marker `<vol>@<ts>@<host>` and the snapshot
/// `<vol>@<ts>` it marks.
pub fn protected(candidates: &[Candidate]) -> BTreeSet<String> {
    let mut newest: HashMap<&str, &Candidate> = HashMap::new();
    for candidate in candidates {
        if let Some(host) = crate::names::marker_host(&candidate.name) {
            let entry = newest.entry(host).or_insert(candidate);
            if candidate.order > entry.order {
                *entry = candidate;
            }
        }
    }
    let mut keep = BTreeSet::new();
    for marker in newest.values() {
        keep.insert(marker.name.clone());
        keep.insert(crate::names::marker_source(&marker.name).to_string());
    }
    keep
}

/// What a purge of one volume's snapshots deletes: the reference's rule
/// on each snapshot's age, minus the protected send parents.
pub fn plan(candidates: &[Candidate], pattern: &Pattern, now: NaiveDateTime) -> Vec<String> {
    let keep = protected(candidates);
    let mut taken: Vec<(&String, NaiveDateTime)> = candidates
        .iter()
        .filter_map(|c| Some((&c.name, c.taken?)))
        .collect();
    taken.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    purges_by_age(&taken, pattern, now)
        .into_iter()
        .filter(|s| !keep.contains(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::DTFORMAT;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn at(s: &str) -> NaiveDateTime {
        parse_timestamp(s, DTFORMAT).unwrap()
    }

    #[test]
    fn patterns() {
        assert_eq!(Pattern::parse("1h:1d").unwrap().minutes, vec![60, 1440]);
        assert_eq!(
            Pattern::parse("1y:2m:1w").unwrap().minutes,
            vec![2, 10080, 525600]
        );
        for bad in [
            "", "1h", "1h:", "h:1d", "1x:1d", "0m:1h", "-1h:1d", "1.5h:1d", "1h;1d", " 1h:1d",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keeps_one_per_timeframe_and_drops_the_oldest() {
        // Pattern 1h:1d: keep all < 1h, one per hour up to 1 day, none older.
        let snaps = names(&[
            "v@2026-01-01T11:50:00.000000", // 10 min: kept
            "v@2026-01-01T10:10:00.000000", // 110 min: hour 1
            "v@2026-01-01T10:05:00.000000", // 115 min: hour 1 again -> purged
            "v@2025-12-30T12:00:00.000000", // 2 days: purged
            "v@garbage",
        ]);
        let now = at("2026-01-01T12:00:00.000000");
        let purged = compute_purges(&snaps, &Pattern::parse("1h:1d").unwrap(), now, DTFORMAT);
        assert_eq!(
            purged,
            names(&[
                "v@2025-12-30T12:00:00.000000",
                "v@2026-01-01T10:10:00.000000"
            ])
        );
    }

    #[test]
    fn newest_marker_and_its_source_are_protected() {
        let snaps = names(&[
            "v@2025-01-01T00:00:00.000000",
            "v@2025-01-01T00:00:00.000000@node2",
            "v@2024-01-01T00:00:00.000000",
            "v@2024-01-01T00:00:00.000000@node2",
            "v@2024-06-01T00:00:00.000000@node3",
        ]);
        let now = at("2026-01-01T12:00:00.000000");
        let p = Pattern::parse("1h:1d").unwrap();
        assert_eq!(compute_purges(&snaps, &p, now, DTFORMAT).len(), 5);
        // Created in the order of their names here.
        let mut sorted = snaps.clone();
        sorted.sort();
        let candidates: Vec<Candidate> = sorted
            .iter()
            .enumerate()
            .map(|(i, name)| Candidate {
                name: name.clone(),
                taken: parse_timestamp(crate::names::timestamp_of(name).unwrap(), DTFORMAT),
                order: (i as u64, 0),
            })
            .collect();
        assert_eq!(
            plan(&candidates, &p, now),
            names(&[
                "v@2024-01-01T00:00:00.000000",
                "v@2024-01-01T00:00:00.000000@node2"
            ])
        );
    }

    #[test]
    fn the_newest_marker_is_the_last_created_whatever_its_name() {
        // A marker of a future-dated snapshot, created before the real
        // newest one: the real newest is protected, not the future name.
        let candidate = |name: &str, order: u64| Candidate {
            name: name.into(),
            taken: None,
            order: (order, 0),
        };
        let keep = protected(&[
            candidate("v@2099-01-01T00:00:00.000000@node2", 1),
            candidate("v@2026-01-01T00:00:00.000000@node2", 2),
        ]);
        assert!(keep.contains("v@2026-01-01T00:00:00.000000@node2"));
        assert!(keep.contains("v@2026-01-01T00:00:00.000000"));
        assert!(!keep.contains("v@2099-01-01T00:00:00.000000@node2"));
    }

    /// A send to `backup@node2` records `<snap>@backup@node2`: its source
    /// is `<snap>`, protected as the parent of the next send.
    #[test]
    fn a_marker_of_a_user_at_host_protects_its_snapshot() {
        let candidate = |name: &str, order: u64| Candidate {
            name: name.into(),
            taken: None,
            order: (order, 0),
        };
        let keep = protected(&[
            candidate("v@2026-01-01T00:00:00.000000", 1),
            candidate("v@2026-01-01T00:00:00.000000@backup@node2", 2),
        ]);
        assert!(keep.contains("v@2026-01-01T00:00:00.000000"), "{keep:?}");
        assert!(!keep.contains("v@2026-01-01T00:00:00.000000@backup"));
    }
}
