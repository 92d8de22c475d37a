//! Running Debian's `restic`: argument vectors only, the target's
//! variables as its whole environment (plus `PATH`, `HOME` and a cache
//! under STATE_PATH), `--json` output parsed into typed structs, and its
//! stderr turned into a [`ResticError`] that says what went wrong.
//!
//! Why the `restic` binary rather than a Rust implementation of the
//! format: the point of these backups is that a plain `restic` restores
//! them when this plugin is gone, and the binary is the reference for its
//! own format, its backends (sftp, rest-server, S3...) and its locking.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::targets::Target;

/// What a failed restic run means.
#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    #[error("wrong password for the repository {0}")]
    WrongPassword(String),
    #[error("no restic repository at {0}")]
    Absent(String),
    #[error("the repository {repository} cannot be reached: {detail}")]
    Unreachable { repository: String, detail: String },
    #[error("the repository {repository} is locked by another restic: {detail}")]
    Locked { repository: String, detail: String },
    #[error("the backup target {0} is full (no space left on device)")]
    Full(String),
    #[error("cannot run restic: {0}")]
    Spawn(std::io::Error),
    #[error("restic {command} failed (exit status {status}): {detail}")]
    Failed {
        command: String,
        status: i32,
        detail: String,
    },
    #[error("restic {command} printed what we cannot read: {detail}")]
    Output { command: String, detail: String },
}

/// What restic (or ssh under it) says when the repository's host cannot
/// be reached.
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "dial tcp",
    "no such host",
    "network is unreachable",
    "i/o timeout",
    "no route to host",
    "unable to start the sftp session",
    "connection timed out",
    "connection reset",
];

/// Waits between tries on a locked repository, cut to BACKUP_LOCK_WAIT
/// in all.
const LOCK_RETRY_SECS: [u64; 7] = [1, 2, 4, 8, 16, 30, 60];

/// The waits between tries on a locked repository that fit in `budget`
/// seconds (the last one shortened to fit).
fn lock_waits(budget: u64) -> Vec<u64> {
    let mut left = budget;
    let mut out = Vec::new();
    for w in LOCK_RETRY_SECS.iter().copied().chain(std::iter::repeat(60)) {
        if left == 0 {
            break;
        }
        out.push(w.min(left));
        left -= w.min(left);
    }
    out
}

/// One way to call restic on one target.
pub struct Restic<'a> {
    target: &'a Target,
    cache: PathBuf,
    /// BACKUP_LOCK_WAIT: how long a locked repository is tried again.
    lock_wait_secs: u64,
}

/// A snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ResticSnapshot {
    pub id: String,
    #[serde(deserialize_with = "rfc3339")]
    pub time: chrono::DateTime<chrono::FixedOffset>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

impl ResticSnapshot {
    /// The value of our tag `<key>:<value>`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix(':'))
    }
}

fn rfc3339<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<chrono::DateTime<chrono::FixedOffset>, D::Error> {
    let text = String::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&text).map_err(serde::de::Error::custom)
}

/// The last line of `restic backup --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupSummary {
    pub snapshot_id: String,
    #[serde(default)]
    pub files_new: u64,
    #[serde(default)]
    pub files_changed: u64,
    #[serde(default)]
    pub files_unmodified: u64,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub total_bytes_processed: u64,
}

