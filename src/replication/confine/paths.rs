//! The syntax of a path in a stream: relative, no `..`, no NUL, UTF-8; and
//! the string operations the confinement walks paths with.

use crate::replication::stream::StreamError;

pub(super) fn refused(why: impl Into<String>) -> StreamError {
    StreamError::Refused(why.into())
}

/// A path attribute as text, after the syntactic checks.
pub(super) fn checked_path<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, StreamError> {
    let text = std::str::from_utf8(bytes).map_err(|_| refused(format!("{what} is not UTF-8")))?;
    if text.starts_with('/') {
        return Err(refused(format!("{what} {text:?} is absolute")));
    }
    if text.contains('\0') {
        return Err(refused(format!("{what} {text:?} contains NUL")));
    }
    if text.split('/').any(|c| c == "..") {
        return Err(refused(format!("{what} {text:?} contains \"..\"")));
    }
    Ok(text)
}

/// `a//b/./c/` → `a/b/c`: the same path `btrfs receive` reaches.
pub(super) fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn parent_of(path: &str) -> Option<(&str, &str)> {
    if path.is_empty() {
        return None;
    }
    Some(path.rsplit_once('/').unwrap_or(("", path)))
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}
