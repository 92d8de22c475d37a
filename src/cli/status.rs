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
        // Follow-the-container state, and the owner in cluster mode.
        match (&v.follow, &v.owner) {
            (Some(f), Some(o)) => format!("{f}; owner {o}"),
            (None, Some(o)) => format!("owner {o}"),
            (f, None) => f.clone().unwrap_or_else(dash),
        },
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
    if let Some(c) = &status.cluster {
        out.push_str(&cluster(c));
    }
    out
}

/// The cluster-mode lines of `status`.
fn cluster(c: &crate::api::cluster::ClusterStatus) -> String {
    let lease = c.lease_age_seconds.map_or_else(
        || "none".into(),
        |s| format!("{} old", human_duration(s as i64)),
    );
    let mut out = format!(
        "\nCLUSTER node {}: etcd answered {} ago, lease {lease}, owns {} volume(s) in use, {} takeover(s)\n",
        c.node,
        human_duration(c.seconds_since_etcd as i64),
        c.owned.len(),
        c.takeovers
    );
    for v in &c.owned {
        let how = if v.how.is_empty() {
            String::new()
        } else {
            format!(": {}", v.how)
        };
        out.push_str(&format!("  {} epoch {}{how}\n", v.name, v.epoch));
    }
    for f in &c.fenced {
        out.push_str(&format!("  fenced (read-only): {f}\n"));
    }
    for d in &c.diverged {
        out.push_str(&format!("  diverged: {} ({})\n", d.snapshot, d.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PeerStatus, Problem, ProblemKind};

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    #[test]
    fn problems_then_one_row_per_peer() {
        let peer = |host: &str, last: Option<&str>, lag| PeerStatus {
            host: host.into(),
            sent_snapshot: last.map(|_| "db@1".into()),
            last_success: last.map(at),
            lag_seconds: lag,
            unsent_snapshots: 1,
            replicate_timer: None,
            last_failure: None,
            last_failure_at: None,
        };
        let status = StatusReply {
            now: at("2026-03-01T12:00:00Z"),
            problems: vec![Problem {
                kind: ProblemKind::NeverSent,
                volume: Some("db".into()),
                peer: Some("b".into()),
                message: "replicate:b: never".into(),
            }],
            volumes: vec![VolumeStatus {
                name: "db".into(),
                size_bytes: Some(3 << 20),
                size_measured_at: None,
                size_stale: true,
                snapshots: 2,
                newest_snapshot: Some("db@1".into()),
                newest_snapshot_created: None,
                newest_snapshot_age_seconds: Some(90),
                peers: vec![
                    peer("a", Some("2026-03-01T11:00:00Z"), 0),
                    peer("b", None, 4000),
                ],
                follow: None,
                jobs: vec![],
                running_jobs: vec!["purge:1d".into()],
                last_error: None,
                backups: vec![],
                owner: None,
            }],
            schedule_paused: false,
            cluster: None,
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "PROBLEMS (1)");
        assert_eq!(lines[1], "  never-sent            replicate:b: never");
        assert!(lines[3].starts_with("VOLUME  SIZE"), "{text}");
        let row: Vec<&str> = lines[4]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            row,
            [
                "db",
                "3.0 MiB*",
                "2",
                "90 s",
                "a",
                "60 min ago",
                "0 s",
                "1",
                "-",
                "purge:1d",
                "-"
            ]
        );
        let second: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(second, ["b", "never", "66", "min", "1"]);
        assert!(lines[6].starts_with("* changed"), "{text}");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
