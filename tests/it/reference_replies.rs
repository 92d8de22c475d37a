//! The reference's own requests (those of buttervolume's test suite, tag
//! 3.13 and master) get the reference's replies: exactly its keys, its
//! error texts first. Our extras come only when the request asks for them
//! (`Detail`, a field the reference never sends), which our CLI does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testkit::{raw_request, Daemon};

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn schedule_list(d: &Daemon, body: &[u8]) -> Value {
    let (status, text) = raw_request(&d.socket, "GET", "/VolumeDriver.Schedule.List", body);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The reference's own `Schedule.List` handler (in-process, through
/// webtest as its test suite runs it) reading `csv`.
fn reference_listing(csv: &Path) -> Value {
    let venv =
        PathBuf::from(std::env::var("BUTTERVOLUME_REFERENCE_VENV").unwrap_or("/opt/bv-ref".into()));
    assert!(
        venv.join("bin/python").exists(),
        "reference venv missing at {}: run scripts/reference-venv.sh",
        venv.display()
    );
    let script = r#"
from webtest import TestApp
import buttervolume.cli as cli
print(TestApp(cli.app).get("/VolumeDriver.Schedule.List").body.decode())
"#;
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .env("BUTTERVOLUME_SCHEDULE", csv)
        .env("BUTTERVOLUME_SOCKET", csv.with_file_name("none.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Schedule.List: the reference's request gets the reference's reply, byte
/// for byte the JSON its own handler makes of the same schedule.csv; our
/// run history and the skipped lines only with `Detail`.
#[test]
fn schedule_list_has_the_references_keys_unless_detail_is_asked() {
    let d = Daemon::start("refreply-list");
    for (action, timer) in [("snapshot", "60"), ("purge:1h:1d:1w:4w:1y", "1440")] {
        d.ok(
            "/VolumeDriver.Schedule",
            json!({"Name": "db", "Action": action, "Timer": timer}),
        );
    }
    d.ok(
        "/VolumeDriver.Schedule",
        json!({"Name": "db", "Action": "snapshot", "Timer": "pause"}),
    );
    let csv = d.root.join("config/schedule.csv");
    let ours = schedule_list(&d, b"");
    assert_eq!(ours, reference_listing(&csv));
    assert_eq!(keys(&ours), set(&["Err", "Schedule"]));
    for job in ours["Schedule"].as_array().unwrap() {
        assert_eq!(keys(job), set(&["Name", "Action", "Timer", "Active"]));
    }
    assert_eq!(ours["Schedule"][0]["Active"], "False");

    // A line the scheduler skips: named only to whoever asks for the detail.
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("db,snapshot every hour,60,True\r\n");
    std::fs::write(&csv, text).unwrap();
    assert_eq!(keys(&schedule_list(&d, b"")), set(&["Err", "Schedule"]));
    let detailed = schedule_list(&d, br#"{"Detail": true}"#);
    assert_eq!(keys(&detailed), set(&["Err", "Schedule", "Invalid"]));
    assert_eq!(detailed["Invalid"][0]["Line"], 3, "{detailed}");
    let job = &detailed["Schedule"][1];
    assert_eq!(
        keys(job),
        set(&[
            "Name",
            "Action",
            "Timer",
            "Active",
            "NextRun",
            "LastRun",
            "LastResult",
            "LastDurationMs",
            "Running",
            "Skips",
        ])
    );
    assert!(job["NextRun"].is_string(), "{job}");
}

/// The requests of the reference master's
/// `test_a_schedule_nobody_could_run_is_refused`: each refusal starts with
/// the reference's words, ours follow, and nothing is written.
#[test]
fn a_schedule_nobody_could_run_is_refused_in_the_references_words() {
    let d = Daemon::start("refreply-sched");
    for (request, start) in [
        (
            json!({"Name": "db", "Action": "replicat:localhost", "Timer": 60}),
            r#"Invalid action "replicat:localhost": unknown action"#,
        ),
        (
            json!({"Name": "db", "Action": "purge:5x", "Timer": 60}),
            r#"Invalid action "purge:5x": "#,
        ),
        (
            json!({"Name": "db", "Action": "snapshot", "Timer": "demain"}),
            r#"Invalid timer "demain": "#,
        ),
        (
            json!({"Name": "db", "Action": "snapshot", "Timer": "²"}),
            r#"Invalid timer "²": "#,
        ),
        (
            json!({"Name": "db/../..", "Action": "snapshot", "Timer": 60}),
            r#"Invalid characters in volume name "db/../..": "#,
        ),
        (
            json!({"Name": "db", "Action": "snapshot", "Timer": "cron:0 0 * *"}),
            "Invalid timer (cron expression",
        ),
        (
            json!({"Name": "db", "Action": "snapshot", "Timer": "99999999999"}),
            r#"Invalid timer "99999999999": too large"#,
        ),
        (
            json!({"Name": "db", "Action": "replicate:a b", "Timer": 60}),
            r#"Invalid action "replicate:a b": invalid host"#,
        ),
    ] {
        let (_, reply) = d.post("/VolumeDriver.Schedule", &request);
        assert_eq!(keys(&reply), set(&["Err"]), "{request}: {reply}");
        let err = reply["Err"].as_str().unwrap();
        assert!(err.starts_with(start), "{request}: {err}");
        // The master's own words for a pattern's bad unit follow.
        if request["Action"] == "purge:5x" {
            assert!(err.contains("unknown unit 'x'"), "{err}");
        }
    }
    assert_eq!(schedule_list(&d, b""), json!({"Err": "", "Schedule": []}));
}

/// Unscheduling, pausing or resuming a job nobody scheduled answers
/// success, as 3.13 (the reference master refuses it, but the cluster's
/// deploy handler unschedules on every redeploy and stops at the first
/// failed command); and a line whose action is refused today, written by
/// an older version or by hand, can still be deleted (the master's
/// `test_a_job_written_before_this_validation_can_still_be_deleted`).
#[test]
fn unscheduling_answers_as_the_reference() {
    let d = Daemon::start("refreply-unsched");
    for timer in ["0", "delete", "pause", "resume"] {
        let (_, reply) = d.post(
            "/VolumeDriver.Schedule",
            &json!({"Name": "db", "Action": "snapshot", "Timer": timer}),
        );
        assert_eq!(reply, json!({"Err": ""}), "{timer}");
    }
    let csv = d.root.join("config/schedule.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    std::fs::write(&csv, "db,replicat:localhost,60,True\r\n").unwrap();
    let (_, reply) = d.post(
        "/VolumeDriver.Schedule",
        &json!({"Name": "db", "Action": "replicat:localhost", "Timer": 0}),
    );
    assert_eq!(reply, json!({"Err": ""}));
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), "");
    assert_eq!(schedule_list(&d, b""), json!({"Err": "", "Schedule": []}));
}

/// Every other reply of the reference's request set, key for key. Get
/// adds `CreatedAt` and `Status`, which Docker's protocol has and `docker
/// volume inspect` shows; Snapshot adds `Created`, as the reference master
/// does.
#[test]
fn every_other_reply_has_the_references_keys() {
    let d = Daemon::start("refreply-keys");
    let post = |path: &str, body: Value| d.post(path, &body).1;
    assert_eq!(
        post("/VolumeDriver.List", json!({})),
        json!({"Volumes": [], "Err": ""})
    );
    assert_eq!(
        post("/VolumeDriver.Create", json!({"Name": "db"})),
        json!({"Err": ""})
    );
    assert_eq!(
        post("/VolumeDriver.Create", json!({"Name": "db"})),
        json!({"Err": ""})
    );
    let mountpoint = d.volumes().join("db").to_str().unwrap().to_string();
    for path in ["/VolumeDriver.Mount", "/VolumeDriver.Path"] {
        assert_eq!(
            post(path, json!({"Name": "db"})),
            json!({"Mountpoint": mountpoint, "Err": ""}),
            "{path}"
        );
    }
    assert_eq!(
        post("/VolumeDriver.Unmount", json!({"Name": "db"})),
        json!({"Err": ""})
    );
    let get = post("/VolumeDriver.Get", json!({"Name": "db"}));
    assert_eq!(keys(&get), set(&["Volume", "Err"]));
    assert_eq!(
        keys(&get["Volume"]),
        set(&["Name", "Mountpoint", "CreatedAt", "Status"])
    );
    assert_eq!(
        post("/VolumeDriver.List", json!({})),
        json!({"Volumes": [{"Name": "db"}], "Err": ""})
    );

    let snapshot = post("/VolumeDriver.Snapshot", json!({"Name": "db"}));
    assert_eq!(keys(&snapshot), set(&["Err", "Snapshot", "Created"]));
    let name = snapshot["Snapshot"].as_str().unwrap().to_string();
    assert_eq!(
        d.get("/VolumeDriver.Snapshot.List").1,
        json!({"Err": "", "Snapshots": [name]})
    );
    assert_eq!(
        d.get("/VolumeDriver.Snapshot.List/db").1,
        json!({"Err": "", "Snapshots": [name]})
    );
    let restored = post("/VolumeDriver.Snapshot.Restore", json!({"Name": name}));
    assert_eq!(keys(&restored), set(&["Err", "VolumeBackup"]));
    assert_eq!(
        post(
            "/VolumeDriver.Clone",
            json!({"Name": "db", "Target": "db2"})
        ),
        json!({"Err": "", "VolumeCloned": "db2"})
    );
    assert_eq!(
        post(
            "/VolumeDriver.Schedule",
            json!({"Name": "db", "Action": "snapshot", "Timer": 60})
        ),
        json!({"Err": ""})
    );
    for path in [
        "/VolumeDriver.Schedule.Pause",
        "/VolumeDriver.Schedule.Resume",
    ] {
        assert_eq!(post(path, json!({})), json!({"Err": ""}), "{path}");
    }
    let backup = restored["VolumeBackup"].as_str().unwrap();
    assert_eq!(
        post("/VolumeDriver.Snapshot.Remove", json!({"Name": backup})),
        json!({"Err": ""})
    );
    assert_eq!(
        post("/VolumeDriver.Remove", json!({"Name": "db2"})),
        json!({"Err": ""})
    );
}
