//! Job timers: when a job is due.
//!
//! The reference only knows `<minutes>` (measured from the job's last run).
//! We also accept `cron:<expr>` in the same CSV column, a standard 5-field
//! crontab expression (`minute hour day-of-month month day-of-week`, local
//! time), the same with a leading `second` field (6 fields: `cron:*/5 * *
//! * * *` runs every 5 seconds, for replication intervals under a
//! minute), or one of `@hourly @daily @weekly @monthly @yearly`; it fires at its
//! first occurrence after the last run. The reference reading such a line
//! fails on `int()` and skips it, so a node can still switch back.
//!
//! The `cron` crate wants a leading seconds field and numbers days of the
//! week 1-7 from Sunday, where crontab uses 0-7 from Sunday (0 and 7 both
//! Sunday): the day-of-week field is translated to day names so `1` keeps
//! meaning Monday. Restricting both day-of-month and day-of-week is refused,
//! because crontab ORs them and the crate ANDs them.

use std::str::FromStr;

use chrono::{DateTime, Local, TimeDelta, Utc};

/// The prefix that marks a cron timer in the Timer column.
pub const CRON_PREFIX: &str = "cron:";

/// Largest minute timer: a century. Larger values would overflow date
/// arithmetic and can only be typos.
pub const MAX_MINUTES: u64 = 100 * 366 * 24 * 60;

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TimerError {
    #[error("Invalid timer {0:?}: expected minutes between runs (a whole number > 0), cron:<crontab expression>, or 0/delete, pause, resume")]
    Malformed(String),
    #[error("Invalid timer {0:?}: too large, at most {MAX_MINUTES} minutes")]
    TooLarge(String),
    #[error("Invalid timer (cron expression {expr:?}): {reason}")]
    Cron { expr: String, reason: String },
    #[error("Invalid timer {timer:?}: it contains {found:?}; control characters (line breaks, tabs, NUL...) and '\"' are not allowed in a timer, which is stored as one schedule.csv line")]
    ForbiddenChar { timer: String, found: char },
}

/// Refuses what cannot be stored on one schedule.csv line (or means nothing
/// in a timer): any control character and `"`. Checked on the text as given,
/// before any trimming, so `cron:0 3\n* * *` is refused instead of being
/// split across two lines of the file and lost at the next read.
fn check_chars(text: &str) -> Result<(), TimerError> {
    match text.chars().find(|c| c.is_control() || *c == '"') {
        Some(found) => Err(TimerError::ForbiddenChar {
            timer: text.into(),
            found,
        }),
        None => Ok(()),
    }
}

/// How often a job runs.
#[derive(Debug, Clone)]
pub enum Timer {
    /// Minutes after the previous run (the reference's only kind).
    Minutes(u64),
    /// Occurrences of a cron expression, in local time.
    Cron(Box<cron::Schedule>),
}

