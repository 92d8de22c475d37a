//! Upstream buttervolume master's retention rule (its pull requests #126
//! and #127): inside each step, one snapshot is kept per timeframe, and a
//! timeframe is numbered on the calendar from 1970-01-01 00:00 (local
//! naive time) on the moment the snapshot was taken, not on its age: a
//! one-day timeframe starts at midnight, a week on a Thursday, and the
//! snapshot spared in a timeframe is the same one at every run. Ages are
//! whole seconds (truncated) as in 3.13; a step covers ages from its start
//! (included) to its end (excluded); anything as old as the cutoff goes.
//! `tests/data/purge-vectors-upstream-master.json` pins it.

use chrono::NaiveDateTime;

use super::pattern::Steps;
use super::{age_seconds, survivors, Dated, Verdict};

/// The calendar timeframe `taken` falls in, `width` minutes wide.
pub fn timeframe(taken: NaiveDateTime, width: u64) -> i64 {
    let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
    let delta = taken - epoch;
    // Every date chrono parses is within 292,000 years of 1970.
    let since = delta
        .num_microseconds()
        .unwrap_or_else(|| delta.num_seconds().saturating_mul(1_000_000));
    let width = i128::from(width) * 60_000_000;
    i128::from(since).div_euclid(width) as i64
}

/// Each of `dated`'s verdict under `steps`.
pub(crate) fn judge(dated: &[Dated], steps: &Steps, now: NaiveDateTime) -> Vec<Verdict> {
    let minutes = |m: u64| i128::from(m) * 60;
    let ages: Vec<i128> = dated
        .iter()
        .map(|d| i128::from(age_seconds(now, d.taken)))
        .collect();
    let mut verdicts: Vec<Verdict> = ages
        .iter()
        .map(|age| {
            if *age >= minutes(steps.cutoff) {
                Verdict::PastCutoff {
                    cutoff: steps.cutoff,
                }
            } else {
                Verdict::Young { young: steps.young }
            }
        })
        .collect();
    for (k, step) in steps.steps.iter().enumerate() {
        let walked: Vec<(usize, i64)> = ages
            .iter()
            .enumerate()
            .filter(|(_, age)| minutes(step.start) <= **age && **age < minutes(step.end))
            .map(|(i, _)| (i, timeframe(dated[i].taken, step.width)))
            .collect();
        let held = survivors(dated, &walked);
        for (&(i, timeframe), survivor) in walked.iter().zip(held) {
            verdicts[i] = if survivor == i {
                Verdict::Survivor {
                    step: k + 1,
                    width: step.width,
                    timeframe,
                }
            } else {
                Verdict::Duplicate {
                    step: k + 1,
                    width: step.width,
                    timeframe,
                    survivor: dated[survivor].name.to_string(),
                }
            };
        }
    }
    verdicts
}
