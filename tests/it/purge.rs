//! Purge through the socket and the CLI, on a real daemon and real btrfs:
//! the references' vectors replayed on real snapshots with `"At"` and
//! `"Dryrun"` (exact, no clock games), 3.13's reply shapes and error text,
//! explain, and a received snapshot that must not steer our purge.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use testkit::{stderr, stdout, Daemon};

const PURGE: &str = "/VolumeDriver.Snapshots.Purge";

fn cases(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(data["dtformat"], buttervolume::names::DTFORMAT);
    data["cases"].as_array().unwrap().clone()
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The names in a reply's `Explain` whose entry says `key` is false.
fn explained_without(reply: &Value, key: &str) -> BTreeSet<String> {
    reply["Explain"]
        .as_array()
        .unwrap_or_else(|| panic!("no Explain: {reply}"))
        .iter()
        .filter(|e| e[key] == false)
        .map(|e| e["Snapshot"].as_str().unwrap().to_string())
        .collect()
}

/// A case's snapshots made on the daemon's btrfs, read-only, in name
/// order (a marker after the snapshot it marks), deleted on drop.
struct Made<'a> {
    d: &'a Daemon,
    names: Vec<String>,
}

impl<'a> Made<'a> {
    fn new(d: &'a Daemon, case: &Value) -> (Made<'a>, String) {
        let mut names: Vec<String> = set(&case["snapshots"]).into_iter().collect();
        names.sort();
        let volume = names
            .first()
            .map_or("x", |n| n.split('@').next().unwrap())
            .to_string();
        if !d.volumes().join(&volume).exists() {
            d.ok("/VolumeDriver.Create", json!({"Name": volume}));
        }
        for name in &names {
            assert!(name.starts_with(&format!("{volume}@")), "{name}");
            buttervolume::btrfs::snapshot(
                &d.volumes().join(&volume),
                &d.snapshots().join(name),
                true,
            )
            .unwrap();
        }
        (Made { d, names }, volume)
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = buttervolume::btrfs::delete_subvolume(&self.d.snapshots().join(name));
        }
    }
}

fn ask(d: &Daemon, volume: &str, case: &Value) -> Value {
    let (status, reply) = d.post(
        PURGE,
        &json!({"Name": volume, "Pattern": case["pattern"], "Dryrun": true,
                "At": case["now"], "Explain": true}),
    );
    assert_eq!(status, 200);
    reply
}

