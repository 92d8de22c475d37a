//! What peers did through the forced command, read from its log.
//!
//! The forced command (`buttervolume ssh-command`) is a separate process
//! that sshd starts for each peer request; it shares nothing with the
//! daemon but `STATE_PATH/ssh-command.log`, where it appends one line per
//! decision:
//!
//! ```text
//! <time> client=<ip> <port> <port> key=<fingerprint> outcome=<outcome> command="<as asked>"
//! ```
//!
//! So the daemon counts from that file: it remembers how far it read
//! (the file's identity and offset) and reads only what was appended since
//! the previous scrape. A file replaced or truncated (rotated by hand)
//! starts the counts again from zero, which Prometheus reads as a counter
//! reset. The counts cover the whole file, also what was logged before
//! the daemon started.
//!
//! Each line is a [`LogLine`] ([`crate::replication::command_log`], the
//! one definition both ends share): refusals are counted by
//! [`RefusalKind`], failed receives, and the bytes of the streams that
//! landed by peer address.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

pub use crate::replication::command_log::LOG_FILE;
use crate::replication::command_log::{LogLine, Outcome, RefusalKind};

/// Kinds of refusal, as the `kind` label spells them.
pub fn refusal_kinds() -> impl Iterator<Item = &'static str> {
    RefusalKind::ALL.iter().map(|k| k.label())
}

/// What the log says so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// By kind ([`RefusalKind::label`]).
    pub refusals: BTreeMap<&'static str, u64>,
    /// Streams that did not land for another reason than a refusal.
    pub receive_failures: u64,
    /// Bytes of the streams that landed, by the peer's address.
    pub received_bytes: BTreeMap<String, u64>,
}

impl PeerCounts {
    /// Counts one log line (a line of another shape counts nothing).
    pub fn count_line(&mut self, line: &str) {
        let Ok(line) = line.parse::<LogLine>() else {
            return;
        };
        match &line.outcome {
            Outcome::Refused { kind, .. } => *self.refusals.entry(kind.label()).or_default() += 1,
            Outcome::ReceiveFailed { .. } => self.receive_failures += 1,
            Outcome::Received { bytes, .. } => {
                *self
                    .received_bytes
                    .entry(line.peer().to_string())
                    .or_default() += bytes
            }
            Outcome::Accepted | Outcome::SendFailed { .. } => {}
        }
    }
}

#[derive(Debug, Default)]
struct Tail {
    /// (device, inode) of the file read so far.
    file: Option<(u64, u64)>,
    offset: u64,
    /// The last line, not yet terminated.
    partial: Vec<u8>,
    counts: PeerCounts,
}

/// Reads the forced command's log incrementally (see the module doc).
#[derive(Debug, Default)]
pub struct PeerLog {
    tail: Mutex<Tail>,
}

impl PeerLog {
    /// The counts after reading what was appended to `path` since the last
    /// call. A missing file counts nothing (no peer asked anything yet).
    /// Blocking.
    pub fn update(&self, path: &Path) -> PeerCounts {
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = read_new(&mut tail, path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the forced command's log");
            }
        }
        tail.counts.clone()
    }
}

fn read_new(tail: &mut Tail, path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let identity = Some((meta.dev(), meta.ino()));
    if tail.file != identity || meta.len() < tail.offset {
        *tail = Tail {
            file: identity,
            ..Tail::default()
        };
    }
    file.seek(SeekFrom::Start(tail.offset))?;
    let mut appended = Vec::new();
    file.read_to_end(&mut appended)?;
    tail.offset += appended.len() as u64;
    tail.partial.extend_from_slice(&appended);
    let complete = tail.partial.iter().rposition(|b| *b == b'\n');
    if let Some(end) = complete {
        let rest = tail.partial.split_off(end + 1);
        let lines = std::mem::replace(&mut tail.partial, rest);
        for line in String::from_utf8_lossy(&lines).lines() {
            tail.counts.count_line(line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const T: &str = "2026-01-01T00:00:00+00:00";

    fn line(client: &str, outcome: &str, command: &str) -> String {
        format!("{T} client={client} key=SHA256:abc outcome={outcome} command={command:?}\n")
    }

    #[test]
    fn counts_each_outcome_once_and_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let log = PeerLog::default();
        assert_eq!(log.update(&path), PeerCounts::default());
        let mut f = std::fs::File::create(&path).unwrap();
        let c = "10.1.0.1 40000 1122";
        write!(f, "{}", line(c, "accepted", "buttervolume receive")).unwrap();
        write!(f, "{}", line(c, "refused (not allowed)", "id")).unwrap();
        // An outcome that mentions ` command="` itself, and a command
        // that contains an outcome: each counted for what it is.
        write!(
            f,
            "{}",
            line(c, "delete refused (x command=\"y)", "outcome=refused (")
        )
        .unwrap();
        write!(
            f,
            "{}",
            line(c, "send refused (no such snapshot)", "buttervolume send")
        )
        .unwrap();
        write!(
            f,
            "{}",
            line(
                c,
                "receive failed (refused send stream: a path with ..)",
                "buttervolume receive"
            )
        )
        .unwrap();
        write!(f, "{}", line(c, "receive failed (the stream ended)", "r")).unwrap();
        write!(
            f,
            "{}",
            line(c, "received db@1 bytes=1000", "buttervolume receive")
        )
        .unwrap();
        write!(
            f,
            "{}",
            line("", "received db@2 bytes=5", "buttervolume receive")
        )
        .unwrap();
        // Half a line: counted once complete.
        write!(f, "{T} client={c} key=k outcome=refused (").unwrap();
        f.flush().unwrap();
        let counts = log.update(&path);
        let expected: BTreeMap<&str, u64> =
            [("command", 1), ("delete", 1), ("send", 1), ("stream", 1)].into();
        assert_eq!(counts.refusals, expected);
        assert_eq!(counts.receive_failures, 1);
        assert_eq!(counts.received_bytes["10.1.0.1"], 1000);
        assert_eq!(counts.received_bytes["unknown"], 5);
        writeln!(f, "x) command=\"id\"").unwrap();
        f.flush().unwrap();
        assert_eq!(log.update(&path).refusals["command"], 2);
        // Nothing new: the same counts.
        assert_eq!(log.update(&path).refusals["command"], 2);

        // Replaced (rotated): counted again from the new file.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, line(c, "refused (no)", "id")).unwrap();
        let counts = log.update(&path);
        assert_eq!(counts.refusals, [("command", 1)].into());
        assert!(counts.received_bytes.is_empty());
    }
}
