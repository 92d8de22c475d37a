//! Every VolumeDriver endpoint and every bad input, against a real daemon on
//! a real btrfs, through its unix socket.

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use testkit::{
    http_answer, raw_request, raw_request_tolerant, read_http_request, send_raw, wait_until,
    Daemon, HttpRequest,
};

mod process;

#[test]
fn activate_and_capabilities() {
    let d = Daemon::start("activate");
    // Exactly the reference's replies: these two carry no Err.
    let (status, reply) = d.post("/Plugin.Activate", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(reply, json!({"Implements": ["VolumeDriver"]}));
    let (status, reply) = d.post("/VolumeDriver.Capabilities", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(reply, json!({"Capabilities": {"Scope": "local"}}));
    // An empty body and no content type are fine, as Docker sends them.
    let (status, body) = raw_request(&d.socket, "POST", "/Plugin.Activate", b"");
    assert_eq!(status, 200);
    assert!(body.contains("VolumeDriver"), "{body}");
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn create_get_path_list_remove() {
    let d = Daemon::start("lifecycle");
    d.ok("/VolumeDriver.Create", json!({"Name": "web", "Opts": {}}));
    let path = d.volumes().join("web");
    assert!(
        buttervolume::btrfs::is_subvolume(&path),
        "no subvolume at {path:?}"
    );
    // Creating again is success with no change.
    std::fs::write(path.join("keep"), "x").unwrap();
    d.ok("/VolumeDriver.Create", json!({"Name": "web"}));
    assert!(path.join("keep").exists());

    let reply = d.ok("/VolumeDriver.Get", json!({"Name": "web"}));
    assert_eq!(reply["Volume"]["Name"], "web");
    assert_eq!(reply["Volume"]["Mountpoint"], path.to_str().unwrap());
    let created = reply["Volume"]["CreatedAt"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created).expect("CreatedAt is RFC 3339");
    assert_eq!(reply["Volume"]["Status"]["NonMigrable"], false);

    let reply = d.ok("/VolumeDriver.Path", json!({"Name": "web"}));
    assert_eq!(reply["Mountpoint"], path.to_str().unwrap());

    d.ok("/VolumeDriver.Create", json!({"Name": "db"}));
    // A plain directory and a hidden name are not volumes.
    std::fs::create_dir(d.volumes().join("notasubvolume")).unwrap();
    let reply = d.ok("/VolumeDriver.List", json!({}));
    assert_eq!(reply["Volumes"], json!([{"Name": "db"}, {"Name": "web"}]));

    d.ok("/VolumeDriver.Remove", json!({"Name": "web"}));
    assert!(!path.exists());
    let err = d.err("/VolumeDriver.Remove", json!({"Name": "web"}));
    assert!(err.ends_with("no such volume"), "{err}");
    for endpoint in [
        "/VolumeDriver.Get",
        "/VolumeDriver.Path",
        "/VolumeDriver.Mount",
    ] {
        let err = d.err(endpoint, json!({"Name": "web", "ID": "x"}));
        assert_eq!(err, "web: no such volume", "{endpoint}");
    }
    // Unmount of an unknown volume is success, as in the reference.
    d.ok("/VolumeDriver.Unmount", json!({"Name": "web", "ID": "x"}));
}

#[test]
fn create_options_set_attributes_and_metadata() {
    let d = Daemon::start("options");
    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "nocow", "Opts": {"copyonwrite": "false"}}),
    );
    let flags = buttervolume::btrfs::inode_flags(&d.volumes().join("nocow")).unwrap();
    assert_ne!(flags & buttervolume::btrfs::FS_NOCOW_FL, 0, "NOCOW not set");
    // Files created inside inherit it.
    let file = d.volumes().join("nocow/data");
    std::fs::write(&file, "x").unwrap();
    let flags = buttervolume::btrfs::inode_flags(&file).unwrap();
    assert_ne!(flags & buttervolume::btrfs::FS_NOCOW_FL, 0);

    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "packed", "Opts": {"compression": "zstd", "nonmigrable": "true"}}),
    );
    let prop = buttervolume::btrfs::get_xattr(&d.volumes().join("packed"), "btrfs.compression")
        .unwrap()
        .unwrap();
    assert_eq!(prop, b"zstd");
    let reply = d.ok("/VolumeDriver.Get", json!({"Name": "packed"}));
    assert_eq!(reply["Volume"]["Status"]["NonMigrable"], true);
    assert_eq!(reply["Volume"]["Status"]["Options"]["compression"], "zstd");

    d.ok(
        "/VolumeDriver.Create",
        json!({"Name": "dflt", "Opts": {"compression": "true"}}),
    );
    let flags = buttervolume::btrfs::inode_flags(&d.volumes().join("dflt")).unwrap();
    assert_ne!(flags & buttervolume::btrfs::FS_COMPR_FL, 0, "+c not set");
}

