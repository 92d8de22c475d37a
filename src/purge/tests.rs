//! Unit tests of the purge rules: protections, the received-snapshot rule,
//! explanations. The references' vectors replay in tests/purge_vectors.rs.

use super::*;
use crate::config::PurgeTimeframes::{Age, Calendar};
use crate::names::DTFORMAT;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn at(s: &str) -> NaiveDateTime {
    parse_timestamp(s, DTFORMAT).unwrap()
}

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap()
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
    let purged = compute_purges(&snaps, &pattern("1h:1d"), Age, now, DTFORMAT);
    assert_eq!(
        purged,
        names(&[
            "v@2025-12-30T12:00:00.000000",
            "v@2026-01-01T10:10:00.000000"
        ])
    );
    // On the calendar, 10:05 and 10:10 share the 10:00 hour: the older,
    // 10:05, is the survivor.
    let purged = compute_purges(&snaps, &pattern("1h:1d"), Calendar, now, DTFORMAT);
    assert_eq!(
        purged,
        names(&[
            "v@2025-12-30T12:00:00.000000",
            "v@2026-01-01T10:10:00.000000"
        ])
    );
}

/// The calendar rule spares the same snapshot at every run: hourly
/// snapshots at :30, thinned to one a day, keep their midnight-to-midnight
/// first one, whatever hour the purge runs at. The age rule's timeframes
/// move with the clock, so the survivor changes.
#[test]
fn calendar_timeframes_spare_the_same_snapshot_at_every_run() {
    let snaps: Vec<String> = (0..72)
        .map(|h| {
            let t = at("2026-03-01T00:30:00.000000") + chrono::Duration::hours(h);
            format!("v@{}", crate::names::format_timestamp(t, DTFORMAT))
        })
        .collect();
    let kept_at = |mode, hour: i64| -> Vec<String> {
        let now = at("2026-03-04T00:00:00.000000") + chrono::Duration::hours(hour);
        let purged = compute_purges(&snaps, &pattern("1d:1w"), mode, now, DTFORMAT);
        snaps
            .iter()
            .filter(|s| !purged.contains(s))
            .filter(|s| s.as_str() < "v@2026-03-03")
            .cloned()
            .collect()
    };
    assert_eq!(
        kept_at(Calendar, 0),
        names(&[
            "v@2026-03-01T00:30:00.000000",
            "v@2026-03-02T00:30:00.000000"
        ])
    );
    assert_eq!(kept_at(Calendar, 0), kept_at(Calendar, 7));
    assert_ne!(kept_at(Age, 0), kept_at(Age, 7));
}

#[test]
fn counted_steps_keep_what_they_count() {
    // 1h/4:1d/3 keeps the last hour, then one an hour for four hours, then
    // one a day for three days: hourly snapshots over a week leave
    // 1 (the last hour) + 4 + 3 (or 4: the day step spans four calendar
    // days) snapshots.
    let now = at("2026-03-08T12:00:00.000000");
    let snaps: Vec<String> = (0..24 * 7)
        .map(|h| {
            let t = now - chrono::Duration::minutes(30) - chrono::Duration::hours(h);
            format!("v@{}", crate::names::format_timestamp(t, DTFORMAT))
        })
        .collect();
    for mode in [Age, Calendar] {
        let purged = compute_purges(&snaps, &pattern("1h/4:1d/3"), mode, now, DTFORMAT);
        let kept = snaps.len() - purged.len();
        assert!((8..=9).contains(&kept), "{mode:?}: {kept} kept");
        // Nothing as old as the cutoff (4h + 1h + 3d) survives.
        let cutoff = now - chrono::Duration::minutes(300 + 3 * 1440);
        for s in &snaps {
            let taken = parse_timestamp(timestamp_of(s).unwrap(), DTFORMAT).unwrap();
            if taken <= cutoff {
                assert!(purged.contains(s), "{s} kept past the cutoff");
            }
        }
    }
}

#[test]
fn newest_marker_and_its_source_are_protected() {
    let mut snaps = names(&[
        "v@2025-01-01T00:00:00.000000",
        "v@2025-01-01T00:00:00.000000@node2",
        "v@2024-01-01T00:00:00.000000",
        "v@2024-01-01T00:00:00.000000@node2",
        "v@2024-06-01T00:00:00.000000@node3",
    ]);
    snaps.sort();
    let now = at("2026-01-01T12:00:00.000000");
    let p = pattern("1h:1d");
    assert_eq!(compute_purges(&snaps, &p, Age, now, DTFORMAT).len(), 5);
    // Created in the order of their names here.
    let candidates = Candidate::from_names(&snaps, DTFORMAT);
    for mode in [Age, Calendar] {
        assert_eq!(
            plan(&candidates, &p, mode, now),
            names(&[
                "v@2024-01-01T00:00:00.000000",
                "v@2024-01-01T00:00:00.000000@node2"
            ])
        );
    }
    let decisions = decide(&candidates, &p, Age, now);
    let parent = decisions
        .iter()
        .find(|d| d.name == "v@2025-01-01T00:00:00.000000")
        .unwrap();
    assert!(parent.keep() && !parent.verdict.keeps());
    assert_eq!(
        parent.reason(),
        "protected as the parent of the next send to node2; the pattern alone would delete it: \
         past the cutoff: 1d or older"
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
        received: false,
    };
    let keep = protected(&[
        candidate("v@2099-01-01T00:00:00.000000@node2", 1),
        candidate("v@2026-01-01T00:00:00.000000@node2", 2),
    ]);
    assert!(keep.contains_key("v@2026-01-01T00:00:00.000000@node2"));
    assert!(keep.contains_key("v@2026-01-01T00:00:00.000000"));
    assert!(!keep.contains_key("v@2099-01-01T00:00:00.000000@node2"));
}

