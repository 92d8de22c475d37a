//! Names: which volume and snapshot names are acceptable, and the timestamp
//! format that makes `<volume>@<timestamp>` snapshot names.
//!
//! Every name that reaches the filesystem goes through here first. A name is
//! joined to a data directory only after it has been proven to be a single
//! path component made of safe characters, so no request can reach outside
//! VOLUMES_PATH / SNAPSHOTS_PATH (the reference accepted `../x`).
//!
//! # The length rule
//!
//! A directory entry holds at most 255 bytes, and a volume's name grows
//! on its way through the plugin. The longest names ever built from a
//! volume name `<v>` are:
//!
//! - snapshots and restore backups `<v>@<timestamp>` (26 bytes of timestamp
//!   with the default DTFORMAT; [`MAX_TIMESTAMP_BYTES`] are reserved), and
//!   the same name once received on a peer;
//! - sent markers `<v>@<timestamp>@<host>`;
//! - staging names `<v>.<pid>.<counter>.<nanos>` (create, restore, clone:
//!   at most [`MAX_STAGING_SUFFIX_BYTES`] more);
//! - receives work under `.recv.<pid>.<counter>.<nanos>`, whatever `<v>` is.
//!
//! So Create (and a clone or restore into a new name) accepts volume names
//! of at most [`MAX_VOLUME_BYTES`] = 160 bytes, and a host that ends up in
//! a sent marker is at most [`MAX_MARKER_HOST_BYTES`] = 61 bytes: 160 + 1 +
//! 32 + 1 + 61 = 255. A longer name that already exists (made by another
//! tool or an older version) is still listed and usable as far as its
//! length allows; only new names are held to the rule.

use chrono::{NaiveDateTime, Timelike};

/// The reference's default timestamp format (Python strftime syntax).
pub const DTFORMAT: &str = "%Y-%m-%dT%H:%M:%S.%f";

/// The longest name a directory entry can have.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest volume name Create accepts (see the module doc).
pub const MAX_VOLUME_BYTES: usize = 160;

/// Room reserved for a snapshot's timestamp (the default DTFORMAT gives 26).
pub const MAX_TIMESTAMP_BYTES: usize = 32;

/// The longest host a sent marker `<volume>@<timestamp>@<host>` may carry.
pub const MAX_MARKER_HOST_BYTES: usize =
    MAX_NAME_BYTES - MAX_VOLUME_BYTES - 1 - MAX_TIMESTAMP_BYTES - 1;

/// The longest suffix a staging name adds: `.<pid>.<counter>.<nanos>` with
/// a u32 pid, a u64 counter and nanoseconds below 10^9.
pub const MAX_STAGING_SUFFIX_BYTES: usize = 1 + 10 + 1 + 20 + 1 + 9;

const _: () = assert!(MAX_VOLUME_BYTES + MAX_STAGING_SUFFIX_BYTES <= MAX_NAME_BYTES);
const _: () = assert!(MAX_VOLUME_BYTES + 1 + MAX_TIMESTAMP_BYTES <= MAX_NAME_BYTES);
const _: () = assert!(MAX_MARKER_HOST_BYTES >= 40);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a volume name is required")]
    Empty,
    #[error("{0:?} is too long: names are at most 255 bytes")]
    TooLong(String),
    #[error("volume name {name:?} is {len} bytes long: new volume names are at most {MAX_VOLUME_BYTES} bytes, so that its snapshots, sent markers and staging names fit in 255 bytes")]
    VolumeTooLong { name: String, len: usize },
    #[error("host {host:?} is {len} bytes long: a replication host is at most {MAX_MARKER_HOST_BYTES} bytes, so that the sent markers <volume>@<timestamp>@<host> fit in 255 bytes")]
    HostTooLong { host: String, len: usize },
    #[error("\"@\" is illegal in a volume name: {0:?}")]
    At(String),
    #[error(
        "Invalid characters in volume name {0:?}: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
    )]
    Volume(String),
    #[error(
        "invalid snapshot name {0:?}: expected <volume>@<timestamp> made of letters, digits and '_.:@-'"
    )]
    Snapshot(String),
    #[error("invalid host {0:?}: expected a host name or IP address (letters, digits and '.-_:', not starting with '-'; an IPv6 address without brackets), optionally user@host")]
    Host(String),
}

/// Checks a volume name against Docker's own rule `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn check_volume(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.into()));
    }
    if name.contains('@') {
        return Err(NameError::At(name.into()));
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::Volume(name.into()))
    }
}

