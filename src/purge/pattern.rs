//! Purge patterns: the one parser behind the purge endpoint, schedule lines,
//! volume options and the CLI, and the rule a pattern stands for.
//!
//! A pattern is components separated by `:`, each a whole number and a unit
//! (`m`, `h`, `d`, `w`, `y` = 365 days), optionally followed by `/<count>`:
//!
//! - uncounted, two or more components (`1h:1d:1w`): buttervolume 3.13's
//!   pattern. Accepted in any order and with repeats, as 3.13 accepts them
//!   (`2h:2h` is 3.13's way to write `2h`); read with 3.13's age rule or,
//!   with `PURGE_TIMEFRAMES=calendar`, with upstream master's calendar rule
//!   on the sorted, deduplicated durations.
//! - a single uncounted component (`2h`): keep the last two hours, delete
//!   the rest.
//! - any counted component (`1h/4:1d/3:1w/4`): upstream master's steps, as
//!   master parses them: durations strictly ascend, a counted step starts
//!   where the previous one stopped, an uncounted component in the middle
//!   says where the next step starts, and an uncounted last component after
//!   a counted one is refused (the ages between would belong to no step).

/// Minutes per unit.
const UNITS: [(char, u64); 5] = [
    ('m', 1),
    ('h', 60),
    ('d', 60 * 24),
    ('w', 60 * 24 * 7),
    ('y', 60 * 24 * 365),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid purge pattern {text:?}: {reason}")]
pub struct PurgeError {
    pub text: String,
    pub reason: String,
}

/// One `<n><unit>[/<count>]` component.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Component {
    text: String,
    minutes: u64,
    count: Option<u64>,
}

/// A checked pattern. Only [`Pattern::parse`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    components: Vec<Component>,
}

/// A slice of ages (minutes, `start` included, `end` excluded) where one
/// snapshot is kept per `width`-minute calendar timeframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub width: u64,
    pub start: u64,
    pub end: u64,
}

/// Upstream master's reading of a pattern: keep everything younger than
/// `young`, thin each step, delete everything as old as `cutoff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    pub young: u64,
    pub steps: Vec<Step>,
    pub cutoff: u64,
}

/// What a pattern means under a `PURGE_TIMEFRAMES` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// 3.13's rule on these durations (minutes, ascending, repeats kept).
    Age(Vec<u64>),
    /// Upstream master's calendar rule.
    Calendar(Steps),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PurgeError> {
        let refuse = |reason: String| PurgeError {
            text: text.to_string(),
            reason,
        };
        let components = text
            .split(':')
            .map(component)
            .collect::<Result<Vec<_>, _>>()
            .map_err(refuse)?;
        let pattern = Pattern {
            text: text.to_string(),
            components,
        };
        if pattern.counted() {
            pattern.counted_steps().map_err(refuse)?;
        }
        Ok(pattern)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a component carries a count (upstream master's syntax).
    pub fn counted(&self) -> bool {
        self.components.iter().any(|c| c.count.is_some())
    }

    /// The rule this pattern stands for when uncounted patterns of two or
    /// more components count their timeframes as `timeframes` says.
    pub fn rule(&self, timeframes: crate::config::PurgeTimeframes) -> Rule {
        if self.counted() {
            return Rule::Calendar(self.counted_steps().expect("checked by parse"));
        }
        let mut minutes: Vec<u64> = self.components.iter().map(|c| c.minutes).collect();
        minutes.sort_unstable();
        if minutes.len() > 1 && timeframes == crate::config::PurgeTimeframes::Age {
            return Rule::Age(minutes);
        }
        minutes.dedup();
        Rule::Calendar(uncounted_steps(&minutes))
    }

    /// Master's steps for a counted pattern, or why it is refused.
    fn counted_steps(&self) -> Result<Steps, String> {
        let parts = &self.components;
        for pair in parts.windows(2) {
            if pair[0].minutes >= pair[1].minutes {
                return Err(format!(
                    "with counts, durations must ascend: {} is not shorter than {}",
                    pair[0].text, pair[1].text
                ));
            }
        }
        let young = parts[0].minutes;
        let mut start = young;
        let mut steps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let end = match part.count {
                Some(count) => part
                    .minutes
                    .checked_mul(count)
                    .and_then(|m| m.checked_add(start))
                    .ok_or_else(|| format!("{} covers too long a time", part.text))?,
                None if !last => {
                    let next = &parts[i + 1];
                    if next.minutes <= start {
                        return Err(format!(
                            "the components before {} already keep snapshots older than it does",
                            next.text
                        ));
                    }
                    next.minutes
                }
                // The age past which everything goes: the last step
                // already stops there.
                None if i == 0 || parts[i - 1].count.is_none() => break,
                None => {
                    let meant: Vec<String> = parts[..i]
                        .iter()
                        .map(|p| p.text.clone())
                        .chain([format!("{}/3", part.text)])
                        .collect();
                    return Err(format!(
                        "the last component {} must say how many snapshots it keeps because {} before it does; \
                         without a count the ages between would belong to no step: write it like {}",
                        part.text,
                        parts[i - 1].text,
                        meant.join(":")
                    ));
                }
            };
            steps.push(Step {
                width: part.minutes,
                start,
                end,
            });
            start = end;
        }
        Ok(Steps {
            young,
            steps,
            cutoff: start,
        })
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Master's steps for uncounted durations (ascending, distinct): one step
/// per consecutive pair, each as wide as its lower end.
fn uncounted_steps(minutes: &[u64]) -> Steps {
    let steps = minutes
        .windows(2)
        .map(|pair| Step {
            width: pair[0],
            start: pair[0],
            end: pair[1],
        })
        .collect();
    Steps {
        young: minutes[0],
        steps,
        cutoff: *minutes.last().expect("a pattern has a component"),
    }
}

/// Reads one component, or says what is wrong with it.
fn component(text: &str) -> Result<Component, String> {
    let (duration, count) = match text.split_once('/') {
        Some((d, c)) => (d, Some(c)),
        None => (text, None),
    };
    let shape = || {
        format!(
            "{text:?} is not a whole number followed by m, h, d, w or y (like 4h), \
             optionally with a count (like 1h/24)"
        )
    };
    let unit = duration.chars().last().ok_or_else(shape)?;
    let digits = &duration[..duration.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape());
    }
    let factor = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("{text:?}: unknown unit {unit:?} (m, h, d, w or y)"))?;
    let minutes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if minutes == 0 {
        return Err(format!(
            "{text:?} lasts no time at all: every snapshot would share one timeframe"
        ));
    }
    let count = match count {
        None => None,
        Some(c) => match c.parse::<u64>() {
            Ok(n) if n >= 1 && c.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(format!(
                    "{text:?}: a count is how many snapshots the step keeps, \
                     a whole number of at least 1, as in 1h/4"
                ))
            }
        },
    };
    Ok(Component {
        text: text.to_string(),
        minutes,
        count,
    })
}

