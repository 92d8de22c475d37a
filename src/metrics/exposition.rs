//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! `# HELP` and `# TYPE` once per family, then its samples, label values
//! escaped (`\`, `"`, line feed), histograms as cumulative `_bucket`
//! series with `le`, then `_sum` and `_count`.
//!
//! Why by hand: most of our metrics are read from the disk at scrape time
//! (snapshots, markers, the scheduler's listing), not kept in a registry,
//! so a client library would only add a layer to fill and empty on every
//! scrape; the format is a page of rules, checked here by unit tests and
//! by `promtool check metrics` and a real Prometheus in the integration
//! tests.

use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Observations in fixed buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, increasing; `+Inf` is implicit.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus parses it.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's Display is exact and never uses an exponent.
        format!("{value}")
    }
}

impl Exposition {
    /// Starts a family: its help text and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family (`name` may carry a suffix such as
    /// `_bucket`).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// The series of one histogram of the current family.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (i, count) in histogram.counts.iter().enumerate() {
            cumulative += count;
            let le = histogram
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_value(*b));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut page = Exposition::default();
        page.family("x_bytes", Kind::Gauge, "a \\ help\nline");
        page.sample("x_bytes", &[], 3.0);
        page.sample("x_bytes", &[("a", "q\"b\\c\nd"), ("b", "")], 0.5);
        page.sample("x_bytes", &[("a", "n")], f64::NAN);
        page.sample("x_bytes", &[("a", "i")], f64::INFINITY);
        page.sample("x_bytes", &[("a", "big")], 1e21);
        assert_eq!(
            page.finish(),
            "# HELP x_bytes a \\\\ help\\nline\n\
             # TYPE x_bytes gauge\n\
             x_bytes 3\n\
             x_bytes{a=\"q\\\"b\\\\c\\nd\",b=\"\"} 0.5\n\
             x_bytes{a=\"n\"} NaN\n\
             x_bytes{a=\"i\"} +Inf\n\
             x_bytes{a=\"big\"} 1000000000000000000000\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        static BOUNDS: [f64; 2] = [0.125, 1.0];
        let mut h = Histogram::new(&BOUNDS);
        for v in [0.0625, 0.125, 0.5, 3.0] {
            h.observe(v);
        }
        let mut page = Exposition::default();
        page.family("d_seconds", Kind::Histogram, "d");
        page.histogram("d_seconds", &[("k", "v")], &h);
        let text = page.finish();
        assert!(
            text.contains("d_seconds_bucket{k=\"v\",le=\"0.125\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{k=\"v\",le=\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_sum{k=\"v\"} 3.6875\n"), "{text}");
        assert!(text.contains("d_seconds_count{k=\"v\"} 4\n"), "{text}");
    }
}
