//! `buttervolume status [--json]`: the problems, then one table row per
//! volume and peer (volumes with a problem first). `--json` prints the
//! endpoint's reply as is.

use crate::api::{StatusReply, VolumeStatus};
use crate::status::human_duration;

/// The table (or the JSON) on stdout.
pub fn print(status: &StatusReply, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(status).expect("the status serializes")
        );
    } else {
        print!("{}", render(status));
    }
}

/// Bytes as KiB, MiB... with one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

const HEADER: [&str; 11] = [
    "VOLUME",
    "SIZE",
    "SNAPSHOTS",
    "NEWEST",
    "PEER",
    "LAST SUCCESS",
    "LAG",
    "UNSENT",
    "FOLLOW",
    "RUNNING",
    "LAST ERROR",
];

/// The rows of one volume: one per peer (at least one).
fn rows(v: &VolumeStatus, now: chrono::DateTime<chrono::Utc>) -> Vec<[String; 11]> {
    let dash = || "-".to_string();
    let size = match v.size_bytes {
        Some(b) if v.size_stale => format!("{}*", human_bytes(b)),
        Some(b) => human_bytes(b),
        None => "?".into(),
    };
    let newest = v
        .newest_snapshot_age_seconds
        .map_or_else(dash, human_duration);
    let running = if v.running_jobs.is_empty() {
        dash()
    } else {
        v.running_jobs.join(",")
    };
    let first = [
        v.name.clone(),
        size,
        v.snapshots.to_string(),
        newest,
        dash(),
        dash(),
        dash(),
        dash(),
        // Follow-the-container state: not known yet.
        v.follow.clone().unwrap_or_else(dash),
        running,
        v.last_error.clone().unwrap_or_else(dash),
    ];
    if v.peers.is_empty() {
        return vec![first];
    }
    v.peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut row = if i == 0 {
                first.clone()
            } else {
                std::array::from_fn(|_| String::new())
            };
            row[4] = p.host.clone();
            row[5] = p.last_success.map_or_else(
                || "never".into(),
                |t| format!("{} ago", human_duration((now - t).num_seconds().max(0))),
            );
            row[6] = human_duration(p.lag_seconds);
            row[7] = p.unsent_snapshots.to_string();
            row
        })
        .collect()
}

/// The text `status` prints.
pub fn render(status: &StatusReply) -> String {
    let mut out = String::new();
    if status.problems.is_empty() {
        out.push_str("no problem\n");
    } else {
        out.push_str(&format!("PROBLEMS ({})\n", status.problems.len()));
        for p in &status.problems {
            out.push_str(&format!("  {:<21} {}\n", p.kind.as_str(), p.message));
        }
    }
    out.push('\n');
    let mut table: Vec<[String; 11]> = vec![HEADER.map(String::from)];
    let mut stale = false;
    for v in &status.volumes {
        stale |= v.size_stale && v.size_bytes.is_some();
        table.extend(rows(v, status.now));
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if stale {
        out.push_str("* changed since its size was measured (a new measurement is under way)\n");
    }
    out
}
