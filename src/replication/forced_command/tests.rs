//! The forced command's rules, on the fake btrfs.

use super::log::LOG_ROTATE_BYTES;
use super::*;
use std::collections::HashMap;

fn config() -> Config {
    Config::resolve(&HashMap::new(), &HashMap::new()).unwrap()
}

#[test]
fn the_log_is_rotated_once_full() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([(
        "BUTTERVOLUME_STATE_PATH".to_string(),
        dir.path().display().to_string(),
    )]);
    let c = Config::resolve(&env, &HashMap::new()).unwrap();
    let log = dir.path().join("ssh-command.log");
    let old = dir.path().join("ssh-command.log.1");
    log_line(&c, Outcome::Accepted, "buttervolume list db");
    assert!(log.exists() && !old.exists());
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(LOG_ROTATE_BYTES)
        .unwrap();
    log_line(&c, Outcome::Accepted, "buttervolume list db");
    assert!(!log.exists(), "a full log is moved aside");
    assert!(std::fs::metadata(&old).unwrap().len() > LOG_ROTATE_BYTES);
    log_line(
        &c,
        refused(RefusalKind::Command)(Refusal::Protocol(ProtocolError::NotAllowed)),
        "rm -rf /",
    );
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert_eq!(fresh.lines().count(), 1);
    assert!(
        fresh.contains("outcome=refused (not an allowed command)"),
        "{fresh}"
    );
}

#[test]
fn accepts_exactly_the_protocol() {
    let c = config();
    assert_eq!(
        parse(&c, "buttervolume receive").unwrap(),
        Request::Receive {
            dir: c.snapshots_path.clone(),
            parent_uuid: None,
            zstd: false,
            json: true,
            epoch: None,
        }
    );
    let uuid = "0b7c8a34-5a2e-7b4b-9c55-0123456789ab";
    assert!(matches!(
        parse(&c, &format!("buttervolume receive --test --zstd --parent-uuid {uuid}")).unwrap(),
        Request::Receive { ref dir, parent_uuid: Some(_), zstd: true, .. } if *dir == c.test_remote_path
    ));
    assert!(matches!(
        parse(&c, "buttervolume list db").unwrap(),
        Request::List { .. }
    ));
    assert!(matches!(
        parse(&c, "btrfs receive /var/lib/buttervolume/snapshots/").unwrap(),
        Request::Receive { json: false, .. }
    ));
    assert!(matches!(
        parse(&c, "btrfs receive /var/lib/buttervolume/received").unwrap(),
        Request::Receive { .. }
    ));
    assert_eq!(
        parse(
            &c,
            "btrfs subvolume delete /var/lib/buttervolume/snapshots//db@2026-01-01T00:00:00.000000"
        )
        .unwrap(),
        Request::Delete {
            path: c.snapshots_path.join("db@2026-01-01T00:00:00.000000")
        }
    );
    assert!(matches!(
        parse(
            &c,
            "rsync --server --sender -vlogDtprze.iLsfxCIvu . /var/lib/buttervolume/volumes/db/"
        )
        .unwrap(),
        Request::Rsync { .. }
    ));
}

#[test]
fn a_peer_deletes_only_what_a_peer_sent() {
    use crate::subvolumes::fake::FakeSubvolumes;
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSubvolumes::default();
    let volume = dir.path().join("db");
    fs.create(&volume).unwrap();
    let local = dir.path().join("db@2026-01-01T00:00:00.000000");
    fs.snapshot(&volume, &local, true).unwrap();
    let marker = dir.path().join("db@2026-01-01T00:00:00.000000@peer");
    fs.snapshot(&local, &marker, true).unwrap();
    let received = dir.path().join("db@2026-01-02T00:00:00.000000");
    fs.receive(&volume, &received, "0b7c8a34-5a2e-7b4b-9c55-0123456789ab");
    let writable = dir.path().join("db@2026-01-03T00:00:00.000000");
    fs.receive(&volume, &writable, "1b7c8a34-5a2e-7b4b-9c55-0123456789ab");
    fs.set_read_only(&writable, false).unwrap();

    for refused in [&volume, &local, &writable] {
        let err = delete(&fs, refused).unwrap_err();
        assert!(matches!(err, Refusal::NotReceived(_)), "{err}");
        assert!(refused.exists());
    }
    let err = delete(&fs, &marker).unwrap_err();
    assert!(matches!(err, Refusal::Marker(_)), "{err}");
    let err = delete(&fs, &dir.path().join("db@nothing")).unwrap_err();
    assert!(matches!(err, Refusal::NoSuchSnapshot(_)), "{err}");
    delete(&fs, &received).unwrap();
    assert!(!received.exists());
}