/// A send to `backup@node2` records `<snap>@backup@node2`: its source
/// is `<snap>`, protected as the parent of the next send.
#[test]
fn a_marker_of_a_user_at_host_protects_its_snapshot() {
    let candidate = |name: &str, order: u64| Candidate {
        name: name.into(),
        taken: None,
        order: (order, 0),
        received: false,
    };
    let keep = protected(&[
        candidate("v@2026-01-01T00:00:00.000000", 1),
        candidate("v@2026-01-01T00:00:00.000000@backup@node2", 2),
    ]);
    assert_eq!(
        keep["v@2026-01-01T00:00:00.000000"],
        vec![Protection::Parent("backup@node2".into())]
    );
    assert!(!keep.contains_key("v@2026-01-01T00:00:00.000000@backup"));
}

/// Issue 20 item 3: a received snapshot dated (by its peer-chosen name,
/// or by its arrival) just before ours in the same timeframe is the
/// oldest there, and the rules keep the oldest: it must not displace
/// ours. Fails on the old rule, which ignored where a snapshot came from.
#[test]
fn a_received_snapshot_never_displaces_a_local_one() {
    let now = at("2026-01-01T12:00:00.000000");
    let ours = "logs@2026-01-01T10:00:00.000000";
    let theirs = "logs@2026-01-01T09:59:59.000000";
    for mode in [Age, Calendar] {
        for p in ["1h:1d", "1h/24"] {
            let candidates = [
                Candidate {
                    name: theirs.into(),
                    taken: Some(at("2026-01-01T09:59:59.000000")),
                    order: (1, 0),
                    received: true,
                },
                Candidate {
                    name: ours.into(),
                    taken: Some(at("2026-01-01T10:00:00.000000")),
                    order: (2, 0),
                    received: false,
                },
            ];
            let p = pattern(p);
            // By age (3.13) both are in hour 2; on the calendar they are in
            // hours 9 and 10: only a shared timeframe can displace.
            let decisions = decide(&candidates, &p, mode, now);
            let fate = |name: &str| decisions.iter().find(|d| d.name == name).unwrap().keep();
            assert!(fate(ours), "{mode:?} {p}: ours deleted: {decisions:?}");
            let both_local = candidates.clone().map(|mut c| {
                c.received = false;
                c
            });
            let local = decide(&both_local, &p, mode, now);
            let same_timeframe = local.iter().any(|d| !d.keep());
            if same_timeframe {
                // The old rule (all alike): the older one survives, ours goes.
                assert!(!local.iter().find(|d| d.name == ours).unwrap().keep());
                assert!(!fate(theirs), "{mode:?} {p}: both kept");
                let verdict = &decisions.iter().find(|d| d.name == theirs).unwrap().verdict;
                assert!(
                    matches!(verdict, Verdict::Duplicate { survivor, .. } if survivor == ours),
                    "{verdict:?}"
                );
            }
        }
    }
    // In age mode both are in hour 2 of 1h:1d: the displacement is real.
    let candidates = [
        Candidate {
            name: theirs.into(),
            taken: Some(at("2026-01-01T09:59:59.000000")),
            order: (1, 0),
            received: true,
        },
        Candidate {
            name: ours.into(),
            taken: Some(at("2026-01-01T10:00:00.000000")),
            order: (2, 0),
            received: false,
        },
    ];
    assert_eq!(
        plan(&candidates, &pattern("1h:1d"), Age, now),
        vec![theirs.to_string()]
    );
}

#[test]
fn explain_covers_every_snapshot_with_a_reason() {
    let snaps = names(&[
        "v@2026-01-01T11:50:00.000000",
        "v@2026-01-01T10:10:00.000000",
        "v@2026-01-01T10:05:00.000000",
        "v@2025-12-30T12:00:00.000000",
        "v@garbage",
    ]);
    let now = at("2026-01-01T12:00:00.000000");
    let decisions = decide(
        &Candidate::from_names(&snaps, DTFORMAT),
        &pattern("1h:1d"),
        Calendar,
        now,
    );
    let reasons: Vec<(bool, String)> = decisions.iter().map(|d| (d.keep(), d.reason())).collect();
    let tf = calendar::timeframe(at("2026-01-01T10:05:00.000000"), 60);
    assert_eq!(
        reasons,
        vec![
            (false, "past the cutoff: 1d or older".to_string()),
            (
                true,
                format!("the survivor of timeframe {tf} of step 1 (one per 1h)")
            ),
            (
                false,
                format!(
                    "a duplicate in timeframe {tf} of step 1 (one per 1h): \
                     v@2026-01-01T10:05:00.000000 is kept"
                )
            ),
            (
                true,
                "younger than 1h, where the pattern keeps everything".to_string()
            ),
            (
                true,
                "undatable: its name carries no date in DTFORMAT, and a purge never deletes what it cannot date"
                    .to_string()
            ),
        ]
    );
}