#[test]
fn bad_options_create_nothing() {
    let d = Daemon::start("badopts");
    let cases = [
        (json!({"compression": "brotli"}), "zstd"),
        (json!({"copyonwrite": "maybe"}), "\"true\" or \"false\""),
        (
            json!({"nonmigrable": "yes please"}),
            "\"true\" or \"false\"",
        ),
        (json!({"size": "10G"}), "Unknown option 'size'. Options are"),
        (
            json!({"copyonwrite": "false", "compression": "zstd"}),
            "copyonwrite=false",
        ),
    ];
    for (opts, expected) in cases {
        let err = d.err("/VolumeDriver.Create", json!({"Name": "v", "Opts": opts}));
        assert!(err.contains(expected), "{opts}: {err}");
        assert!(!d.volumes().join("v").exists(), "{opts} left a volume");
    }
    // Nothing half-made in staging either.
    let staging = d.volumes().join(".staging");
    let leftovers = std::fs::read_dir(&staging).map(|r| r.count()).unwrap_or(0);
    assert_eq!(leftovers, 0);
}

/// Issue 21: the reference's own first scenario (its test.py `test`),
/// request for request, with its exact replies; Mounts and Unmounts carry
/// no ID there. A Mount without an ID is not counted (the reference keeps
/// no mount state), so it does not hold the volume against Remove.
#[test]
fn the_references_first_scenario_with_mounts_without_an_id() {
    let d = Daemon::start("refscenario");
    assert_eq!(
        d.post("/VolumeDriver.List", &json!({})).1,
        json!({"Volumes": [], "Err": ""})
    );
    let name = "buttervolume-test-0123456789abcdef";
    let path = d.volumes().join(name);
    let create = json!({"Name": name});
    assert_eq!(
        d.post("/VolumeDriver.Create", &create).1,
        json!({"Err": ""})
    );
    let reply = d.ok("/VolumeDriver.Get", create.clone());
    assert_eq!(reply["Volume"]["Name"], name);
    assert_eq!(reply["Volume"]["Mountpoint"], path.to_str().unwrap());
    assert_eq!(
        d.post("/VolumeDriver.Create", &create).1,
        json!({"Err": ""})
    );
    assert_eq!(
        d.ok("/VolumeDriver.List", json!({}))["Volumes"],
        json!([{"Name": name}])
    );
    for _ in 0..2 {
        let reply = d.ok("/VolumeDriver.Mount", create.clone());
        assert_eq!(reply["Mountpoint"], path.to_str().unwrap());
    }
    let err = d.err(
        "/VolumeDriver.Mount",
        json!({"Name": "buttervolume-test-other"}),
    );
    assert!(err.ends_with("no such volume"), "{err}");
    let reply = d.ok("/VolumeDriver.Path", create.clone());
    assert_eq!(reply["Mountpoint"], path.to_str().unwrap());
    let err = d.err(
        "/VolumeDriver.Path",
        json!({"Name": "buttervolume-test-other"}),
    );
    assert!(err.ends_with("no such volume"), "{err}");
    assert_eq!(
        d.post("/VolumeDriver.Unmount", &create).1,
        json!({"Err": ""})
    );
    assert_eq!(
        d.post(
            "/VolumeDriver.Unmount",
            &json!({"Name": "buttervolume-test-other"})
        )
        .1,
        json!({"Err": ""})
    );
    // Two Mounts, one Unmount, and still removable: nothing was counted.
    assert_eq!(
        d.post("/VolumeDriver.Remove", &create).1,
        json!({"Err": ""})
    );
    assert!(!path.exists());
    let err = d.err("/VolumeDriver.Remove", create.clone());
    assert!(err.ends_with("no such volume"), "{err}");
    let err = d.err("/VolumeDriver.Get", create.clone());
    assert!(err.ends_with("no such volume"), "{err}");
    assert_eq!(d.ok("/VolumeDriver.List", json!({}))["Volumes"], json!([]));
}

