//! The receiving end of a send: lands a stream as a snapshot atomically.
//!
//! The stream goes through [`stream::rename_subvolume`] so that
//! `btrfs receive` (run with an argument vector) builds the subvolume under
//! a hidden name `.recv.<pid>.<n>` in the destination directory. Only when
//! receive succeeded and the result is read-only, carries a received UUID and
//! (for an incremental stream) descends from the expected parent, is it
//! renamed in place to its real name, with RENAME_NOREPLACE. On failure
//! the partial subvolume is deleted (a killed process's, by the next
//! receive or daemon start): it is never listed nor used as a parent.
//!
//! A peer is hostile until checked: every command of the stream passes
//! through this process and [`super::confine`] before `btrfs receive` gets
//! it, and `btrfs receive` itself runs chrooted into the destination, so a
//! stream can only build its own new subvolume.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg};

use super::confine::{Confinement, Inherited, NoParent, ParentSnapshot};
use super::stream::{self, StreamError};
use super::PIPE_SIZE;
use crate::btrfs::{self, BtrfsError};
use crate::fsutil;
use crate::names;

/// Prefix of the hidden names receives work under.
pub const STAGING_PREFIX: &str = ".recv.";

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the stream's subvolume name {0:?} is not a snapshot name")]
    Name(String),
    #[error("btrfs receive failed: {0}")]
    Receive(String),
    #[error("{0}")]
    NotAdmitted(String),
    #[error("the received subvolume is incomplete ({0}); deleted")]
    Incomplete(&'static str),
    #[error("the received snapshot does not descend from the expected parent {expected}; deleted")]
    WrongParent { expected: String },
    #[error(
        "a different snapshot named {0} already exists here; kept it and dropped the new copy"
    )]
    Conflict(String),
    #[error("the stream's parent {0} is not among this node's snapshots")]
    ParentMissing(String),
    #[error("several snapshots here claim to be the stream's parent {0}: refusing")]
    AmbiguousParent(String),
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

/// What landed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    pub name: String,
    pub uuid: String,
    pub received_uuid: String,
    pub incremental: bool,
    pub bytes: u64,
    /// True when an identical copy was already there (a resend).
    pub already_present: bool,
}

/// True while process `pid` runs. A zombie (killed, not reaped yet) is
/// gone: a daemon restarted right after a kill -9 must sweep what the dead
/// one left even while its parent has not reaped it.
fn pid_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// The staging paths of a process's receives in progress (the daemon's
/// store holds its own, the forced command its own). Each receive sweeps
/// first: entries of its own pid not in here are a previous incarnation's
/// (a restarted plugin gets the same pid in its namespace).
#[derive(Debug, Default)]
pub struct Receives(Mutex<BTreeSet<PathBuf>>);

impl Receives {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sweep rule for one `.recv.<pid>.*` entry: a leftover unless it is
/// a receive of this process in progress (`live_here`), or of another
/// process still running. A name without a pid is a leftover.
fn is_leftover(name: &str, own_pid: i32, live_here: bool, alive: impl Fn(i32) -> bool) -> bool {
    let Some(rest) = name.strip_prefix(STAGING_PREFIX) else {
        return false;
    };
    if live_here {
        return false;
    }
    match rest.split('.').next().and_then(|p| p.parse::<i32>().ok()) {
        Some(pid) if pid == own_pid => true,
        Some(pid) => !alive(pid),
        None => true,
    }
}

/// Deletes `.recv.*` leftovers of receives whose process is gone (`live`:
/// this process's receives in progress).
pub fn sweep_stale(dir: &Path, live: &Receives) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own_pid = std::process::id() as i32;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let live_here = live.lock().contains(&path);
        if !is_leftover(&name, own_pid, live_here, pid_alive) {
            continue;
        }
        tracing::warn!(path = %path.display(), "deleting a partial receive left by a dead process");
        if let Err(e) = btrfs::delete_subvolume(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete partial receive");
        }
    }
}