/// 3.13's 300 vectors in `age` mode (the default). The reply's `Purged`
/// is the vector's set minus the send parents this plugin protects (the
/// newest marker per host and its snapshot), and `PatternKeeps` says what
/// the pattern alone decides: exactly the vector's set.
#[test]
fn the_313_vectors_replay_on_real_snapshots() {
    let d = Daemon::start("purge-313");
    let mut failures = Vec::new();
    let mut protected = 0;
    for (i, case) in cases("purge-vectors.json").iter().enumerate() {
        let (made, volume) = Made::new(&d, case);
        let reply = ask(&d, &volume, case);
        let expected = set(&case["purged"]);
        let by_pattern = explained_without(&reply, "PatternKeeps");
        let purged = set(&reply["Purged"]);
        let listed: BTreeSet<String> = reply["Explain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Snapshot"].as_str().unwrap().to_string())
            .collect();
        let spared: Vec<&String> = by_pattern.difference(&purged).collect();
        protected += spared.len();
        let only_protected_spared = spared.iter().all(|name| {
            reply["Explain"].as_array().unwrap().iter().any(|e| {
                e["Snapshot"] == name.as_str()
                    && e["Keep"] == true
                    && e["Reason"].as_str().unwrap().starts_with("protected as")
            })
        });
        if by_pattern != expected
            || !purged.is_subset(&expected)
            || !only_protected_spared
            || purged != explained_without(&reply, "Keep")
            || listed != made.names.iter().cloned().collect()
        {
            failures.push(format!("case {i} ({}): {reply}", case["pattern"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The vectors name markers: the protection was exercised.
    assert!(protected > 40, "{protected}");
}

/// Upstream master's 300 vectors: every one in `calendar` mode, and the
/// counted, single-step and refused ones in `age` mode too. Master keeps
/// every sent marker and its snapshot; each case has at most one marker
/// per host, so its set is exactly this plugin's `Purged`.
#[test]
fn the_upstream_master_vectors_replay_on_real_snapshots() {
    let age = Daemon::start("purge-master-age");
    let calendar = Daemon::builder("purge-master-cal")
        .env("BUTTERVOLUME_PURGE_TIMEFRAMES", "calendar")
        .env(
            "BUTTERVOLUME_VOLUMES_PATH",
            &format!("{}/", age.volumes().display()),
        )
        .env(
            "BUTTERVOLUME_SNAPSHOTS_PATH",
            &format!("{}/", age.snapshots().display()),
        )
        .start();
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (i, case) in cases("purge-vectors-upstream-master.json")
        .iter()
        .enumerate()
    {
        let text = case["pattern"].as_str().unwrap();
        let in_313 = !text.contains('/') && text.contains(':');
        let daemons: Vec<&Daemon> = if in_313 {
            vec![&calendar]
        } else {
            vec![&calendar, &age]
        };
        let (made, volume) = Made::new(&age, case);
        for d in daemons {
            replayed += 1;
            let reply = ask(d, &volume, case);
            let ok = if case["refused"] == true {
                reply == json!({"Err": "Invalid purge pattern"})
            } else {
                let listed: BTreeSet<String> = reply["Explain"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["Snapshot"].as_str().unwrap().to_string())
                    .collect();
                reply["Err"] == ""
                    && set(&reply["Purged"]) == set(&case["purged"])
                    && explained_without(&reply, "Keep") == set(&case["purged"])
                    && listed == made.names.iter().cloned().collect()
            };
            if !ok {
                let mode = d
                    .env_value("BUTTERVOLUME_PURGE_TIMEFRAMES")
                    .unwrap_or("age");
                failures.push(format!("case {i} ({text}, {mode}): {reply}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(replayed > 450, "{replayed}");
}

/// 3.13 answers `{"Err": ""}` to a purge, `{"Err": "Invalid purge
/// pattern"}` to a pattern it cannot read, whatever the reason; keys are
/// added only when the client asks (a dry run's `Purged`, `Explain`).
/// The CLI says why a pattern is refused.
#[test]
fn purge_replies_have_313s_shapes() {
    let d = Daemon::start("purge-shapes");
    d.ok("/VolumeDriver.Create", json!({"Name": "p"}));
    let old = "p@2020-01-01T00:00:00.000000";
    buttervolume::btrfs::snapshot(&d.volumes().join("p"), &d.snapshots().join(old), true).unwrap();
    let post = |body: Value| d.post(PURGE, &body).1;
    // 3.13's test.py: a purge before the volume has any snapshot.
    assert_eq!(
        post(json!({"Name": "none", "Pattern": "2h:2h"})),
        json!({"Err": ""})
    );
    assert_eq!(
        post(json!({"Name": "p", "Pattern": "1h:1d", "Dryrun": true})),
        json!({"Err": "", "Purged": [old]})
    );
    let explained = post(
        json!({"Name": "p", "Pattern": "1h:1d", "Dryrun": true, "Explain": true,
                                "At": "2020-01-01T00:30:00.000000"}),
    );
    assert_eq!(
        explained,
        json!({"Err": "", "Purged": [], "Explain": [{"Snapshot": old, "Keep": true,
               "Reason": "younger than 1h, where the pattern keeps everything",
               "PatternKeeps": true}]})
    );
    for bad in ["60m:plop:3000m", "1h/4:1d", "0h", "1x", "2h/1.5"] {
        assert_eq!(
            post(json!({"Name": "p", "Pattern": bad})),
            json!({"Err": "Invalid purge pattern"}),
            "{bad}"
        );
    }
    let err = d.err(
        PURGE,
        json!({"Name": "p", "Pattern": "1h:1d", "At": "2020-01-01T00:30:00.000000"}),
    );
    assert!(err.contains("only accepted with Dryrun"), "{err}");
    assert!(d.snapshots().join(old).exists());
    // 3.13 accepts unsorted patterns and sorts them.
    assert_eq!(
        post(json!({"Name": "p", "Pattern": "60m:120m:300m:240m:180m"})),
        json!({"Err": ""})
    );
    assert!(!d.snapshots().join(old).exists());

    let out = d.cli(&["purge", "1h/4:1d", "p"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.starts_with("ERROR:root:Invalid purge pattern") && text.contains("1h/4:1d/3"),
        "{text}"
    );
}

/// `purge --dryrun --explain [--at] [--json]`: one line per snapshot,
/// kept or deleted, with its reason.
#[test]
fn the_cli_explains_a_purge() {
    let d = Daemon::start("purge-explain");
    d.ok("/VolumeDriver.Create", json!({"Name": "e"}));
    let names = [
        "e@2026-01-01T10:05:00.000000",
        "e@2026-01-01T10:10:00.000000",
        "e@2026-01-01T11:50:00.000000",
        "e@garbage",
    ];
    for name in names {
        buttervolume::btrfs::snapshot(&d.volumes().join("e"), &d.snapshots().join(name), true)
            .unwrap();
    }
    let at = "2026-01-01T12:00:00.000000";
    let out = d.cli(&["purge", "--dryrun", "--explain", "--at", at, "1h/24", "e"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("keep   e@2026-01-01T10:05:00.000000  the survivor of timeframe"));
    assert!(lines[1].starts_with("delete e@2026-01-01T10:10:00.000000  a duplicate in timeframe"));
    assert!(lines[1].ends_with(": e@2026-01-01T10:05:00.000000 is kept"));
    assert!(lines[2].contains("younger than 1h"), "{}", lines[2]);
    assert!(lines[3].contains("undatable"), "{}", lines[3]);
    let out = d.cli(&[
        "purge",
        "--dryrun",
        "--explain",
        "--json",
        "--at",
        at,
        "1h/24",
        "e",
    ]);
    let entries: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 4);
    assert_eq!(entries[1]["Keep"], false);
    // --at is a dry run's.
    let out = d.cli(&["purge", "--at", at, "1h/24", "e"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(d.snapshots().read_dir().unwrap().count(), 4);
}

/// Issue 20 item 3, as the peer does it: a received `logs@<2 h ago − 1
/// s>` (the peer picks the name) made `purge 1h:1d logs` delete our own
/// `logs@<2 h ago>`: both fell in the same hour, and the older is kept. It
/// just arrived, so it is aged from its arrival here and ours stays; and
/// even as of a time where both share an hour, ours is the survivor.
/// Fails on the old code.
#[test]
fn a_peers_snapshot_name_does_not_steer_our_purge() {
    let d = Daemon::start("purge-received");
    d.ok("/VolumeDriver.Create", json!({"Name": "logs"}));
    let fmt = |t: chrono::NaiveDateTime| {
        buttervolume::names::format_timestamp(t, buttervolume::names::DTFORMAT)
    };
    let now = buttervolume::names::local_now();
    let two_hours = chrono::Duration::hours(2);
    let ours = format!("logs@{}", fmt(now - two_hours));
    let theirs = format!(
        "logs@{}",
        fmt(now - two_hours - chrono::Duration::seconds(1))
    );
    buttervolume::btrfs::snapshot(&d.volumes().join("logs"), &d.snapshots().join(&ours), true)
        .unwrap();
    // The peer's snapshot, sent as a stream under its name.
    let staging = d.root.join("peer");
    std::fs::create_dir_all(&staging).unwrap();
    buttervolume::btrfs::snapshot(&d.volumes().join("logs"), &staging.join(&theirs), true).unwrap();
    let stream = std::process::Command::new("btrfs")
        .args(["send", "-q"])
        .arg(staging.join(&theirs))
        .output()
        .unwrap();
    assert!(stream.status.success());
    let receive = testkit::output_with_stdin(
        std::process::Command::new(testkit::bin())
            .arg("ssh-command")
            .env("SSH_ORIGINAL_COMMAND", "buttervolume receive")
            .envs(d.env.iter().cloned()),
        &stream.stdout,
    );
    assert!(receive.status.success(), "{}", stderr(&receive));
    buttervolume::btrfs::delete_subvolume(&staging.join(&theirs)).unwrap();
    let identity = buttervolume::btrfs::identity(&d.snapshots().join(&theirs)).unwrap();
    assert!(identity.received_uuid.is_some() && identity.read_only);

    let reply = d.ok(
        PURGE,
        json!({"Name": "logs", "Pattern": "1h:1d", "Dryrun": true, "Explain": true}),
    );
    assert_eq!(reply["Purged"], json!([]), "{reply}");
    // A real purge deletes nothing of ours.
    d.ok(PURGE, json!({"Name": "logs", "Pattern": "1h:1d"}));
    assert!(d.snapshots().join(&ours).exists());

    // Once they share a timeframe, a local snapshot taken after the
    // received one arrived survives it, though the received one is older.
    d.ok("/VolumeDriver.Snapshot.Remove", json!({"Name": ours}));
    let local = d.ok("/VolumeDriver.Snapshot", json!({"Name": "logs"}))["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let arrived = chrono::DateTime::from_timestamp(identity.otime, 0)
        .unwrap()
        .with_timezone(&chrono::Local)
        .naive_local();
    let taken = buttervolume::names::parse_timestamp(
        local.split('@').nth(1).unwrap(),
        buttervolume::names::DTFORMAT,
    )
    .unwrap();
    assert!(arrived < taken);
    let mut checked = 0;
    for (patterns, minutes) in [
        (["1w:4w", "1w/4"], 10080),
        (["4w:16w", "4w/4"], 40320),
        (["1y:4y", "1y/4"], 525600),
    ] {
        let timeframe = |t| buttervolume::purge::calendar::timeframe(t, minutes);
        if timeframe(arrived) != timeframe(taken) {
            continue;
        }
        // Both two timeframes old (by age, 3.13's rule), in the same
        // calendar timeframe (master's).
        let at = fmt(taken + chrono::Duration::minutes(2 * minutes as i64 + 1));
        for pattern in patterns {
            let reply = d.ok(
                PURGE,
                json!({"Name": "logs", "Pattern": pattern, "Dryrun": true, "At": at}),
            );
            assert_eq!(
                reply["Purged"],
                json!([theirs]),
                "{pattern} at {at}: {reply}"
            );
            checked += 1;
        }
        break;
    }
    assert_eq!(checked, 2, "no timeframe holds both {arrived} and {taken}");
}

/// 3.13's own purge test, its requests replayed on this daemon: twenty
/// hourly snapshots, a sent marker and an undatable name; `2h:2h`
/// deletes 18, `2h:4h:8h:16h` 15 (as of one second after the newest was
/// taken), an unsorted pattern is its sorted self. Upstream master's
/// test: a 3-hour-old snapshot and its marker survive `2h`.
#[test]
fn the_313_purge_test_counts() {
    let d = Daemon::start("purge-313-counts");
    d.ok("/VolumeDriver.Create", json!({"Name": "t"}));
    let t = buttervolume::names::parse_timestamp(
        "2026-06-01T12:00:00.000000",
        buttervolume::names::DTFORMAT,
    )
    .unwrap();
    let fmt = |t: chrono::NaiveDateTime| {
        buttervolume::names::format_timestamp(t, buttervolume::names::DTFORMAT)
    };
    let mut names: Vec<String> = (0..20)
        .map(|h| format!("t@{}", fmt(t - chrono::Duration::hours(h))))
        .collect();
    names.push(format!("t@{}@127.1.2.3", fmt(t)));
    names.push("t@invalid".into());
    for name in &names {
        buttervolume::btrfs::snapshot(&d.volumes().join("t"), &d.snapshots().join(name), false)
            .unwrap();
    }
    let at = fmt(t + chrono::Duration::seconds(1));
    let purged = |pattern: &str| {
        d.ok(
            PURGE,
            json!({"Name": "t", "Pattern": pattern, "Dryrun": true, "At": at}),
        )["Purged"]
            .clone()
    };
    for (pattern, deleted) in [("2h:2h", 18), ("2h:4h:8h:16h", 15)] {
        let reply = purged(pattern);
        assert_eq!(
            reply.as_array().unwrap().len(),
            deleted,
            "{pattern}: {reply}"
        );
    }
    // 3.13 sorts an unsorted pattern (its count, 18, depends on how long
    // its test took: ages there are not whole hours).
    assert_eq!(
        purged("60m:120m:300m:240m:180m"),
        purged("60m:120m:180m:240m:300m")
    );

    d.ok("/VolumeDriver.Create", json!({"Name": "m"}));
    let old = format!(
        "m@{}",
        fmt(buttervolume::names::local_now() - chrono::Duration::hours(3))
    );
    let trace = format!("{old}@127.1.2.3");
    for name in [&old, &trace] {
        buttervolume::btrfs::snapshot(&d.volumes().join("m"), &d.snapshots().join(name), true)
            .unwrap();
    }
    assert_eq!(
        d.post(PURGE, &json!({"Name": "m", "Pattern": "2h"})).1,
        json!({"Err": ""})
    );
    assert!(d.snapshots().join(&old).exists() && d.snapshots().join(&trace).exists());
}
