//! `Handover` on two nodes: pre-sync while the volume is in use, the final
//! incremental send once it is not, idempotent retries, and the peer ends
//! with exactly the state the app stopped with; bad input and an
//! unreachable peer give clear errors and change nothing.

use std::path::Path;

use serde_json::json;
use testkit::nodes::Nodes;

fn write_file(path: &Path, mib: usize, seed: u8) {
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    let mut data = Vec::with_capacity(mib << 20);
    for k in 0..mib {
        data.extend(block.iter().map(|b| b.wrapping_add(k as u8)));
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn handover_presyncs_then_moves_the_final_delta() {
    let n = Nodes::up("ho", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair(&a, &b);
    let b_ip = n.ip(&b);
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    let vol = n.data(&a).join("volumes/db");
    write_file(&vol.join("big"), 48, 1);
    n.ok(&a, "/VolumeDriver.Mount", json!({"Name": "db", "ID": "c1"}));
    let handover = |node: &str| {
        n.ok(
            node,
            "/VolumeDriver.Handover",
            json!({"Name": "db", "Host": b_ip}),
        )
    };

    // Bad input and an unreachable peer: clear errors, nothing lost here.
    let err = |body: serde_json::Value| {
        n.post(&a, "/VolumeDriver.Handover", &body)["Err"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let e = err(json!({"Name": "nope", "Host": b_ip}));
    assert!(e.contains("no such volume"), "{e}");
    let e = err(json!({"Name": "db", "Host": "-oProxyCommand=x"}));
    assert!(e.contains("invalid host"), "{e}");
    n.link(&b, "down");
    let e = err(json!({"Name": "db", "Host": b_ip}));
    n.link(&b, "up");
    assert!(e.contains(&format!("cannot connect to {b_ip}")), "{e}");
    let out = n.cli(&a, &["handover", "nope", &b_ip]);
    assert!(!out.status.success());
    assert!(testkit::stderr(&out).contains("no such volume"), "{out:?}");
    assert_eq!(
        std::fs::read(vol.join("big")).unwrap().len(),
        48 << 20,
        "the failed handovers touched the volume"
    );

    // In use: pre-sync, the peer gets nearly everything.
    let first = handover(&a);
    assert_eq!(first["Phase"], "presynced", "{first}");
    assert!(first["Bytes"].as_u64().unwrap() >= 48 << 20, "{first}");
    assert!(first.get("CriticalSeconds").is_none(), "{first}");

    // The app writes a little more and stops.
    write_file(&vol.join("small"), 1, 2);
    n.ok(
        &a,
        "/VolumeDriver.Unmount",
        json!({"Name": "db", "ID": "c1"}),
    );
    let last = handover(&a);
    assert_eq!(last["Phase"], "handed-over", "{last}");
    let bytes = last["Bytes"].as_u64().unwrap();
    assert!(
        bytes > 1 << 20 && bytes < 4 << 20,
        "only the delta moves: {last}"
    );
    assert!(last["CriticalSeconds"].as_f64().is_some(), "{last}");
    let snapshot = last["Snapshot"].as_str().unwrap().to_string();

    // A retry is a no-op success, and this node keeps its data.
    let again = handover(&a);
    assert_eq!(
        (&again["Phase"], &again["Snapshot"], &again["Bytes"]),
        (&json!("handed-over"), &json!(snapshot), &json!(0)),
        "{again}"
    );
    assert!(vol.join("big").exists());

    // On b, the final state restores exactly.
    n.ok(
        &b,
        "/VolumeDriver.Snapshot.Restore",
        json!({"Name": snapshot}),
    );
    for file in ["big", "small"] {
        let here = std::fs::read(vol.join(file)).unwrap();
        let there = std::fs::read(n.data(&b).join("volumes/db").join(file)).unwrap();
        assert!(here == there, "{file} differs on b");
    }

    // The CLI prints the phase.
    let out = n.cli(&a, &["handover", "db", &b_ip]);
    assert!(out.status.success(), "{}", testkit::stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "handed-over\n");
}
