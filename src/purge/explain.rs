//! Why a purge keeps or deletes each snapshot, in words: what `"Explain":
//! true` adds to a purge reply and `buttervolume purge --explain` prints.

use super::pattern::minutes_text;
use super::{Decision, Protection, Verdict};

impl Verdict {
    /// The pattern's reason, e.g. "a duplicate in timeframe 493 of step 1
    /// (one per 1h): db@... is kept".
    pub fn reason(&self) -> String {
        match self {
            Verdict::Young { young } => {
                format!("younger than {}, where the pattern keeps everything", minutes_text(*young))
            }
            Verdict::Survivor {
                step,
                width,
                timeframe,
            } => format!(
                "the survivor of timeframe {timeframe} of step {step} (one per {})",
                minutes_text(*width)
            ),
            Verdict::Duplicate {
                step,
                width,
                timeframe,
                survivor,
            } => format!(
                "a duplicate in timeframe {timeframe} of step {step} (one per {}): {survivor} is kept",
                minutes_text(*width)
            ),
            Verdict::PastCutoff { cutoff } => {
                format!("past the cutoff: {} or older", minutes_text(*cutoff))
            }
            Verdict::Undatable => {
                "undatable: its name carries no date in DTFORMAT, and a purge never deletes what it cannot date".into()
            }
        }
    }
}

impl Protection {
    fn reason(&self) -> String {
        match self {
            Protection::Marker(host) => format!("the newest sent marker to {host}"),
            Protection::Parent(host) => format!("the parent of the next send to {host}"),
            Protection::Diverged => {
                "a diverged state kept by cluster mode (remove it by hand)".into()
            }
        }
    }
}

impl Decision {
    /// The whole reason: a protection first (with what the pattern alone
    /// would do), else the pattern's.
    pub fn reason(&self) -> String {
        if self.protected.is_empty() {
            return self.verdict.reason();
        }
        let why: Vec<String> = self.protected.iter().map(Protection::reason).collect();
        let pattern = if self.verdict.keeps() {
            "the pattern keeps it too"
        } else {
            "the pattern alone would delete it"
        };
        format!(
            "protected as {}; {pattern}: {}",
            why.join(" and "),
            self.verdict.reason()
        )
    }

    /// The entry of a purge reply's `Explain`.
    pub fn explained(&self) -> crate::api::PurgeExplained {
        crate::api::PurgeExplained {
            snapshot: self.name.clone(),
            keep: self.keep(),
            reason: self.reason(),
            pattern_keeps: self.verdict.keeps(),
        }
    }
}

/// One line of `buttervolume purge --explain`: `keep` or `delete`, the
/// snapshot, its reason.
pub fn line(entry: &crate::api::PurgeExplained) -> String {
    let fate = if entry.keep { "keep  " } else { "delete" };
    format!("{fate} {}  {}", entry.snapshot, entry.reason)
}
