//! The reference 3.13 and we share schedule.csv and its CLI.

use super::*;

fn reference_venv() -> PathBuf {
    let venv =
        PathBuf::from(std::env::var("BUTTERVOLUME_REFERENCE_VENV").unwrap_or("/opt/bv-ref".into()));
    assert!(
        venv.join("bin/python").exists(),
        "reference venv missing at {}: run scripts/reference-venv.sh",
        venv.display()
    );
    venv
}

/// Runs the reference's own Schedule / Schedule.List handlers (in-process,
/// through webtest as its test suite does) on `csv`; returns the list reply.
fn reference_schedule(csv: &Path, requests: &[serde_json::Value]) -> serde_json::Value {
    let script = r#"
import json, sys
from webtest import TestApp
import buttervolume.cli as cli
app = TestApp(cli.app)
for req in json.loads(sys.argv[1]):
    err = json.loads(app.post("/VolumeDriver.Schedule", json.dumps(req)).body)["Err"]
    assert err == "", err
print(app.get("/VolumeDriver.Schedule.List").body.decode())
"#;
    let out = std::process::Command::new(reference_venv().join("bin/python"))
        .args(["-c", script, &serde_json::to_string(requests).unwrap()])
        .env("BUTTERVOLUME_SCHEDULE", csv)
        .env("BUTTERVOLUME_SOCKET", csv.with_file_name("none.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Our listing in the reference's shape.
fn four_fields(h: &Harness) -> serde_json::Value {
    let jobs: Vec<_> = h
        .sched
        .list()
        .unwrap()
        .jobs
        .iter()
        .map(|j| {
            json!({"Name": j.name, "Action": j.action, "Timer": j.timer,
                   "Active": if j.active { "True" } else { "False" }})
        })
        .collect();
    json!({"Err": "", "Schedule": jobs})
}

#[tokio::test]
async fn the_reference_and_we_share_schedule_csv() {
    let h = Harness::new();
    std::fs::create_dir_all(h.csv().parent().unwrap()).unwrap();
    // The reference writes the file...
    let theirs = reference_schedule(
        &h.csv(),
        &[
            json!({"Name": "db", "Action": "snapshot", "Timer": "60"}),
            json!({"Name": "db", "Action": "synchronize:h1,h2", "Timer": 30}),
            json!({"Name": "web", "Action": "purge:1h:1d:1w:4w:1y", "Timer": "1440"}),
            json!({"Name": "db", "Action": "snapshot", "Timer": "pause"}),
        ],
    );
    let written_by_reference = std::fs::read(h.csv()).unwrap();
    // ... we read it the same way ...
    assert_eq!(four_fields(&h), theirs);
    assert_eq!(h.tick_at(t0()).await.dispatched, 2);
    // ... and write it byte for byte as it would.
    h.schedule("snapshot", "resume", "db");
    h.schedule("snapshot", "pause", "db");
    assert_eq!(std::fs::read(h.csv()).unwrap(), written_by_reference);
    h.schedule("replicate:127.0.0.2", "60", "web");
    h.schedule("synchronize:h1,h2", "delete", "db");
    // The reference reads what we wrote, and keeps changing it.
    let theirs = reference_schedule(
        &h.csv(),
        &[json!({"Name": "db", "Action": "snapshot", "Timer": "resume"})],
    );
    assert_eq!(four_fields(&h), theirs);
    assert_eq!(theirs["Schedule"].as_array().unwrap().len(), 3);
}

/// The reference CLI drives our scheduler endpoints and prints what ours
/// prints.
#[test]
fn the_reference_cli_schedules_on_our_daemon() {
    // Loopback hosts only, and no volume "db" here: a job that ran could
    // not reach anything.
    let d = testkit::Daemon::start("sched-refcli");
    let reference = |args: &[&str]| {
        std::process::Command::new(reference_venv().join("bin/buttervolume"))
            .args(args)
            .env("BUTTERVOLUME_SOCKET", &d.socket)
            .output()
            .unwrap()
    };
    for args in [
        ["schedule", "snapshot", "60", "db"],
        ["schedule", "replicate:127.0.0.2", "60", "db"],
        ["schedule", "purge:1h:1d:1w:4w:1y", "1440", "db"],
        ["schedule", "synchronize:127.0.0.3,127.0.0.4", "30", "web"],
        ["schedule", "replicate:127.0.0.2", "pause", "db"],
        ["schedule", "synchronize:127.0.0.3,127.0.0.4", "0", "web"],
    ] {
        let out = reference(&args);
        assert!(out.status.success(), "{args:?}: {}", testkit::stderr(&out));
    }
    let theirs = reference(&["scheduled"]);
    let ours = d.cli(&["scheduled"]);
    assert_eq!(testkit::stdout(&ours), testkit::stdout(&theirs));
    assert_eq!(
        testkit::stdout(&ours),
        "snapshot 60 db \nreplicate:127.0.0.2 60 db (paused)\npurge:1h:1d:1w:4w:1y 1440 db \n"
    );
    // Errors reach the reference CLI as failures.
    let out = reference(&["schedule", "snapshot", "soon", "db"]);
    assert!(!out.status.success());
    assert!(
        testkit::stderr(&out).contains("Invalid timer"),
        "{}",
        testkit::stderr(&out)
    );
    assert!(reference(&["scheduled", "pause"]).status.success());
    let out = reference(&["scheduled"]);
    assert!(!out.status.success());
    assert!(testkit::stderr(&out).contains(GLOBALLY_PAUSED));
    assert!(reference(&["scheduled", "resume"]).status.success());
    assert_eq!(
        testkit::stdout(&reference(&["scheduled"])),
        testkit::stdout(&ours)
    );
}
