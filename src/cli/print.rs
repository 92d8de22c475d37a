//! What client verbs print: the reference's exact stdout formats.

use serde_json::Value;

/// A value on its own line; nothing for an empty one (as the reference
/// prints nothing for an absent field).
pub fn line(value: &str) {
    if !value.is_empty() {
        println!("{value}");
    }
}

/// One name a line, or the list as JSON.
pub fn list(names: &[String], as_json: bool) {
    if as_json {
        json(&serde_json::json!(names));
    } else {
        for name in names {
            println!("{name}");
        }
    }
}

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

/// The schedule.csv lines the scheduler skips, on stderr.
pub fn invalid_lines(reply: &Value) {
    for bad in reply
        .get("Invalid")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        eprintln!(
            "WARNING: schedule line {} skipped ({}): {}",
            bad.get("Line").and_then(Value::as_u64).unwrap_or(0),
            bad.get("Error").and_then(Value::as_str).unwrap_or(""),
            bad.get("Text").and_then(Value::as_str).unwrap_or("")
        );
    }
}

/// `<action> <timer> <name> ` lines, `(paused)` after paused jobs: the
/// reference's exact format, trailing space included.
pub fn schedule(jobs: &Value, verbose: bool) {
    let Some(jobs) = jobs.as_array() else { return };
    for job in jobs {
        let field = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let paused = if field("Active") == "False" {
            "(paused)"
        } else {
            ""
        };
        let mut line = format!(
            "{} {} {} {}",
            field("Action"),
            field("Timer"),
            field("Name"),
            paused
        );
        if verbose {
            let took = job
                .get("LastDurationMs")
                .and_then(Value::as_u64)
                .map(|ms| format!(" ({ms} ms)"))
                .unwrap_or_default();
            let running = if job.get("Running").and_then(Value::as_bool) == Some(true) {
                "  (running)"
            } else {
                ""
            };
            line = format!(
                "{line}\n    next: {}  last: {}  result: {}{took}{running}",
                or_dash(field("NextRun")),
                or_dash(field("LastRun")),
                or_dash(field("LastResult"))
            );
        }
        println!("{line}");
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

pub fn inspect(volume: &Value) {
    let text = |k: &str| {
        volume.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    for key in [
        "Name",
        "Mountpoint",
        "CreatedAt",
        "NonMigrable",
        "Options",
        "Labels",
        "Snapshots",
        "LatestSnapshot",
        "Mounts",
    ] {
        if let Some(value) = text(key) {
            println!("{key}: {value}");
        }
    }
}

/// `buttervolume owner <volume>` for a person.
pub fn owner(reply: &crate::api::cluster::OwnerReply) {
    let since = |t: i64| crate::cluster::records::format_time(t);
    match &reply.owner {
        Some(r) => {
            let alive = match reply.owner_alive {
                Some(true) => "lease alive",
                Some(false) => "lease expired",
                None => "lease unknown",
            };
            let use_ = if r.mounted { "in use" } else { "released" };
            println!(
                "{}: owner {} epoch {} since {} ({use_}, {alive})",
                reply.name,
                r.node,
                r.epoch,
                since(r.since)
            );
            if !r.how.is_empty() {
                println!("  {}", r.how);
            }
        }
        None => match &reply.etcd_error {
            Some(e) => println!("{}: owner unknown ({e})", reply.name),
            None => println!("{}: no owner (never mounted in cluster mode)", reply.name),
        },
    }
    if let Some(k) = &reply.known {
        println!("  known on {}: {} epoch {}", reply.node, k.node, k.epoch);
    }
    if reply.fenced {
        println!("  fenced here: read-only");
    }
    for d in &reply.diverged {
        println!("  diverged state kept here: {d}");
    }
}