/// Docker's mounts (with an ID) are counted as before, whatever ID-less
/// requests come in between: an ID-less Unmount releases none of them, an
/// empty ID is no ID.
#[test]
fn mounts_without_an_id_leave_dockers_counts_alone() {
    let d = Daemon::start("idless");
    d.ok("/VolumeDriver.Create", json!({"Name": "m"}));
    d.ok("/VolumeDriver.Mount", json!({"Name": "m", "ID": "a"}));
    d.ok("/VolumeDriver.Mount", json!({"Name": "m"}));
    d.ok("/VolumeDriver.Mount", json!({"Name": "m", "ID": ""}));
    let reply = d.ok("/VolumeDriver.Get", json!({"Name": "m"}));
    assert_eq!(reply["Volume"]["Status"]["Mounts"], 1);
    d.ok("/VolumeDriver.Unmount", json!({"Name": "m"}));
    let err = d.err("/VolumeDriver.Remove", json!({"Name": "m"}));
    assert!(err.contains("in use: 1 mount(s)"), "{err}");
    d.ok("/VolumeDriver.Unmount", json!({"Name": "m", "ID": "a"}));
    d.ok("/VolumeDriver.Remove", json!({"Name": "m"}));
}

/// Issue 21: the reference's texts for bad option values, byte for byte
/// (its test.py `test_compression_option`, and its plugin's copyonwrite
/// text); good values answer exactly `{"Err": ""}`. Unknown keys are
/// refused with the text of the reference's master (3.13 ignored them).
#[test]
fn option_errors_are_the_references_texts() {
    let d = Daemon::start("opttexts");
    let create = |name: &str, opts: serde_json::Value| {
        d.post("/VolumeDriver.Create", &json!({"Name": name, "Opts": opts}))
            .1
    };
    assert_eq!(
        create("c1", json!({"compression": "true"})),
        json!({"Err": ""})
    );
    assert_eq!(
        create("c2", json!({"compression": "invalid"})),
        json!({"Err": "Invalid option for compression: invalid. Valid options: false, true, zlib, lzo, zstd"})
    );
    assert_eq!(
        create("c3", json!({"compression": "false"})),
        json!({"Err": ""})
    );
    assert_eq!(
        create("c4", json!({"copyonwrite": "Maybe"})),
        json!({"Err": "Invalid option for copyonwrite: maybe. Set to \"true\" or \"false\"."})
    );
    let err = create("c5", json!({"size": "1G"}))["Err"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("Unknown option 'size'. Options are copyonwrite, compression, "),
        "{err}"
    );
    let err = create("c6", json!({"purge:5x": "60"}))["Err"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("Unknown option 'purge:5x'. Options are "),
        "{err}"
    );
    let err = create("c7", json!({"snapshot": "often"}))["Err"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(
            "Invalid value 'often' for option 'snapshot': it must be a number of minutes"
        ),
        "{err}"
    );
    for refused in ["c2", "c4", "c5", "c6", "c7"] {
        assert!(!d.volumes().join(refused).exists(), "{refused} was created");
    }
    assert_eq!(
        d.ok("/VolumeDriver.List", json!({}))["Volumes"],
        json!([{"Name": "c1"}, {"Name": "c3"}])
    );
}