/// The UUID btrfs matches incremental parents by: the received UUID when
/// the subvolume was itself received, else its own UUID.
pub fn parent_key(identity: &btrfs::SubvolumeIdentity) -> String {
    identity
        .received_uuid
        .clone()
        .unwrap_or_else(|| identity.uuid.clone())
}

/// A receive's staging path, in [`Receives`] while it lives; deleted if
/// still there when it ends.
struct Staged<'a> {
    path: PathBuf,
    live: &'a Receives,
}
impl<'a> Staged<'a> {
    fn new(path: PathBuf, live: &'a Receives) -> Self {
        live.lock().insert(path.clone());
        Staged { path, live }
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if self.path.exists() {
            if let Err(e) = btrfs::delete_subvolume(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot delete partial receive");
            }
        }
        self.live.lock().remove(&self.path);
    }
}

fn ignore_broken_pipe(e: std::io::Error) -> Result<(), ReceiveError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // btrfs receive gave up: its exit status says why.
        Ok(())
    } else {
        Err(ReceiveError::Io {
            context: "writing to btrfs receive",
            source: e,
        })
    }
}

/// Copies the commands after the first through a [`Confinement`].
fn copy_confined<I: Inherited>(
    input: &mut dyn Read,
    output: &mut impl Write,
    first: &stream::FirstCommand,
    inherited: I,
) -> Result<u64, ReceiveError> {
    let mut confinement = Confinement::new(inherited, first.incremental);
    Ok(stream::copy_checked(
        input,
        output,
        first.version,
        |command, attributes| confinement.check(command, attributes),
    )?)
}