/// Checks the name of a volume about to be made (Create, the target of a
/// clone or of a restore into a new name): [`check_volume`] plus the length
/// rule of the module doc, so every name derived from it fits.
pub fn check_new_volume(name: &str) -> Result<(), NameError> {
    check_volume(name)?;
    if name.len() > MAX_VOLUME_BYTES {
        return Err(NameError::VolumeTooLong {
            name: name.into(),
            len: name.len(),
        });
    }
    Ok(())
}

/// Checks that `host` fits in a sent marker (the length rule of the module
/// doc). Its characters are checked where it is used.
pub fn check_marker_host(host: &str) -> Result<(), NameError> {
    if host.len() > MAX_MARKER_HOST_BYTES {
        return Err(NameError::HostTooLong {
            host: host.into(),
            len: host.len(),
        });
    }
    Ok(())
}

/// Checks a peer host as `send`, `sync` and the `replicate:`/`synchronize:`
/// actions take it: a host name, IPv4 or IPv6 address (no brackets: it ends
/// up in marker names), optionally preceded by `user@`; at most 253 bytes,
/// never starting with `-` (ssh and rsync would read an option). The one
/// host rule: scheduling and connecting agree.
pub fn check_host(host: &str) -> Result<(), NameError> {
    let (user, name) = match host.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, host),
    };
    let ok_name = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    let ok_user = user.is_none_or(|u| {
        !u.is_empty()
            && !u.starts_with('-')
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if ok_name && ok_user {
        Ok(())
    } else {
        Err(NameError::Host(host.into()))
    }
}

/// Checks a snapshot name: `<volume>@<rest>` where `<rest>` (timestamp, and
/// `@<host>` for sent markers) uses only `[A-Za-z0-9_.:@-]`. It is always a
/// single, non-hidden path component.
pub fn check_snapshot(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.into()));
    }
    let Some((volume, rest)) = name.split_once('@') else {
        return Err(NameError::Snapshot(name.into()));
    };
    let rest_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if check_volume(volume).is_ok() && rest_ok {
        Ok(())
    } else {
        Err(NameError::Snapshot(name.into()))
    }
}

/// True for a sent marker `<volume>@<timestamp>@<host>`, false for a
/// snapshot `<volume>@<timestamp>`.
pub fn is_marker(name: &str) -> bool {
    name.matches('@').count() > 1
}

/// The volume a snapshot (or sent marker) belongs to.
pub fn volume_of(snapshot: &str) -> &str {
    snapshot.split('@').next().unwrap_or(snapshot)
}

/// The timestamp part of a snapshot or marker name (`None` without one).
pub fn timestamp_of(name: &str) -> Option<&str> {
    name.split('@').nth(1)
}

/// The host of a sent marker `<volume>@<timestamp>@<host>`, `None` for
/// anything else. The host is everything after the second `@`: it may be
/// `user@host` itself.
pub fn marker_host(name: &str) -> Option<&str> {
    is_marker(name)
        .then(|| name.splitn(3, '@').nth(2))
        .flatten()
}

/// The peer a host argument names: `user@host` is `host` (status groups
/// by it: one node, whichever user a job logs in as).
pub fn peer_of(host: &str) -> &str {
    host.rsplit_once('@').map_or(host, |(_, h)| h)
}

/// The snapshot a sent marker marks (`<volume>@<timestamp>`); a snapshot
/// name is returned as is.
pub fn marker_source(name: &str) -> &str {
    match marker_host(name) {
        Some(host) => &name[..name.len() - host.len() - 1],
        None => name,
    }
}

/// Converts a Python strftime format to chrono's: Python's `%f` is six digits
/// of microseconds, chrono's `%f` is nanoseconds.
fn chrono_format(python_format: &str) -> String {
    python_format.replace("%f", "%6f")
}

/// Formats a local time the way the reference names its snapshots.
pub fn format_timestamp(time: NaiveDateTime, python_format: &str) -> String {
    time.format(&chrono_format(python_format)).to_string()
}

/// Parses a snapshot timestamp. Like Python's strptime with `%f`, between one
/// and six fractional digits are accepted.
pub fn parse_timestamp(text: &str, python_format: &str) -> Option<NaiveDateTime> {
    if python_format == DTFORMAT {
        // Fast path for the default format, with strptime's 1-6 digit %f.
        let (main, frac) = text.split_once('.')?;
        if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let base = NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S").ok()?;
        let micros: u32 = format!("{frac:0<6}").parse().ok()?;
        return base.with_nanosecond(micros * 1000);
    }
    NaiveDateTime::parse_from_str(text, &chrono_format(python_format)).ok()
}

