//! The one place figures are computed and written: samples of durations
//! (median, percentiles, max) and the markdown table every benchmark prints.

use std::fmt::{self, Display};
use std::time::{Duration, Instant};

/// Durations of one measured operation, in the order they were taken.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    /// Runs `f` `runs` times, timing each call.
    pub fn time(runs: usize, mut f: impl FnMut()) -> Samples {
        Samples((0..runs).map(|_| timed(&mut f).1).collect())
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The median (the mean of the two middle values for an even count),
    /// in milliseconds.
    pub fn p50(&self) -> f64 {
        let s = self.sorted_ms();
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    /// The nearest-rank percentile `p` (0-100), in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        let s = self.sorted_ms();
        if s.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }

    pub fn max(&self) -> f64 {
        self.sorted_ms().last().copied().unwrap_or(f64::NAN)
    }

    pub fn total(&self) -> Duration {
        self.0.iter().sum()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The last `n` samples.
    pub fn last(&self, n: usize) -> Samples {
        Samples(self.0[self.0.len().saturating_sub(n)..].to_vec())
    }

    fn sorted_ms(&self) -> Vec<f64> {
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        ms
    }
}

/// Runs `f` once: its value and how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// Milliseconds as the tables show them: two decimals under 100 ms.
pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v < 100.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// A markdown table: a header row, then rows of as many cells.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "a row of {cells:?}");
        self.rows.push(cells);
    }
}

impl Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| {} |", self.header.join(" | "))?;
        writeln!(f, "|{}", "---|".repeat(self.header.len()))?;
        for row in &self.rows {
            writeln!(f, "| {} |", row.join(" | "))?;
        }
        Ok(())
    }
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        Samples(ms.iter().map(|&m| Duration::from_millis(m)).collect())
    }

    #[test]
    fn medians_percentiles_and_max() {
        assert_eq!(samples(&[3, 1, 2]).p50(), 2.0);
        assert_eq!(samples(&[4, 1, 3, 2]).p50(), 2.5);
        let hundred = samples(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(hundred.pct(95.0), 95.0);
        assert_eq!(hundred.pct(100.0), 100.0);
        assert_eq!(hundred.max(), 100.0);
        assert_eq!(hundred.last(2).0.len(), 2);
        assert!(Samples::default().p50().is_nan());
    }

    #[test]
    fn a_markdown_table() {
        let mut t = Table::new(&["what", "figure"]);
        t.row(vec!["a".into(), ms(1.234)]);
        t.row(vec!["b".into(), ms(1234.0)]);
        assert_eq!(
            t.to_string(),
            "| what | figure |\n|---|---|\n| a | 1.23 ms |\n| b | 1234 ms |\n"
        );
    }
}