/// The local snapshot an incremental stream builds on, found the way
/// `btrfs receive` looks it up (received UUID first, then UUID) among the
/// subvolumes of `dest` (the only ones reachable from its chroot), and it
/// must be a snapshot of the stream's own volume. A received UUID is what
/// the sender wrote, so a hostile peer can give two snapshots the same one:
/// two candidates anywhere in `dest` are refused, because confinement must
/// check paths against the very parent receive will use.
fn find_parent(dest: &Path, name: &str, key: &str) -> Result<PathBuf, ReceiveError> {
    let prefix = format!("{}@", names::volume_of(name));
    let entries = std::fs::read_dir(dest).map_err(|source| ReceiveError::Io {
        context: "listing snapshots",
        source,
    })?;
    let (mut by_received, mut by_uuid) = (Vec::new(), None);
    for entry in entries.flatten() {
        // A sent marker is a read-only snapshot of a snapshot, made here
        // (a stream never lands one, see `feed`): of a received one, it
        // keeps that one's received UUID (btrfs copies it into read-only
        // snapshots) and its content, and it is never a stream's parent.
        if names::is_marker(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        if !btrfs::is_subvolume(&path) {
            continue;
        }
        let Ok(id) = btrfs::identity(&path) else {
            continue;
        };
        if id.received_uuid.as_deref() == Some(key) {
            by_received.push(entry.file_name());
        } else if id.uuid == key {
            by_uuid = Some(entry.file_name());
        }
    }
    let found = match (by_received.len(), by_uuid) {
        (1, _) => by_received.pop().expect("one candidate"),
        (0, Some(found)) => found,
        (0, None) => return Err(ReceiveError::ParentMissing(key.into())),
        _ => return Err(ReceiveError::AmbiguousParent(key.into())),
    };
    if !found.to_string_lossy().starts_with(&prefix) {
        return Err(ReceiveError::ParentMissing(key.into()));
    }
    Ok(dest.join(found))
}

/// Receives one send stream from `input` into `dest`. `expected_parent` is
/// the parent key (see [`parent_key`]) the sender used, if incremental.
///
/// `btrfs receive` runs chrooted into `dest` (`--chroot`) and stops at the
/// stream's end command (`-e`); every command it gets has passed
/// [`Confinement`]. A refused stream kills it before the refused command
/// reaches it, and the staged subvolume is deleted: nothing lands.
///
/// `admit` is asked, with the snapshot's name, before it lands: its `Err`
/// refuses it (cluster mode's stale-epoch rule) and nothing lands.
pub fn receive(
    dest: &Path,
    input: &mut dyn Read,
    expected_parent: Option<&str>,
    admit: &dyn Fn(&str) -> Result<(), String>,
    live: &Receives,
) -> Result<Received, ReceiveError> {
    std::fs::create_dir_all(dest).map_err(|source| ReceiveError::Io {
        context: "creating the destination",
        source,
    })?;
    sweep_stale(dest, live);
    let staging_name = format!("{STAGING_PREFIX}{}", fsutil::unique_suffix());
    let staged = Staged::new(dest.join(&staging_name), live);

    let mut child = BtrfsReceive::spawn(dest)?;
    let fed = feed(input, &mut child.stdin, dest, &staging_name);
    let (status, receive_stderr) = child.finish(fed.is_err())?;
    let (name, incremental, bytes) = fed?;
    if !status.success() {
        return Err(ReceiveError::Receive(receive_stderr.trim().to_string()));
    }
    admit(&name).map_err(ReceiveError::NotAdmitted)?;
    land(dest, &staged, name, incremental, bytes, expected_parent)
}

/// A running `btrfs receive -e --chroot <dest>` with its stdin and a
/// thread collecting its stderr.
struct BtrfsReceive {
    child: std::process::Child,
    stdin: std::io::BufWriter<std::process::ChildStdin>,
    stderr: std::thread::JoinHandle<String>,
}

impl BtrfsReceive {
    fn spawn(dest: &Path) -> Result<BtrfsReceive, ReceiveError> {
        let mut child = Command::new("btrfs")
            .args(["receive", "-e", "--chroot"])
            .arg(dest)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ReceiveError::Io {
                context: "starting btrfs receive",
                source,
            })?;
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let child_in = child.stdin.take().expect("stdin is piped");
        // Bigger pipe, fewer wake-ups of btrfs receive; best effort.
        let _ = fcntl(
            child_in.as_raw_fd(),
            FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32),
        );
        Ok(BtrfsReceive {
            child,
            stdin: std::io::BufWriter::with_capacity(PIPE_SIZE, child_in),
            stderr,
        })
    }

    /// Closes its input (killing it first when the stream was refused, so
    /// the refused command never reaches it) and waits for it.
    fn finish(mut self, refused: bool) -> Result<(std::process::ExitStatus, String), ReceiveError> {
        if refused {
            let _ = self.child.kill();
        }
        drop(self.stdin);
        let status = self.child.wait().map_err(|source| ReceiveError::Io {
            context: "waiting for btrfs receive",
            source,
        })?;
        Ok((status, self.stderr.join().unwrap_or_default()))
    }
}

/// Copies the stream into `btrfs receive` under the staging name, each
/// command checked by the confinement rule; returns the snapshot's real
/// name, whether the stream is incremental, and its size.
fn feed(
    input: &mut dyn Read,
    child_in: &mut impl Write,
    dest: &Path,
    staging_name: &str,
) -> Result<(String, bool, u64), ReceiveError> {
    let first = stream::rename_subvolume(input, child_in, staging_name)?;
    // Never a marker's name: markers are made here only, which is what
    // lets [`find_parent`] pass over them.
    if names::check_snapshot(&first.name).is_err() || names::is_marker(&first.name) {
        return Err(ReceiveError::Name(first.name));
    }
    let bytes = match &first.parent_uuid {
        None => copy_confined(input, child_in, &first, NoParent),
        Some(key) => {
            let parent = find_parent(dest, &first.name, key)?;
            copy_confined(input, child_in, &first, ParentSnapshot::new(&parent))
        }
    }?;
    child_in.flush().or_else(ignore_broken_pipe)?;
    Ok((first.name, first.incremental, bytes))
}