impl Timer {
    /// Parses a stored timer: minutes or `cron:<expr>`. `0` is not a timer
    /// (the API reads it as "delete", see [`TimerCommand`]).
    pub fn parse(text: &str) -> Result<Timer, TimerError> {
        check_chars(text)?;
        let text = text.trim();
        if let Some(expr) = text.strip_prefix(CRON_PREFIX) {
            return parse_cron(expr.trim()).map(|s| Timer::Cron(Box::new(s)));
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimerError::Malformed(text.into()));
        }
        let minutes: u64 = text
            .parse()
            .map_err(|_| TimerError::TooLarge(text.into()))?;
        match minutes {
            0 => Err(TimerError::Malformed(text.into())),
            m if m > MAX_MINUTES => Err(TimerError::TooLarge(text.into())),
            m => Ok(Timer::Minutes(m)),
        }
    }

    /// When the job is next due. `base` is when its previous occurrence was
    /// consumed (run or skipped), `None` for a job that never ran; `seen` is
    /// when the scheduler first saw the job.
    ///
    /// A minute job that never ran is due at the scheduler's first round
    /// after it was seen (the reference runs a new job at its loop's next
    /// round, up to TIMER later, never at the moment it is scheduled). A
    /// cron job that never ran waits for its first occurrence after `seen`:
    /// whoever writes `cron:0 3 * * *` chose 3 a.m., not "now".
    pub fn next_due(
        &self,
        base: Option<DateTime<Utc>>,
        seen: DateTime<Utc>,
        rounds: &Rounds,
    ) -> Option<DateTime<Utc>> {
        match (self, base) {
            (_, Some(base)) => self.next_after(base),
            (Timer::Minutes(_), None) => rounds.first_from(seen),
            (Timer::Cron(_), None) => self.next_after(seen),
        }
    }

    /// The occurrence after `base`: `base` plus the minutes, or the cron
    /// expression's first occurrence strictly after it.
    pub fn next_after(&self, base: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timer::Minutes(m) => {
                base.checked_add_signed(TimeDelta::try_minutes(i64::try_from(*m).ok()?)?)
            }
            Timer::Cron(schedule) => {
                let from = base.with_timezone(&Local);
                schedule.after(&from).next().map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

/// The scheduler's rounds: every TIMER from its start, the first one TIMER
/// after it, as the reference's loop, which waits TIMER before each run of
/// its jobs. Only jobs that never ran wait for a round; the others are due
/// when their timer says, and the loop wakes then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounds {
    start: DateTime<Utc>,
    every: TimeDelta,
}

impl Rounds {
    /// Rounds every `every` (at least a millisecond) from `start`.
    pub fn new(start: DateTime<Utc>, every: std::time::Duration) -> Rounds {
        let every = TimeDelta::from_std(every)
            .unwrap_or(TimeDelta::MAX)
            .max(TimeDelta::milliseconds(1));
        Rounds { start, every }
    }

    /// The first round at or after `t` (`None` past the calendar's end): a
    /// job seen by the tick of a round runs in that round, as a line the
    /// reference's round reads.
    pub fn first_from(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let first = self.start.checked_add_signed(self.every)?;
        if t <= first {
            return Some(first);
        }
        let since = (t - self.start).num_milliseconds();
        let every = self.every.num_milliseconds();
        // Rounded up: the round at or after `t`.
        let rounds = (since + every - 1) / every;
        self.start
            .checked_add_signed(TimeDelta::try_milliseconds(rounds.checked_mul(every)?)?)
    }
}

/// What the Timer of a `VolumeDriver.Schedule` request asks for.
#[derive(Debug, Clone)]
pub enum TimerCommand {
    /// Add or update the job with this timer, and activate it.
    Set(Timer),
    /// `0` or `delete`.
    Delete,
    Pause,
    Resume,
}

impl TimerCommand {
    pub fn parse(text: &str) -> Result<TimerCommand, TimerError> {
        check_chars(text)?;
        match text.trim() {
            "0" | "delete" => Ok(TimerCommand::Delete),
            "pause" => Ok(TimerCommand::Pause),
            "resume" => Ok(TimerCommand::Resume),
            other => Timer::parse(other).map(TimerCommand::Set),
        }
    }
}

fn parse_cron(expr: &str) -> Result<cron::Schedule, TimerError> {
    let fail = |reason: String| TimerError::Cron {
        expr: expr.to_string(),
        reason,
    };
    let crate_expr = if expr.starts_with('@') {
        match expr {
            "@hourly" | "@daily" | "@weekly" | "@monthly" | "@yearly" => expr.to_string(),
            _ => {
                return Err(fail(
                    "supported shortcuts are @hourly, @daily, @weekly, @monthly, @yearly".into(),
                ))
            }
        }
    } else {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (second, rest) = match fields[..] {
            [second, ref rest @ ..] if fields.len() == 6 => (second, rest),
            ref rest => ("0", rest),
        };
        let [minute, hour, dom, month, dow] = rest[..] else {
            return Err(fail(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), or 6 with a leading second, got {}",
                fields.len()
            )));
        };
        let any = |f: &str| f == "*" || f == "?";
        if !any(dom) && !any(dow) {
            return Err(fail(
                "restrict the day of the month or the day of the week, not both".into(),
            ));
        }
        let dow = translate_dow(dow).map_err(fail)?;
        format!("{second} {minute} {hour} {dom} {month} {dow}")
    };
    cron::Schedule::from_str(&crate_expr).map_err(|e| fail(e.to_string()))
}