/// The current local time, the clock the reference names snapshots with.
pub fn local_now() -> NaiveDateTime {
    chrono::Local::now().naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_dockers_rule() {
        for ok in ["a", "db", "my_vol.1-x", "0", &"a".repeat(255)] {
            assert_eq!(check_volume(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "x/y",
            "x$(id)",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "a\0b",
            "é",
            &"a".repeat(256),
        ] {
            assert!(check_volume(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(check_volume("a@b"), Err(NameError::At("a@b".into())));
    }

    #[test]
    fn new_volume_names_leave_room_for_every_suffix() {
        let max = "v".repeat(MAX_VOLUME_BYTES);
        assert_eq!(check_new_volume(&max), Ok(()));
        let over = "v".repeat(MAX_VOLUME_BYTES + 1);
        let err = check_new_volume(&over).unwrap_err();
        assert_eq!(
            err,
            NameError::VolumeTooLong {
                name: over.clone(),
                len: MAX_VOLUME_BYTES + 1
            }
        );
        assert!(err.to_string().contains("at most 160 bytes"), "{err}");
        // Existing long names stay valid names (listed, removable).
        assert_eq!(check_volume(&over), Ok(()));
        assert!(check_new_volume("../x").is_err());

        // The longest snapshot, marker and staging names fit.
        let stamp = format_timestamp(local_now(), DTFORMAT);
        assert!(stamp.len() <= MAX_TIMESTAMP_BYTES);
        let snapshot = format!("{max}@{stamp}");
        assert_eq!(check_snapshot(&snapshot), Ok(()));
        let host = "h".repeat(MAX_MARKER_HOST_BYTES);
        assert_eq!(check_marker_host(&host), Ok(()));
        let marker = format!("{snapshot}@{host}");
        assert!(marker.len() <= MAX_NAME_BYTES, "{}", marker.len());
        assert_eq!(check_snapshot(&marker), Ok(()));
        let staging = format!("{max}.{}.{}.{}", u32::MAX, u64::MAX, 999_999_999);
        assert!(staging.len() <= MAX_NAME_BYTES);
        let err = check_marker_host(&format!("{host}h")).unwrap_err();
        assert!(err.to_string().contains("at most 61 bytes"), "{err}");
    }

    #[test]
    fn a_markers_host_may_name_a_user() {
        let marker = "db@2026-12-01T10:00:00.000000@backup@10.0.0.2";
        assert_eq!(marker_host(marker), Some("backup@10.0.0.2"));
        assert_eq!(marker_source(marker), "db@2026-12-01T10:00:00.000000");
        let plain = "db@2026-12-01T10:00:00.000000@10.0.0.2";
        assert_eq!(marker_host(plain), Some("10.0.0.2"));
        assert_eq!(marker_source(plain), "db@2026-12-01T10:00:00.000000");
        assert_eq!(marker_host("db@2026-12-01T10:00:00.000000"), None);
        assert_eq!(
            marker_source("db@2026-12-01T10:00:00.000000"),
            "db@2026-12-01T10:00:00.000000"
        );
    }

    #[test]
    fn snapshot_names() {
        assert!(check_snapshot("db@2026-11-22T02:35:52.701543").is_ok());
        assert!(check_snapshot("db@2026-11-22T02:35:52.701543@10.0.0.2").is_ok());
        for bad in [
            "db",
            "@x",
            "db@",
            "db@../../etc",
            "db@a/b",
            "../db@x",
            "db@$(id)",
        ] {
            assert!(check_snapshot(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(volume_of("db@2026@host"), "db");
    }

    #[test]
    fn timestamps_round_trip_with_microseconds() {
        let t = NaiveDateTime::parse_from_str("2026-11-22 02:35:52.701543", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        let s = format_timestamp(t, DTFORMAT);
        assert_eq!(s, "2026-11-22T02:35:52.701543");
        assert_eq!(parse_timestamp(&s, DTFORMAT), Some(t));
        assert_eq!(
            parse_timestamp("2026-11-22T02:35:52.5", DTFORMAT),
            Some(t.with_nanosecond(500_000_000).unwrap())
        );
        assert_eq!(parse_timestamp("2026-11-22T02:35:52", DTFORMAT), None);
        assert_eq!(parse_timestamp("garbage", DTFORMAT), None);
    }
}
