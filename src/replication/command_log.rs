//! The forced command's log line, defined once for both ends: the forced
//! command ([`super::forced_command`], a separate process per peer request)
//! writes one [`LogLine`] per decision to `STATE_PATH/ssh-command.log`, and
//! the daemon's metrics ([`crate::metrics::peer_log`]) read them back. The
//! reader matches on [`Outcome`], never on an error's wording, so rewording
//! an error cannot zero a metric.
//!
//! ```text
//! <time> client=<ip> <port> <port> key=<fingerprint> outcome=<outcome> command="<as asked>"
//! ```
//!
//! Outcomes: `accepted`; `refused (<why>)` (outside the protocol);
//! `delete refused (<why>)`, `send refused (<why>)`, `rsync refused
//! (<why>)`; `stream refused (<why>)` (the confinement rule refused a
//! stream; older releases wrote `receive failed (refused send stream: ...)`,
//! still read as such); `receive failed (<why>)` (a stream that did not
//! land: cut, full disk...); `send failed (<why>)` (a pull's send failed
//! here); `received <snapshot> bytes=<n>`. The command is
//! Debug-quoted, so its quotes are escaped and the last ` command="` of a
//! line is the field's start whatever the reasons say.

use std::fmt;
use std::str::FromStr;

/// The log's name in STATE_PATH.
pub const LOG_FILE: &str = "ssh-command.log";

/// What kind of request was refused (the metrics' `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusalKind {
    /// A command outside the protocol.
    Command,
    /// A send stream the confinement rule refused.
    Stream,
    Delete,
    Send,
    Rsync,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 5] = [
        RefusalKind::Command,
        RefusalKind::Stream,
        RefusalKind::Delete,
        RefusalKind::Send,
        RefusalKind::Rsync,
    ];

    /// As the metrics' `kind` label spells it.
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::Command => "command",
            RefusalKind::Stream => "stream",
            RefusalKind::Delete => "delete",
            RefusalKind::Send => "send",
            RefusalKind::Rsync => "rsync",
        }
    }

    /// The words before ` (<why>)` in the log.
    fn prefix(self) -> &'static str {
        match self {
            RefusalKind::Command => "refused",
            RefusalKind::Stream => "stream refused",
            RefusalKind::Delete => "delete refused",
            RefusalKind::Send => "send refused",
            RefusalKind::Rsync => "rsync refused",
        }
    }
}

/// What the forced command decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused {
        kind: RefusalKind,
        why: String,
    },
    ReceiveFailed {
        why: String,
    },
    /// A pull whose `btrfs send` failed here.
    SendFailed {
        why: String,
    },
    Received {
        snapshot: String,
        bytes: u64,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Accepted => write!(f, "accepted"),
            Outcome::Refused { kind, why } => write!(f, "{} ({why})", kind.prefix()),
            Outcome::ReceiveFailed { why } => write!(f, "receive failed ({why})"),
            Outcome::SendFailed { why } => write!(f, "send failed ({why})"),
            Outcome::Received { snapshot, bytes } => write!(f, "received {snapshot} bytes={bytes}"),
        }
    }
}

/// The text inside `<prefix> (` ... `)`.
fn reason<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.strip_prefix(prefix)?
        .strip_prefix(" (")?
        .strip_suffix(')')
}

/// A line the reader does not understand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a forced command log line")]
pub struct Unreadable;

impl FromStr for Outcome {
    type Err = Unreadable;