/// Checks what `btrfs receive` built in staging and moves it to its name.
fn land(
    dest: &Path,
    staged: &Staged,
    name: String,
    incremental: bool,
    bytes: u64,
    expected_parent: Option<&str>,
) -> Result<Received, ReceiveError> {
    let identity = btrfs::identity(&staged.path)?;
    if !identity.read_only {
        return Err(ReceiveError::Incomplete("not read-only"));
    }
    let Some(received_uuid) = identity.received_uuid.clone() else {
        return Err(ReceiveError::Incomplete("no received UUID"));
    };
    if let Some(expected) = expected_parent {
        check_parent(dest, &name, &identity, expected)?;
    }
    let final_path = dest.join(&name);
    if final_path.exists() {
        let existing = btrfs::identity(&final_path)?;
        if existing.received_uuid.as_deref() == Some(received_uuid.as_str()) {
            return Ok(Received {
                name,
                uuid: existing.uuid,
                received_uuid,
                incremental,
                bytes,
                already_present: true,
            });
        }
        return Err(ReceiveError::Conflict(name));
    }
    fsutil::rename_noreplace(&staged.path, &final_path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            ReceiveError::Conflict(name.clone())
        } else {
            ReceiveError::Io {
                context: "moving the received snapshot into place",
                source,
            }
        }
    })?;
    if let Ok(dir) = std::fs::File::open(dest) {
        let _ = dir.sync_all();
    }
    Ok(Received {
        name,
        uuid: identity.uuid,
        received_uuid,
        incremental,
        bytes,
        already_present: false,
    })
}

/// The new snapshot's parent UUID must be the local subvolume the sender
/// meant: the one whose key (received UUID, else UUID) is `expected`.
fn check_parent(
    dest: &Path,
    name: &str,
    identity: &btrfs::SubvolumeIdentity,
    expected: &str,
) -> Result<(), ReceiveError> {
    let wrong = || ReceiveError::WrongParent {
        expected: expected.into(),
    };
    let parent_uuid = identity.parent_uuid.as_deref().ok_or_else(wrong)?;
    let prefix = format!("{}@", names::volume_of(name));
    let entries = std::fs::read_dir(dest).map_err(|source| ReceiveError::Io {
        context: "listing snapshots",
        source,
    })?;
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if !entry_name.starts_with(&prefix) {
            continue;
        }
        if let Ok(candidate) = btrfs::identity(&entry.path()) {
            if candidate.uuid == parent_uuid
                && (candidate.received_uuid.as_deref() == Some(expected)
                    || candidate.uuid == expected)
            {
                return Ok(());
            }
        }
    }
    Err(wrong())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_of_this_process_in_progress_is_not_a_leftover() {
        let none_alive = |_: i32| false;
        let all_alive = |_: i32| true;
        // Another receive of this very process, landing right now.
        assert!(!is_leftover(".recv.42.3.99", 42, true, none_alive));
        // This pid but not in progress here: a previous incarnation's.
        assert!(is_leftover(".recv.42.3.99", 42, false, all_alive));
        // Another process: a leftover once it is gone.
        assert!(!is_leftover(".recv.7.1.5", 42, false, all_alive));
        assert!(is_leftover(".recv.7.1.5", 42, false, none_alive));
        assert!(is_leftover(".recv.junk", 42, false, all_alive));
        assert!(!is_leftover(
            "db@2026-01-01T00:00:00.000000",
            42,
            false,
            none_alive
        ));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited, not reaped yet: a zombie until the wait below.
        let stat = format!("/proc/{pid}/stat");
        while !std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        {
            std::thread::yield_now();
        }
        assert!(!pid_alive(pid));
        child.wait().unwrap();
        assert!(pid_alive(std::process::id() as i32));
    }
}