/// Rewrites a crontab day-of-week field (0-7, 0 and 7 = Sunday, names,
/// lists, ranges, steps) as a list of day names, which the cron crate reads
/// unambiguously.
fn translate_dow(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: usize = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step {s:?} in day of week"))?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day(a)?, day(b)?)
        } else {
            let d = day(range)?;
            // crontab reads `n/step` as `n-<last day>/step`.
            (d, if step.is_some() { 6 } else { d })
        };
        if low > high {
            return Err(format!("backwards range {range:?} in day of week"));
        }
        for d in (low..=high).step_by(step.unwrap_or(1)) {
            days[d % 7] = true;
        }
    }
    let names: Vec<&str> = DAY_NAMES
        .iter()
        .zip(days)
        .filter_map(|(name, on)| on.then_some(*name))
        .collect();
    Ok(names.join(","))
}

/// One crontab day of week: 0-7 or a three-letter name.
fn day(text: &str) -> Result<usize, String> {
    if let Ok(n) = text.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("day of week {n} is out of 0-7"))
        };
    }
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("{text:?} is not a day of the week"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn minutes() {
        assert!(matches!(Timer::parse("60"), Ok(Timer::Minutes(60))));
        assert!(matches!(Timer::parse(" 007 "), Ok(Timer::Minutes(7))));
        for bad in [
            "",
            "0",
            "-5",
            "1.5",
            "60m",
            "abc",
            "99999999999999999999999",
            "１",
        ] {
            assert!(Timer::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            Timer::parse(&(MAX_MINUTES + 1).to_string()),
            Err(TimerError::TooLarge(_))
        ));
        let t = Timer::parse("90").unwrap();
        let seen = utc("2026-01-01T00:00:00Z");
        let rounds = Rounds::new(seen, std::time::Duration::from_secs(60));
        // Never run: at the next round, never at once.
        assert_eq!(
            t.next_due(None, seen, &rounds),
            Some(utc("2026-01-01T00:01:00Z"))
        );
        assert_eq!(
            t.next_due(Some(seen), seen, &rounds),
            Some(utc("2026-01-01T01:30:00Z"))
        );
    }

    #[test]
    fn a_new_job_waits_for_the_next_round_and_no_longer() {
        let start = utc("2026-01-01T00:00:00Z");
        let rounds = Rounds::new(start, std::time::Duration::from_secs(60));
        let at = |s: &str| rounds.first_from(utc(s)).unwrap();
        // Up to the first round (from the start on): the first round, TIMER
        // after the start; never the start itself.
        assert_eq!(at("2025-12-31T23:00:00Z"), utc("2026-01-01T00:01:00Z"));
        assert_eq!(at("2026-01-01T00:00:00Z"), utc("2026-01-01T00:01:00Z"));
        assert_eq!(at("2026-01-01T00:00:00.001Z"), utc("2026-01-01T00:01:00Z"));
        // Between two rounds: the next one, less than TIMER later.
        assert_eq!(at("2026-01-01T00:01:00.001Z"), utc("2026-01-01T00:02:00Z"));
        assert_eq!(at("2026-01-01T00:01:59Z"), utc("2026-01-01T00:02:00Z"));
        // On a round: that round (its tick is the one that saw the job).
        assert_eq!(at("2026-01-01T00:02:00Z"), utc("2026-01-01T00:02:00Z"));
        assert_eq!(at("2026-01-02T00:00:30Z"), utc("2026-01-02T00:01:00Z"));
    }

    #[test]
    fn commands() {
        assert!(matches!(TimerCommand::parse("0"), Ok(TimerCommand::Delete)));
        assert!(matches!(
            TimerCommand::parse("delete"),
            Ok(TimerCommand::Delete)
        ));
        assert!(matches!(
            TimerCommand::parse("pause"),
            Ok(TimerCommand::Pause)
        ));
        assert!(matches!(
            TimerCommand::parse("resume"),
            Ok(TimerCommand::Resume)
        ));
        assert!(matches!(TimerCommand::parse("5"), Ok(TimerCommand::Set(_))));
        assert!(TimerCommand::parse("Pause").is_err());
    }

    #[test]
    fn control_characters_and_quotes_are_refused() {
        for bad in [
            "cron:0 3\n* * *",
            "cron:0 3\r\n* * *",
            "cron:0\t3 * * *",
            "60\n",
            "\n60",
            "6\u{0}0",
            "cron:0 3 * * *\u{7f}",
            "cron:\"0 3 * * *\"",
            "pause\n",
        ] {
            let err = TimerCommand::parse(bad).unwrap_err();
            assert!(
                matches!(err, TimerError::ForbiddenChar { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("not allowed in a timer"), "{err}");
            assert!(Timer::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Timer::parse("cron:0 1,13 * * *").is_ok());
    }

    #[test]
    fn cron_with_a_seconds_field_fires_under_a_minute() {
        let t = Timer::parse("cron:*/5 * * * * *").unwrap();
        let base = utc("2026-01-01T10:07:31Z");
        assert_eq!(t.next_after(base), Some(utc("2026-01-01T10:07:35Z")));
        // Six fields keep the crontab day-of-week numbering and its rule.
        let sunday = Timer::parse("cron:30 0 3 * * 0").unwrap();
        let next = sunday.next_after(base).unwrap().with_timezone(&Local);
        assert_eq!(next.weekday(), Weekday::Sun);
        assert_eq!(next.second(), 30);
        assert!(Timer::parse("cron:0 0 3 1 * 1").is_err());
        assert!(Timer::parse("cron:0 0 0 3 * * *").is_err());
    }

    #[test]
    fn cron_fires_at_the_next_occurrence_after_the_base() {
        let t = Timer::parse("cron:*/15 * * * *").unwrap();
        let base = utc("2026-01-01T10:07:30Z");
        let rounds = Rounds::new(base, std::time::Duration::from_secs(60));
        let next = t.next_due(Some(base), base, &rounds).unwrap();
        assert_eq!(next.minute() % 15, 0);
        assert_eq!(next.second(), 0);
        assert!(next > base && next - base <= TimeDelta::minutes(15));
        // Strictly after: a job that ran exactly at an occurrence waits for
        // the next one.
        assert_eq!(
            t.next_due(Some(next), next, &rounds).unwrap() - next,
            TimeDelta::minutes(15)
        );
        // Never run: first occurrence after it was seen, not immediately.
        assert_eq!(t.next_due(None, base, &rounds), Some(next));
    }

    #[test]
    fn cron_day_of_week_is_crontabs() {
        // 1 = Monday, 0 and 7 = Sunday, like crontab(5).
        let local = |s: &str| {
            let t = Timer::parse(s).unwrap();
            let from = Local.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).unwrap();
            let from = from.with_timezone(&Utc);
            let rounds = Rounds::new(from, std::time::Duration::from_secs(60));
            let next = t.next_due(None, from, &rounds).unwrap();
            next.with_timezone(&Local)
        };
        assert_eq!(local("cron:0 3 * * 1").weekday(), Weekday::Mon);
        assert_eq!(local("cron:0 3 * * 0").weekday(), Weekday::Sun);
        assert_eq!(local("cron:0 3 * * 7").weekday(), Weekday::Sun);
        assert_eq!(local("cron:0 3 * * sat").weekday(), Weekday::Sat);
        assert_eq!(local("cron:0 3 * * 1").hour(), 3);
        assert_eq!(translate_dow("1-5").unwrap(), "Mon,Tue,Wed,Thu,Fri");
        assert_eq!(translate_dow("5-7").unwrap(), "Sun,Fri,Sat");
        assert_eq!(translate_dow("*/2").unwrap(), "Sun,Tue,Thu,Sat");
        assert_eq!(translate_dow("mon,wed/7").unwrap(), "Mon,Wed");
    }

    #[test]
    fn bad_cron() {
        for bad in [
            "cron:",
            "cron:* * * *",
            "cron:0 0 0 * * * *",
            "cron:60 0 * * * *",
            "cron:61 * * * *",
            "cron:0 3 1 * 1",
            "cron:0 3 * * 8",
            "cron:0 3 * * 5-1",
            "cron:@reboot",
            "cron:x y z a b",
        ] {
            assert!(
                matches!(Timer::parse(bad), Err(TimerError::Cron { .. })),
                "{bad}"
            );
        }
        assert!(Timer::parse("cron:@daily").is_ok());
        assert!(Timer::parse("cron: 0 */4 * * * ").is_ok());
    }
}
