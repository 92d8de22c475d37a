//! Job actions: what a scheduled line does, and which action texts are
//! acceptable.
//!
//! The texts are the reference's: `snapshot`, `replicate:<host>` (snapshot
//! then send), `purge:<pattern>`, `synchronize:<h1>[,<h2>...]` (snapshot then
//! rsync pull). The reference stored any action blindly and then silently
//! never ran it; here an unknown action, a bad purge pattern or a host that
//! could be read as an ssh option or shell syntax is refused when scheduled.
//! Every refusal starts with the reference master's words, `Invalid action`,
//! and says why after them.

use crate::purge::{Pattern, PurgeError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    #[error("Invalid action {0:?}: unknown action, expected snapshot, replicate:<host>, purge:<pattern>, synchronize:<host>[,<host>...], backup:<target> or check-backups:<target>")]
    Unknown(String),
    #[error("Invalid action {action:?}: invalid host {host:?}, expected a host name or IP address (letters, digits and '.-_:', an IPv6 address without brackets), optionally user@host")]
    Host { action: String, host: String },
    #[error("Invalid action {action:?}: {source}")]
    Purge { action: String, source: PurgeError },
    #[error("Invalid action {action:?}: {reason}")]
    Target { action: String, reason: String },
    #[error("Invalid action {action:?}: {source}")]
    MarkerHost {
        action: String,
        source: crate::names::NameError,
    },
}

/// A parsed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Snapshot,
    Replicate {
        host: String,
    },
    Purge {
        pattern: String,
    },
    Synchronize {
        hosts: Vec<String>,
    },
    /// `backup:<target>`: back up to a restic target ([`crate::backup`]).
    Backup {
        target: String,
    },
    /// `check-backups:<target>`: restic's check of the target.
    CheckBackups {
        target: String,
    },
}

impl Action {
    pub fn parse(text: &str) -> Result<Action, ActionError> {
        let host = |h: &str| -> Result<String, ActionError> {
            if crate::names::check_host(h).is_ok() {
                Ok(h.to_string())
            } else {
                Err(ActionError::Host {
                    action: text.into(),
                    host: h.into(),
                })
            }
        };
        if text == "snapshot" {
            Ok(Action::Snapshot)
        } else if let Some(h) = text.strip_prefix("replicate:") {
            let h = host(h)?;
            // A replicated snapshot gets a `<snapshot>@<host>` marker.
            crate::names::check_marker_host(&h).map_err(|source| ActionError::MarkerHost {
                action: text.into(),
                source,
            })?;
            Ok(Action::Replicate { host: h })
        } else if let Some(pattern) = text.strip_prefix("purge:") {
            Pattern::parse(pattern).map_err(|source| ActionError::Purge {
                action: text.into(),
                source,
            })?;
            Ok(Action::Purge {
                pattern: pattern.into(),
            })
        } else if let Some((kind, name)) = text
            .strip_prefix("backup:")
            .map(|t| ("backup", t))
            .or_else(|| text.strip_prefix("check-backups:").map(|t| ("check", t)))
        {
            let target = crate::backup::TargetName::parse(name)
                .map_err(|e| ActionError::Target {
                    action: text.into(),
                    reason: e.to_string(),
                })?
                .to_string();
            Ok(if kind == "backup" {
                Action::Backup { target }
            } else {
                Action::CheckBackups { target }
            })
        } else if let Some(list) = text.strip_prefix("synchronize:") {
            let hosts = list.split(',').map(host).collect::<Result<Vec<_>, _>>()?;
            Ok(Action::Synchronize { hosts })
        } else {
            Err(ActionError::Unknown(text.into()))
        }
    }

    /// Whether the job talks to another node. Remote jobs get their own
    /// worker pool, so slow networks never hold up local snapshots.
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            Action::Replicate { .. }
                | Action::Synchronize { .. }
                | Action::Backup { .. }
                | Action::CheckBackups { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_actions() {
        assert_eq!(Action::parse("snapshot"), Ok(Action::Snapshot));
        assert_eq!(
            Action::parse("replicate:10.0.0.2"),
            Ok(Action::Replicate {
                host: "10.0.0.2".into()
            })
        );
        assert_eq!(
            Action::parse("purge:1h:1d:1w:4w:1y"),
            Ok(Action::Purge {
                pattern: "1h:1d:1w:4w:1y".into()
            })
        );
        assert_eq!(
            Action::parse("synchronize:h1,h2.lan"),
            Ok(Action::Synchronize {
                hosts: vec!["h1".into(), "h2.lan".into()]
            })
        );
        assert!(Action::parse("replicate:fe80::1").is_ok());
        assert!(Action::parse("replicate:root@peer").is_ok());
        assert!(Action::parse("replicate:h").unwrap().is_remote());
        assert!(!Action::parse("purge:1h:1d").unwrap().is_remote());
        assert_eq!(
            Action::parse("backup:offsite"),
            Ok(Action::Backup {
                target: "offsite".into()
            })
        );
        assert_eq!(
            Action::parse("check-backups:nas-1"),
            Ok(Action::CheckBackups {
                target: "nas-1".into()
            })
        );
        assert!(Action::parse("backup:x").unwrap().is_remote());
        // Upstream master's patterns: single step, counted steps.
        for pattern in ["2h", "1h/4:1d/3:1w/4", "1h/48:1d:1w"] {
            assert_eq!(
                Action::parse(&format!("purge:{pattern}")),
                Ok(Action::Purge {
                    pattern: pattern.into()
                })
            );
        }
    }

    #[test]
    fn bad_actions_are_clear_errors() {
        for (bad, needle) in [
            ("snap", "unknown action"),
            ("Snapshot", "unknown action"),
            ("", "unknown action"),
            ("replicate:", "invalid host"),
            ("replicate:-oProxyCommand=x", "invalid host"),
            ("replicate:a b", "invalid host"),
            ("replicate:h;rm", "invalid host"),
            ("replicate:$(id)", "invalid host"),
            // Brackets would be accepted here and refused by every send
            // (and in the marker name): one host rule refuses them at once.
            ("replicate:[fe80::1]", "invalid host"),
            ("replicate:-x@peer", "invalid host"),
            ("synchronize:h1,,h2", "invalid host"),
            ("synchronize:", "invalid host"),
            ("backup:", "invalid backup target name"),
            ("backup:../etc", "invalid backup target name"),
            ("check-backups:a b", "invalid backup target name"),
            ("purge:1h/4:1d", "write it like 1h/4:1d/3"),
            ("purge:1x:2y", "purge pattern"),
            (
                format!("replicate:{}", "h".repeat(62)).as_str(),
                "at most 61 bytes",
            ),
        ] {
            let err = Action::parse(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
