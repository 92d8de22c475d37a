//! Names: which volume and snapshot names are acceptable, and the timestamp
//! format that makes `<volume>@<timestamp>` snapshot names.
//!
//! Every name that reaches the filesystem goes through here first. A name is
//! joined to a data directory only after it has been proven to be a single
//! path component made of safe characters, so no request can reach outside
//! VOLUMES_PATH / SNAPSHOTS_PATH (the reference accepted `../x`).

use chrono::{NaiveDateTime, Timelike};

/// The reference's default timestamp format (Python strftime syntax).
pub const DTFORMAT: &str = "%Y-%m-%dT%H:%M:%S.%f";

/// The longest name a directory entry can have.
const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a volume name is required")]
    Empty,
    #[error("{0:?} is too long: names are at most 255 bytes")]
    TooLong(String),
    #[error("\"@\" is illegal in a volume name: {0:?}")]
    At(String),
    #[error(
        "invalid volume name {0:?}: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
    )]
    Volume(String),
    #[error(
        "invalid snapshot name {0:?}: expected <volume>@<timestamp> made of letters, digits and '_.:@-'"
    )]
    Snapshot(String),
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