impl<'a> Restic<'a> {
    pub fn new(target: &'a Target, config: &crate::config::Config) -> Restic<'a> {
        Restic {
            target,
            cache: config.state_path.join("backup-cache"),
            lock_wait_secs: config.backup_lock_wait_secs,
        }
    }

    /// The target restic runs on.
    pub fn target(&self) -> &Target {
        self.target
    }

    fn command(&self, args: &[&str], cwd: Option<&Path>) -> Command {
        let mut cmd = Command::new("restic");
        cmd.env_clear();
        for key in ["PATH", "HOME", "TMPDIR", "LANG"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        }
        cmd.env("RESTIC_CACHE_DIR", &self.cache);
        cmd.envs(&self.target.env);
        cmd.args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs restic with `args`; stdout on success, the mapped error else.
    /// A repository locked by another restic (a check or a prune holds it
    /// exclusively; restic 0.14 has no `--retry-lock`) is tried again for
    /// BACKUP_LOCK_WAIT seconds (waits of 1, 2, 4... s) before
    /// [`ResticError::Locked`] is returned.
    pub fn run(&self, args: &[&str], cwd: Option<&Path>) -> Result<String, ResticError> {
        let mut waits = lock_waits(self.lock_wait_secs).into_iter();
        loop {
            match self.run_once(args, cwd) {
                Err(ResticError::Locked { .. }) if waits.len() > 0 => {
                    let secs = waits.next().expect("checked above");
                    tracing::info!(target = %self.target.name, secs, "repository locked, retrying");
                    std::thread::sleep(std::time::Duration::from_secs(secs));
                }
                other => return other,
            }
        }
    }

    fn run_once(&self, args: &[&str], cwd: Option<&Path>) -> Result<String, ResticError> {
        tracing::debug!(target = %self.target.name, ?args, "restic");
        let out = self
            .command(args, cwd)
            .output()
            .map_err(ResticError::Spawn)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(self.classify(
            args.first().copied().unwrap_or(""),
            out.status.code().unwrap_or(-1),
            &stderr,
            &stdout,
        ))
    }

    /// Maps restic's stderr (0.14's messages and later ones) to an error.
    fn classify(&self, command: &str, status: i32, stderr: &str, stdout: &str) -> ResticError {
        let repository = self.target.repository().to_string();
        let detail = last_lines(stderr, stdout);
        let lower = stderr.to_ascii_lowercase();
        if lower.contains("wrong password") || status == 12 {
            ResticError::WrongPassword(repository)
        } else if lower.contains("no space left on device") || lower.contains("quota exceeded") {
            ResticError::Full(repository)
        } else if lower.contains("already locked") || status == 11 {
            ResticError::Locked { repository, detail }
        } else if UNREACHABLE.iter().any(|m| lower.contains(m)) {
            // Before "absent": restic 0.14 asks "Is there a repository"
            // after a refused connection too.
            ResticError::Unreachable { repository, detail }
        } else if lower.contains("is there a repository at the following location") || status == 10
        {
            ResticError::Absent(repository)
        } else {
            ResticError::Failed {
                command: command.to_string(),
                status,
                detail,
            }
        }
    }

    /// `restic init`.
    pub fn init(&self) -> Result<(), ResticError> {
        self.run(&["init", "--json"], None).map(drop)
    }

    /// `restic snapshots --json`, those with every tag of `tags`. Without
    /// a lock: a read-only listing, and each restic run costs its key
    /// derivation already (~0.5 s).
    pub fn snapshots(&self, tags: &[String]) -> Result<Vec<ResticSnapshot>, ResticError> {
        let mut args = vec!["snapshots", "--json", "--no-lock"];
        let joined = tags.join(",");
        if !tags.is_empty() {
            args.extend(["--tag", joined.as_str()]);
        }
        let out = self.run(&args, None)?;
        let mut list: Vec<ResticSnapshot> =
            serde_json::from_str(out.trim()).map_err(|e| ResticError::Output {
                command: "snapshots".into(),
                detail: e.to_string(),
            })?;
        list.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(list)
    }

    /// `restic backup .` run in `dir`: the tree holds the directory's
    /// entries at its root whatever `dir` is, so `parent`'s files are
    /// compared path for path (inode, ctime, mtime, size) with the new
    /// ones, and a plain `restic restore --target X` gives the files in X.
    pub fn backup(
        &self,
        dir: &Path,
        tags: &[String],
        parent: Option<&str>,
    ) -> Result<BackupSummary, ResticError> {
        let joined = tags.join(",");
        let mut args = vec!["backup", "--json", "--tag", joined.as_str()];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        args.push(".");
        let out = self.run(&args, Some(dir))?;
        out.lines()
            .rev()
            .filter(|l| l.contains("\"summary\""))
            .find_map(|l| serde_json::from_str::<BackupSummary>(l).ok())
            .ok_or_else(|| ResticError::Output {
                command: "backup".into(),
                detail: "no summary line".into(),
            })
    }

    /// `restic restore latest --tag <tags> --target <dir>`: the newest
    /// backup (by restic's time) carrying every tag of `tags`, chosen by
    /// restic in the same run (no listing first). Its short id, or `None`
    /// when no backup has those tags.
    pub fn restore_latest(
        &self,
        tags: &[String],
        dir: &Path,
    ) -> Result<Option<String>, ResticError> {
        let joined = tags.join(",");
        let dir = dir.to_string_lossy();
        let args = ["restore", "latest", "--tag", &joined, "--target", &dir];
        match self.run(&args, None) {
            // "restoring <Snapshot 3d87b2f2 of [/p] at ... by u@h> to /dir"
            Ok(out) => out
                .lines()
                .find_map(|l| l.strip_prefix("restoring <Snapshot "))
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|id| Some(id.to_string()))
                .ok_or_else(|| ResticError::Output {
                    command: "restore".into(),
                    detail: "no \"restoring <Snapshot\" line".into(),
                }),
            Err(ResticError::Failed { detail, .. })
                if detail.contains("latest snapshot for criteria not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `restic forget <ids>` then `restic prune`.
    pub fn forget_and_prune(&self, ids: &[String]) -> Result<(), ResticError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["forget"];
        args.extend(ids.iter().map(String::as_str));
        self.run(&args, None)?;
        self.run(&["prune"], None).map(drop)
    }

    /// `restic check [--read-data-subset <subset>]`; its output.
    pub fn check(&self, subset: Option<&str>) -> Result<String, ResticError> {
        let mut args = vec!["check"];
        if let Some(s) = subset {
            args.extend(["--read-data-subset", s]);
        }
        self.run(&args, None)
    }
}

/// The last few meaningful lines of restic's output, for an error.
fn last_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::TargetName;

    #[test]
    fn restic_messages_become_clear_errors() {
        let target = Target {
            name: TargetName::parse("t").unwrap(),
            env: [("RESTIC_REPOSITORY".to_string(), "/r".to_string())].into(),
            keep: None,
        };
        let config =
            crate::config::Config::resolve(&Default::default(), &Default::default()).unwrap();
        let r = Restic::new(&target, &config);
        let kind = |stderr: &str| r.classify("backup", 1, stderr, "").to_string();
        assert!(kind("Fatal: wrong password or no key found").contains("wrong password"));
        let refused = "Fatal: unable to open config file: client.Head: Head \"http://127.0.0.1:1/config\": dial tcp 127.0.0.1:1: connect: connection refused\nIs there a repository at the following location?\nrest:http://127.0.0.1:1/";
        assert!(
            kind(refused).contains("cannot be reached"),
            "{}",
            kind(refused)
        );
        let absent = "Fatal: unable to open config file: stat /r/config: no such file or directory\nIs there a repository at the following location?\n/r";
        assert!(kind(absent).contains("no restic repository at /r"));
        let locked = "unable to create lock in backend: repository is already locked exclusively by PID 7 on h by root (UID 0, GID 0)";
        assert!(kind(locked).contains("locked by another restic"));
        let full = "Fatal: unable to save snapshot: write /r/data/ab/x: no space left on device";
        assert!(kind(full).contains("is full"));
        assert!(kind("something else\n")
            .contains("restic backup failed (exit status 1): something else"));
    }

    #[test]
    fn lock_waits_fit_the_budget() {
        assert_eq!(lock_waits(0), Vec::<u64>::new());
        assert_eq!(lock_waits(2), vec![1, 1]);
        assert_eq!(lock_waits(120), vec![1, 2, 4, 8, 16, 30, 59]);
        assert_eq!(lock_waits(200).iter().sum::<u64>(), 200);
    }
}