/// A duration in minutes, in the largest unit that writes it exactly.
pub fn minutes_text(minutes: u64) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, f)| minutes.is_multiple_of(*f))
        .map(|(u, f)| format!("{}{u}", minutes / f))
        .unwrap_or_else(|| format!("{minutes}m"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PurgeTimeframes::{Age, Calendar};

    fn steps(text: &str) -> Steps {
        match Pattern::parse(text).unwrap().rule(Calendar) {
            Rule::Calendar(s) => s,
            Rule::Age(_) => panic!("{text} read with the age rule"),
        }
    }

    #[test]
    fn uncounted_patterns_are_313s_in_any_order() {
        let p = Pattern::parse("1y:2m:1w").unwrap();
        assert_eq!(p.rule(Age), Rule::Age(vec![2, 10080, 525600]));
        assert_eq!(
            Pattern::parse("2h:2h").unwrap().rule(Age),
            Rule::Age(vec![120, 120])
        );
        // Calendar: sorted, repeats dropped, `2h:2h` is `2h`.
        assert_eq!(steps("2h:2h"), steps("2h"));
        assert_eq!(
            steps("1d:1h:1w"),
            Steps {
                young: 60,
                steps: vec![
                    Step {
                        width: 60,
                        start: 60,
                        end: 1440
                    },
                    Step {
                        width: 1440,
                        start: 1440,
                        end: 10080
                    },
                ],
                cutoff: 10080
            }
        );
    }

    #[test]
    fn a_single_step_keeps_what_is_younger_in_either_mode() {
        for mode in [Age, Calendar] {
            assert_eq!(
                Pattern::parse("2h").unwrap().rule(mode),
                Rule::Calendar(Steps {
                    young: 120,
                    steps: vec![],
                    cutoff: 120
                })
            );
        }
    }

    #[test]
    fn counted_steps_start_where_the_previous_stopped() {
        let s = steps("1h/4:1d/3:1w/4");
        assert_eq!(s.young, 60);
        assert_eq!(
            s.steps
                .iter()
                .map(|s| (s.width, s.start, s.end))
                .collect::<Vec<_>>(),
            vec![
                (60, 60, 300),
                (1440, 300, 4620),
                (10080, 4620, 4620 + 40320)
            ]
        );
        assert_eq!(s.cutoff, 4620 + 40320);
        // An uncounted middle component says where the next step starts.
        let s = steps("1h/48:1d:1w");
        assert_eq!(
            s.steps[1],
            Step {
                width: 1440,
                start: 2940,
                end: 10080
            }
        );
        // Counted patterns are master's in age mode too.
        assert_eq!(
            Pattern::parse("1h/4:1d/3").unwrap().rule(Age),
            Pattern::parse("1h/4:1d/3").unwrap().rule(Calendar)
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("", "not a whole number"),
            ("1h:", "not a whole number"),
            ("h:1d", "not a whole number"),
            ("h/2:1d", "not a whole number"),
            (" 1h:1d", "not a whole number"),
            ("-1h:1d", "not a whole number"),
            ("1.5h:1d", "not a whole number"),
            ("1x:1d", "unknown unit 'x'"),
            ("1h;1d", "not a whole number"),
            ("1h:2q", "unknown unit 'q'"),
            ("0m:1h", "no time at all"),
            ("99999999999999999999y", "too long"),
            ("1h/0", "a count is"),
            ("1h/", "a count is"),
            ("2h/1.5", "a count is"),
            ("2h/-1", "a count is"),
            ("2h/+1", "a count is"),
            ("1d/4:24h/1", "must ascend"),
            ("1h/48:1d:2d", "already keep snapshots older"),
            ("1h/4:1d", "write it like 1h/4:1d/3"),
            ("6h:12h/2:60y", "write it like 6h:12h/2:60y/3"),
        ] {
            let err = Pattern::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("Invalid purge pattern"), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_are_written_in_their_largest_exact_unit() {
        assert_eq!(minutes_text(90), "90m");
        assert_eq!(minutes_text(1440), "1d");
        assert_eq!(minutes_text(20160), "2w");
        assert_eq!(minutes_text(525600), "1y");
    }
}