    fn from_str(text: &str) -> Result<Outcome, Unreadable> {
        if text == "accepted" {
            return Ok(Outcome::Accepted);
        }
        if let Some(why) = reason(text, "receive failed") {
            // Older releases logged a refused stream this way.
            return Ok(match why.strip_prefix("refused send stream") {
                Some(_) => Outcome::Refused {
                    kind: RefusalKind::Stream,
                    why: why.into(),
                },
                None => Outcome::ReceiveFailed { why: why.into() },
            });
        }
        if let Some(why) = reason(text, "send failed") {
            return Ok(Outcome::SendFailed { why: why.into() });
        }
        if let Some(rest) = text.strip_prefix("received ") {
            let (snapshot, bytes) = rest.rsplit_once(" bytes=").ok_or(Unreadable)?;
            return Ok(Outcome::Received {
                snapshot: snapshot.into(),
                bytes: bytes.parse().map_err(|_| Unreadable)?,
            });
        }
        RefusalKind::ALL
            .iter()
            .find_map(|kind| {
                reason(text, kind.prefix()).map(|why| Outcome::Refused {
                    kind: *kind,
                    why: why.into(),
                })
            })
            .ok_or(Unreadable)
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339.
    pub time: String,
    /// sshd's `SSH_CLIENT`: `<ip> <port> <port>` (empty when unknown).
    pub client: String,
    /// The key's SHA256 fingerprint, or `unknown`.
    pub key: String,
    pub outcome: Outcome,
    /// The request as the peer sent it.
    pub command: String,
}

impl LogLine {
    /// The peer's address (`unknown` when sshd did not say).
    pub fn peer(&self) -> &str {
        self.client.split_whitespace().next().unwrap_or("unknown")
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} client={} key={} outcome={} command={:?}",
            self.time, self.client, self.key, self.outcome, self.command
        )
    }
}

impl FromStr for LogLine {
    type Err = Unreadable;

    fn from_str(line: &str) -> Result<LogLine, Unreadable> {
        let (time, rest) = line.split_once(" client=").ok_or(Unreadable)?;
        let (client, rest) = rest.split_once(" key=").ok_or(Unreadable)?;
        let (key, rest) = rest.split_once(" outcome=").ok_or(Unreadable)?;
        let (outcome, command) = rest.rsplit_once(" command=\"").ok_or(Unreadable)?;
        Ok(LogLine {
            time: time.into(),
            client: client.into(),
            key: key.into(),
            outcome: outcome.parse()?,
            command: unquote(command).ok_or(Unreadable)?,
        })
    }
}

/// Reads back a Debug-quoted string (the escapes `{:?}` writes), its
/// opening quote already taken.
fn unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let hex: String = chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_whatever_its_reasons_say() {
        let outcomes = [
            Outcome::Accepted,
            Outcome::Received {
                snapshot: "db@2026-01-01T00:00:00.000000".into(),
                bytes: 1234,
            },
            Outcome::ReceiveFailed {
                why: "the stream ended (early)".into(),
            },
            Outcome::SendFailed {
                why: "ENOMEM".into(),
            },
        ]
        .into_iter()
        .chain(RefusalKind::ALL.iter().map(|kind| Outcome::Refused {
            kind: *kind,
            why: "x command=\"y) outcome=refused (".into(),
        }));
        for outcome in outcomes {
            let line = LogLine {
                time: "2026-01-01T00:00:00+00:00".into(),
                client: "10.1.0.1 40000 1122".into(),
                key: "SHA256:abc".into(),
                outcome,
                command: "buttervolume list \"db\" command=\"\\\u{7}\n".into(),
            };
            assert_eq!(line.to_string().parse::<LogLine>(), Ok(line.clone()));
            assert_eq!(line.peer(), "10.1.0.1");
        }
    }

    #[test]
    fn an_older_releases_stream_refusal_is_read_as_one() {
        let old = "t client= key=unknown outcome=receive failed (refused send stream: a path with ..) command=\"buttervolume receive\"";
        let line: LogLine = old.parse().unwrap();
        assert!(matches!(
            line.outcome,
            Outcome::Refused {
                kind: RefusalKind::Stream,
                ..
            }
        ));
        assert_eq!(line.peer(), "unknown");
        assert_eq!("garbage".parse::<LogLine>(), Err(Unreadable));
    }
}
