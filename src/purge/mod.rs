//! Retention purges: which snapshots a pattern like `1h:1d:1w:4w:1y` or
//! `1h/4:1d/3:1w/4` deletes, and why.
//!
//! - [`pattern`]: the one parser of patterns, and the rule each stands for.
//! - [`age`]: buttervolume 3.13's rule, quirks included (timeframes counted
//!   on each snapshot's age at the purge), pinned by
//!   `tests/data/purge-vectors.json`; the default (`PURGE_TIMEFRAMES=age`).
//! - [`calendar`]: upstream master's rule (timeframes numbered on the
//!   calendar from 1970-01-01, so a timeframe spares the same snapshot at
//!   every run; counted steps), pinned by
//!   `tests/data/purge-vectors-upstream-master.json`; used for counted and
//!   single-step patterns, and for every pattern with
//!   `PURGE_TIMEFRAMES=calendar`.
//! - [`explain`]: the reason behind each snapshot's fate.
//!
//! Both rules walk the dated snapshots oldest first and keep one per
//! timeframe. What this module adds to the references:
//!
//! - the newest sent marker `<vol>@<ts>@<host>` of each host, and the
//!   snapshot `<vol>@<ts>` it was taken from, are never deleted: they are
//!   the parents of the next incremental send;
//! - a snapshot received from a peer never displaces a local one in a
//!   timeframe: the survivor of a timeframe is its oldest local snapshot,
//!   or its oldest snapshot when none is local. (Its age is its caller's
//!   business: [`Candidate::taken`].)

pub mod age;
pub mod calendar;
pub mod explain;
pub mod pattern;

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;

pub use crate::config::PurgeTimeframes;
pub use pattern::{Pattern, PurgeError, Rule};

use crate::names::{parse_timestamp, timestamp_of};

/// A snapshot as a purge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// When it was taken, for its age and its calendar timeframe. `None`
    /// (no date in the name): never purged, as the references.
    pub taken: Option<NaiveDateTime>,
    /// Its place in btrfs creation order, for "newest marker".
    pub order: (u64, u64),
    /// Received from a peer (read-only with a received UUID): it never
    /// displaces a local snapshot in a timeframe.
    pub received: bool,
}

impl Candidate {
    /// Candidates from names alone, dated by their names, local, created in
    /// the order given: the references' view (their vectors, `--at` in
    /// tests).
    pub fn from_names(names: &[String], dtformat: &str) -> Vec<Candidate> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Candidate {
                name: name.clone(),
                taken: timestamp_of(name).and_then(|t| parse_timestamp(t, dtformat)),
                order: (i as u64, 0),
                received: false,
            })
            .collect()
    }
}

/// What the pattern alone says of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Younger than the first step (`young` minutes): kept.
    Young { young: u64 },
    /// The one snapshot step `step` (1 = the youngest) keeps in its
    /// timeframe `timeframe`, `width` minutes wide.
    Survivor {
        step: usize,
        width: u64,
        timeframe: i64,
    },
    /// Another snapshot in that timeframe, `survivor`, is kept: deleted.
    Duplicate {
        step: usize,
        width: u64,
        timeframe: i64,
        survivor: String,
    },
    /// As old as the pattern's end (`cutoff` minutes) or older: deleted.
    PastCutoff { cutoff: u64 },
    /// No date in its name: kept.
    Undatable,
}

impl Verdict {
    pub fn keeps(&self) -> bool {
        !matches!(self, Verdict::Duplicate { .. } | Verdict::PastCutoff { .. })
    }
}

/// Why a snapshot survives whatever the pattern says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protection {
    /// The newest sent marker to this host.
    Marker(String),
    /// The snapshot the newest marker to this host marks: the parent of
    /// the next send there.
    Parent(String),
    /// A diverged state kept by cluster mode ([`crate::cluster::local`]):
    /// only an operator removes it.
    Diverged,
}

/// One snapshot's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub verdict: Verdict,
    pub protected: Vec<Protection>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.protected.is_empty() || self.verdict.keeps()
    }
}

/// A dated snapshot, as both rules walk them (oldest first).
#[derive(Debug, Clone)]
pub(crate) struct Dated<'a> {
    pub name: &'a str,
    pub taken: NaiveDateTime,
    pub local: bool,
}