#[test]
fn bad_names_touch_nothing_outside() {
    let d = Daemon::start("badnames");
    let outside = d.root.join("x");
    for name in [
        "../x",
        "x/y",
        "x$(touch /tmp/pwned)",
        "",
        ".hidden",
        "a@b",
        "a\u{0}b",
        "-x",
    ] {
        for endpoint in [
            "/VolumeDriver.Create",
            "/VolumeDriver.Remove",
            "/VolumeDriver.Get",
            "/VolumeDriver.Mount",
            "/VolumeDriver.Path",
        ] {
            let err = d.err(endpoint, json!({"Name": name, "ID": "1"}));
            assert!(
                err.contains("name") || err.contains("\"@\""),
                "{endpoint} {name:?}: {err}"
            );
        }
    }
    let long = "a".repeat(256);
    let err = d.err("/VolumeDriver.Create", json!({"Name": long}));
    assert!(err.contains("255"), "{err}");
    assert!(!outside.exists());
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    assert_eq!(
        std::fs::read_dir(d.volumes())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != ".staging")
            .count(),
        0
    );
}

#[test]
fn malformed_requests_get_json_errors_and_server_survives() {
    let d = Daemon::start("malformed");
    let (status, body) = raw_request(&d.socket, "POST", "/VolumeDriver.Create", b"{not json");
    assert_eq!(status, 200);
    assert!(body.contains("invalid JSON"), "{body}");
    let (_, body) = raw_request(
        &d.socket,
        "POST",
        "/VolumeDriver.Create",
        br#"{"Name": 42}"#,
    );
    assert!(body.contains("invalid request"), "{body}");
    let (_, body) = raw_request(
        &d.socket,
        "POST",
        "/VolumeDriver.Create",
        br#"{"Name": "v", "Opts": {"a": 1}}"#,
    );
    assert!(body.contains("invalid request"), "{body}");
    let (_, body) = raw_request(&d.socket, "POST", "/VolumeDriver.Get", br#"[]"#);
    assert!(body.contains("invalid request"), "{body}");
    let (status, body) = raw_request(&d.socket, "POST", "/VolumeDriver.Nope", b"{}");
    assert_eq!(status, 404);
    assert!(body.contains("unknown endpoint"), "{body}");
    let big = vec![b' '; (1 << 20) + 10];
    let (status, body) = raw_request(&d.socket, "POST", "/VolumeDriver.Create", &big);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("Err"), "{body}");
    // Garbage that is not HTTP at all.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"\x00\x01\x02 garbage\r\n\r\n").unwrap();
    drop(s);
    // Still serving.
    d.ok("/VolumeDriver.Create", json!({"Name": "alive"}));
    let (status, _) = send_raw(
        &d.socket,
        b"POST /VolumeDriver.List HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
}

#[test]
fn mount_counts_per_id_survive_restart_and_block_remove() {
    let mut d = Daemon::start("mounts");
    d.ok("/VolumeDriver.Create", json!({"Name": "m"}));
    d.ok("/VolumeDriver.Mount", json!({"Name": "m", "ID": "a"}));
    d.ok("/VolumeDriver.Mount", json!({"Name": "m", "ID": "a"}));
    d.ok("/VolumeDriver.Mount", json!({"Name": "m", "ID": "b"}));
    d.ok("/VolumeDriver.Unmount", json!({"Name": "m", "ID": "a"}));
    let err = d.err("/VolumeDriver.Remove", json!({"Name": "m"}));
    assert!(err.contains("in use"), "{err}");

    d.stop();
    d.spawn();
    let reply = d.ok("/VolumeDriver.Get", json!({"Name": "m"}));
    assert_eq!(reply["Volume"]["Status"]["Mounts"], 2);
    let err = d.err("/VolumeDriver.Remove", json!({"Name": "m"}));
    assert!(err.contains("in use"), "{err}");
    d.ok("/VolumeDriver.Unmount", json!({"Name": "m", "ID": "a"}));
    d.ok("/VolumeDriver.Unmount", json!({"Name": "m", "ID": "b"}));
    d.ok("/VolumeDriver.Remove", json!({"Name": "m"}));
}