#[test]
fn the_listing_is_in_creation_order_with_identities() {
    use crate::subvolumes::fake::FakeSubvolumes;
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSubvolumes::default();
    let volume = dir.path().join("db");
    fs.create(&volume).unwrap();
    for name in [
        "db@2099-01-01T00:00:00.000000",
        "db@2000-01-01T00:00:00.000000",
    ] {
        fs.snapshot(&volume, &dir.path().join(name), true).unwrap();
    }
    let mut out = Vec::new();
    list(&fs, &Scope::unscoped(), dir.path(), "db", &mut out);
    let listed = ListedSnapshot::parse_listing(&out).unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "db@2099-01-01T00:00:00.000000",
            "db@2000-01-01T00:00:00.000000"
        ]
    );
    assert!(listed[0].created < listed[1].created);
    let first = fs.identity(&dir.path().join(names[0])).unwrap();
    assert_eq!(listed[0].uuid, first.uuid);
    assert!(sendable(&fs, &dir.path().join(names[1])).is_ok());
    assert!(
        sendable(&fs, &volume).is_err(),
        "a writable volume is not sent"
    );
}

#[test]
fn list_newest_gives_each_volumes_newest_snapshot_by_creation() {
    use crate::subvolumes::fake::FakeSubvolumes;
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSubvolumes::default();
    for volume in ["db", "web", "empty"] {
        fs.create(&dir.path().join(volume)).unwrap();
    }
    let db = dir.path().join("db");
    // Created in this order: a name dated 2099 is not the newest.
    for name in [
        "db@2099-01-01T00:00:00.000000",
        "db@2000-01-01T00:00:00.000000",
        "web@2000-01-01T00:00:00.000000",
    ] {
        let of = dir.path().join(crate::names::volume_of(name));
        fs.snapshot(&of, &dir.path().join(name), true).unwrap();
    }
    // Newer still, but neither a marker nor a writable copy is pulled.
    let newest = dir.path().join("db@2000-01-01T00:00:00.000000");
    fs.snapshot(
        &newest,
        &dir.path().join("db@2000-01-01T00:00:00.000000@h"),
        true,
    )
    .unwrap();
    fs.snapshot(
        &db,
        &dir.path().join("db@2001-01-01T00:00:00.000000"),
        false,
    )
    .unwrap();
    let mut out = Vec::new();
    list_newest(&fs, &Scope::unscoped(), dir.path(), &mut out);
    let listed = ListedSnapshot::parse_listing(&out).unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "db@2000-01-01T00:00:00.000000",
            "web@2000-01-01T00:00:00.000000"
        ]
    );
    let db_newest = fs.identity(&newest).unwrap();
    assert_eq!(listed[0].uuid, db_newest.uuid);
    assert_eq!(listed[0].created, Some(db_newest.creation_order()));
}

#[test]
fn refuses_everything_else() {
    let c = config();
    for bad in [
        "",
        "id",
        "sh -c id",
        "buttervolume receive; id",
        "buttervolume receive && id",
        "buttervolume receive $(id)",
        "buttervolume receive `id`",
        "buttervolume receive | id",
        "buttervolume receive --parent-uuid nope",
        "buttervolume list ../x",
        "buttervolume delete db",
        "btrfs receive /",
        "btrfs receive /var/lib/buttervolume/volumes",
        "btrfs receive /var/lib/buttervolume/snapshots/../volumes",
        "btrfs subvolume delete /var/lib/buttervolume/volumes/db",
        "btrfs subvolume delete /var/lib/buttervolume/snapshots/../volumes/db",
        "btrfs subvolume snapshot /var/lib/buttervolume/volumes/db /x",
        "rsync --server -vlogDtprze.iLsfxC . /var/lib/buttervolume/volumes/db/",
        "rsync --server --sender -v . /etc/",
        "rsync --server --sender -v --rsh=evil . /var/lib/buttervolume/volumes/db/",
        "rsync --server --sender -v . /var/lib/buttervolume/volumes/../../etc",
        "buttervolume receive\nid",
    ] {
        assert!(parse(&c, bad).is_err(), "{bad:?} accepted");
    }
}