/// Whole seconds from `taken` to `now`, truncated toward zero as Python's
/// `int(timedelta.total_seconds())`.
pub(crate) fn age_seconds(now: NaiveDateTime, taken: NaiveDateTime) -> i64 {
    let delta = now - taken;
    delta
        .num_microseconds()
        .map_or_else(|| delta.num_seconds(), |us| us / 1_000_000)
}

/// For each of `walked` (indices into `dated`, oldest first, each with
/// its timeframe; equal timeframes are consecutive), the index of its
/// timeframe's survivor: the oldest local snapshot of the timeframe, or
/// its oldest snapshot when none is local.
pub(crate) fn survivors(dated: &[Dated], walked: &[(usize, i64)]) -> Vec<usize> {
    let mut out = Vec::with_capacity(walked.len());
    for group in walked.chunk_by(|a, b| a.1 == b.1) {
        let survivor = group
            .iter()
            .find(|(i, _)| dated[*i].local)
            .unwrap_or(&group[0])
            .0;
        out.extend(std::iter::repeat_n(survivor, group.len()));
    }
    out
}

/// Snapshots that must survive any purge, with why: for each host, the
/// newest (in creation order) sent marker `<vol>@<ts>@<host>` and the
/// snapshot `<vol>@<ts>` it marks.
pub fn protected(candidates: &[Candidate]) -> BTreeMap<String, Vec<Protection>> {
    let mut newest: HashMap<&str, &Candidate> = HashMap::new();
    for candidate in candidates {
        if let Some(host) = crate::names::marker_host(&candidate.name) {
            let entry = newest.entry(host).or_insert(candidate);
            if candidate.order > entry.order {
                *entry = candidate;
            }
        }
    }
    let mut keep: BTreeMap<String, Vec<Protection>> = BTreeMap::new();
    for (host, marker) in newest {
        keep.entry(marker.name.clone())
            .or_default()
            .push(Protection::Marker(host.to_string()));
        keep.entry(crate::names::marker_source(&marker.name).to_string())
            .or_default()
            .push(Protection::Parent(host.to_string()));
    }
    for why in keep.values_mut() {
        why.sort();
    }
    keep
}

/// Every snapshot's fate under `pattern` at `now`, sorted by name.
pub fn decide(
    candidates: &[Candidate],
    pattern: &Pattern,
    timeframes: PurgeTimeframes,
    now: NaiveDateTime,
) -> Vec<Decision> {
    let mut protected = protected(candidates);
    let mut dated: Vec<Dated> = candidates
        .iter()
        .filter_map(|c| {
            Some(Dated {
                name: &c.name,
                taken: c.taken?,
                local: !c.received,
            })
        })
        .collect();
    dated.sort_by(|a, b| a.taken.cmp(&b.taken).then_with(|| a.name.cmp(b.name)));
    let verdicts = match pattern.rule(timeframes) {
        Rule::Age(minutes) => age::judge(&dated, &minutes, now),
        Rule::Calendar(steps) => calendar::judge(&dated, &steps, now),
    };
    let mut by_name: HashMap<&str, Verdict> = dated.iter().map(|d| d.name).zip(verdicts).collect();
    let mut out: Vec<Decision> = candidates
        .iter()
        .map(|c| Decision {
            name: c.name.clone(),
            verdict: by_name
                .remove(c.name.as_str())
                .unwrap_or(Verdict::Undatable),
            protected: protected.remove(&c.name).unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What a purge of one volume's snapshots deletes, sorted by name.
pub fn plan(
    candidates: &[Candidate],
    pattern: &Pattern,
    timeframes: PurgeTimeframes,
    now: NaiveDateTime,
) -> Vec<String> {
    decide(candidates, pattern, timeframes, now)
        .into_iter()
        .filter(|d| !d.keep())
        .map(|d| d.name)
        .collect()
}

/// The pattern's rule alone on names, as the references compute it (no
/// protection): what their `compute_purges` returns, sorted.
pub fn compute_purges(
    snapshots: &[String],
    pattern: &Pattern,
    timeframes: PurgeTimeframes,
    now: NaiveDateTime,
    dtformat: &str,
) -> Vec<String> {
    let mut names = snapshots.to_vec();
    names.sort();
    decide(
        &Candidate::from_names(&names, dtformat),
        pattern,
        timeframes,
        now,
    )
    .into_iter()
    .filter(|d| !d.verdict.keeps())
    .map(|d| d.name)
    .collect()
}

#[cfg(test)]
mod tests;
