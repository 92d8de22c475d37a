//! buttervolume 3.13's retention rule, quirks included, because existing
//! nodes' schedules rely on it and `tests/data/purge-vectors.json` pins it:
//! ages are whole seconds divided by 60 (a float), measured from local
//! naive time; the pattern is sorted into minutes `p0 <= ... <= pk`; for
//! each consecutive pair `(p(i), p(i+1))` the snapshots aged between them
//! (both ends included) are walked oldest first and one per
//! `floor(age / p(i))` timeframe is kept; anything older than `pk` goes.
//! A snapshot on a boundary is walked twice and deleted if either walk
//! deletes it; one older than `pk` still holds its timeframe in the top
//! walk, as in 3.13.

use chrono::NaiveDateTime;

use super::{age_seconds, survivors, Dated, Verdict};

/// Each of `dated`'s verdict under the ascending durations `minutes`.
pub(crate) fn judge(dated: &[Dated], minutes: &[u64], now: NaiveDateTime) -> Vec<Verdict> {
    let ages: Vec<f64> = dated
        .iter()
        .map(|d| age_seconds(now, d.taken) as f64 / 60.0)
        .collect();
    let descending: Vec<f64> = minutes.iter().rev().map(|m| *m as f64).collect();
    let max_age = descending[0];
    let cutoff = *minutes.last().expect("a pattern has a component");
    let mut deleted: Vec<Option<Verdict>> = vec![None; dated.len()];
    let mut kept: Vec<Option<Verdict>> = vec![None; dated.len()];
    for (w, pair) in descending.windows(2).enumerate() {
        let (upper, lower) = (pair[0], pair[1]);
        // Steps are numbered from the youngest, 1 being (p0, p1).
        let step = minutes.len() - 1 - w;
        let width = minutes[step - 1];
        let walked: Vec<(usize, i64)> = ages
            .iter()
            .enumerate()
            .filter(|(_, age)| !((**age > upper && upper < max_age) || **age < lower))
            .map(|(i, age)| (i, python_floordiv(*age, lower) as i64))
            .collect();
        let held = survivors(dated, &walked);
        for (&(i, timeframe), survivor) in walked.iter().zip(held) {
            let verdict = if ages[i] > max_age {
                Verdict::PastCutoff { cutoff }
            } else if survivor == i {
                Verdict::Survivor {
                    step,
                    width,
                    timeframe,
                }
            } else {
                Verdict::Duplicate {
                    step,
                    width,
                    timeframe,
                    survivor: dated[survivor].name.to_string(),
                }
            };
            if verdict.keeps() {
                kept[i] = Some(verdict);
            } else if deleted[i].is_none() {
                deleted[i] = Some(verdict);
            }
        }
    }
    deleted
        .into_iter()
        .zip(kept)
        .map(|(deleted, kept)| {
            deleted
                .or(kept)
                .unwrap_or(Verdict::Young { young: minutes[0] })
        })
        .collect()
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
