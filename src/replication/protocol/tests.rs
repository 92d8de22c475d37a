//! The peer protocol both ways: every request, every listing.

use super::*;

#[test]
fn every_request_round_trips() {
    let uuid = "0b7c8a34-5a2e-7b4b-9c55-0123456789ab".to_string();
    for request in [
        PeerRequest::Receive {
            test: false,
            zstd: false,
            parent_uuid: None,
            epoch: None,
        },
        PeerRequest::Receive {
            test: true,
            zstd: true,
            parent_uuid: Some(uuid),
            epoch: Some(7),
        },
        PeerRequest::Alive { from: "n1".into() },
        PeerRequest::List {
            volume: "db".into(),
            test: true,
        },
        PeerRequest::ListNewest { test: false },
        PeerRequest::ListNewest { test: true },
        PeerRequest::Delete {
            snapshot: "db@2026-01-01T00:00:00.000000".into(),
            test: false,
        },
        PeerRequest::Send {
            snapshot: "db@2026-01-01T00:00:00.000002".into(),
            parent: Some("db@2026-01-01T00:00:00.000001".into()),
            test: true,
        },
        PeerRequest::Send {
            snapshot: "db@2026-01-01T00:00:00.000002".into(),
            parent: None,
            test: false,
        },
        PeerRequest::BtrfsReceive {
            dir: "/var/lib/buttervolume/snapshots".into(),
        },
        PeerRequest::BtrfsDelete {
            dir: "/var/lib/buttervolume/snapshots".into(),
            snapshot: "db@2026-01-01T00:00:00.000000".into(),
        },
        PeerRequest::Rsync {
            flags: vec!["-logDtprze.iLsfxCIvu".into()],
            dir: "/var/lib/buttervolume/volumes".into(),
            volume: "db".into(),
        },
    ] {
        let command = request.to_command();
        assert_eq!(PeerRequest::parse(&command), Ok(request), "{command}");
    }
}

#[test]
fn list_newest_takes_no_argument_but_test() {
    for command in [
        "buttervolume list-newest db",
        "buttervolume list-newest --all",
        "buttervolume list-newest --test --test",
    ] {
        assert_eq!(
            PeerRequest::parse(command),
            Err(ProtocolError::NotAllowed),
            "{command}"
        );
    }
}

#[test]
fn rsync_accepts_what_sync_and_rsync_a_send() {
    for flags in [
        "-logDtprze.iLsfxCIvu",
        "-logDtpre.iLsfxCIvu",
        "-vlogDtpre.iLsfxCIvu",
        "-vlHogDtpAXre.iLsfxCIvu",
        "-logDtprSe.iLsfxCIvu --numeric-ids",
        "-logDtpre.iLsfxCIvu --safe-links",
        "-nlogDtpre.iLsfxCIvu --bwlimit=10",
    ] {
        let command =
            format!("rsync --server --sender {flags} . /var/lib/buttervolume/volumes/db/");
        assert!(PeerRequest::parse(&command).is_ok(), "{command} refused");
    }
}

#[test]
fn rsync_refuses_symlink_following_and_unknown_options() {
    for flags in [
        // -L / --copy-links, -k / --copy-dirlinks, as rsync sends them.
        "-lLogDtpre.iLsfxCIvu",
        "-lkogDtpre.iLsfxCIvu",
        "-KlogDtpre.iLsfxCIvu",
        "-logDtpre.iLsfxCIvu --copy-unsafe-links",
        "-logDtpre.iLsfxCIvu --copy-links",
        "-logDtpre.iLsfxCIvu --copy-dirlinks",
        "-logDtpre.iLsfxCIvu --keep-dirlinks",
        "-logDtpre.iLsfxCIvu --remove-source-files",
        "-logDtpre.iLsfxCIvu --delete",
        "-logDtpre.iLsfxCIvu --files-from=/etc/passwd",
        "-logDtpre.iLsfxCIvu --include-from=/etc/shadow",
        "-logDtpre.iLsfxCIvu --rsync-path=x",
        "-R",
        "-W",
        "-e.iLs=fx",
        "logDtpr",
    ] {
        let command =
            format!("rsync --server --sender {flags} . /var/lib/buttervolume/volumes/db/");
        assert!(PeerRequest::parse(&command).is_err(), "{command} accepted");
    }
    // Without --sender, rsync would write into the volume.
    assert!(PeerRequest::parse(
        "rsync --server -logDtpre.iLsfxCIvu . /var/lib/buttervolume/volumes/db/"
    )
    .is_err());
}

#[test]
fn send_names_one_snapshot_and_a_parent_of_the_same_volume() {
    for bad in [
        "buttervolume send db",
        "buttervolume send db@1@10.0.0.2",
        "buttervolume send db@1 --parent other@1",
        "buttervolume send db@1 --parent db@0@host",
        "buttervolume send ../volumes/db",
        "buttervolume send db@1 --parent",
        "buttervolume send db@1 --test --parent db@0",
        "buttervolume send db@1 extra",
    ] {
        assert!(PeerRequest::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn listing_lines_round_trip() {
    let line = ListedSnapshot {
        name: "db@2026-01-01T00:00:00.000000".into(),
        uuid: "0b7c8a34-5a2e-7b4b-9c55-0123456789ab".into(),
        received_uuid: None,
        read_only: true,
        created: Some((7, 258)),
        lineage: Vec::new(),
        parent_uuid: Some("1b7c8a34-5a2e-7b4b-9c55-0123456789ab".into()),
    };
    // A line from a peer without the creation order still reads.
    let old = r#"{"name":"db@x","uuid":"u","received_uuid":null,"read_only":true}"#;
    let old = serde_json::from_str::<ListedSnapshot>(old).unwrap();
    assert_eq!((old.created, old.parent_uuid), (None, None));
    let text = serde_json::to_string(&line).unwrap();
    assert_eq!(serde_json::from_str::<ListedSnapshot>(&text).unwrap(), line);
}

#[test]
fn listing_lines_with_unsafe_names_are_dropped_before_any_use() {
    let good = ListedSnapshot::example("db@2026-01-01T00:00:00.000000", "u1", None, Some(1), &[]);
    let mut bad = good.clone();
    bad.name = "db@x/../../../../etc/shadow".into();
    let mut hidden = good.clone();
    hidden.name = "../db@1".into();
    let reply: String = [&good, &bad, &hidden]
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    let listed = ListedSnapshot::parse_listing(reply.as_bytes()).unwrap();
    assert_eq!(listed, vec![good]);
    // Unreadable JSON still refuses the whole listing.
    assert!(ListedSnapshot::parse_listing(b"{not json}\n").is_err());
}
