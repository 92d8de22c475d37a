//! The receiving end of a send: lands a stream as a snapshot atomically.
//!
//! The stream goes through [`stream::rename_subvolume`] so that
//! `btrfs receive` (run with an argument vector) builds the subvolume under
//! a hidden name `.recv.<pid>.<n>` in the destination directory. Only when
//! receive succeeded and the result is read-only, carries a received UUID and
//! (for an incremental stream) descends from the expected parent, is it
//! renamed in place to its real name, with RENAME_NOREPLACE. On any failure
//! the partial subvolume is deleted; if this process itself is killed, the
//! leftover is swept by the next receive or daemon start (its pid is dead).
//! A half-received snapshot is never visible under a snapshot name, so it is
//! never listed and never used as a parent.
//!
//! Only the stream's first command passes through this process; the rest is
//! spliced from sshd's pipe into `btrfs receive`'s (see [`Source`]), so the
//! extra hop costs no copy.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, SpliceFFlags};

use super::stream::{self, StreamError};
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
    #[error("the received subvolume is incomplete ({0}); deleted")]
    Incomplete(&'static str),
    #[error("the received snapshot does not descend from the expected parent {expected}; deleted")]
    WrongParent { expected: String },
    #[error(
        "a different snapshot named {0} already exists here; kept it and dropped the new copy"
    )]
    Conflict(String),
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

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Deletes `.recv.*` leftovers of receives whose process is gone.
pub fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(STAGING_PREFIX) else {
            continue;
        };
        let pid = rest.split('.').next().and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(pid_alive) && pid != Some(std::process::id() as i32) {
            continue;
        }
        let path = entry.path();
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

struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = btrfs::delete_subvolume(&self.0) {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot delete partial receive");
            }
        }
    }
}

/// Where a stream comes from.
pub enum Source {
    /// An unbuffered descriptor (the forced command's stdin, a pipe from
    /// sshd): after the first command, the rest is spliced into
    /// `btrfs receive`'s pipe without passing through this process.
    Fd(File),
    /// Anything else (a zstd decoder): copied through a buffer.
    Reader(Box<dyn Read>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Fd(file) => file.read(buf),
            Source::Reader(reader) => reader.read(buf),
        }
    }
}

/// Moves the rest of the stream into `btrfs receive`; returns the byte
/// count. Stops early, without error, when receive closes its end (its exit
/// status then says why).
fn forward(input: Source, child_in: &mut (impl Write + AsFd)) -> Result<u64, ReceiveError> {
    // Bigger pipe, fewer wake-ups of btrfs receive; best effort.
    let _ = fcntl(
        child_in.as_fd().as_raw_fd(),
        FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
    );
    let mut reader: Box<dyn Read> = match input {
        Source::Fd(file) => match splice_all(&file, child_in) {
            Spliced::Done(bytes) => return Ok(bytes),
            Spliced::Failed(source) => {
                return Err(ReceiveError::Io {
                    context: "reading the stream",
                    source,
                })
            }
            // Not spliceable (a terminal, say): copy instead.
            Spliced::Unsupported => Box::new(file),
        },
        Source::Reader(reader) => reader,
    };
    let mut buf = vec![0u8; PIPE_SIZE as usize];
    let mut bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ReceiveError::Io {
                    context: "reading the stream",
                    source,
                })
            }
        };
        if child_in.write_all(&buf[..n]).is_err() {
            break;
        }
        bytes += n as u64;
    }
    Ok(bytes)
}

const PIPE_SIZE: i32 = 1 << 20;

enum Spliced {
    Done(u64),
    Failed(std::io::Error),
    /// The kernel cannot splice from this descriptor; nothing was moved.
    Unsupported,
}

fn splice_all(from: &File, to: &impl AsFd) -> Spliced {
    let mut bytes = 0u64;
    loop {
        let moved = splice(
            from.as_fd(),
            None,
            to.as_fd(),
            None,
            PIPE_SIZE as usize,
            SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE,
        );
        match moved {
            Ok(0) => return Spliced::Done(bytes),
            Ok(n) => bytes += n as u64,
            Err(Errno::EINTR) => continue,
            Err(Errno::EINVAL) if bytes == 0 => return Spliced::Unsupported,
            // btrfs receive closed its end: its status explains.
            Err(Errno::EPIPE) => return Spliced::Done(bytes),
            Err(e) => return Spliced::Failed(e.into()),
        }
    }
}

/// Receives one send stream from `input` into `dest`. `expected_parent` is
/// the parent key (see [`parent_key`]) the sender used, if incremental.
pub fn receive(
    dest: &Path,
    mut input: Source,
    expected_parent: Option<&str>,
) -> Result<Received, ReceiveError> {
    std::fs::create_dir_all(dest).map_err(|source| ReceiveError::Io {
        context: "creating the destination",
        source,
    })?;
    sweep_stale(dest);
    let staging_name = format!("{STAGING_PREFIX}{}", fsutil::unique_suffix());
    let staged = Staged(dest.join(&staging_name));

    let mut child = Command::new("btrfs")
        .arg("receive")
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
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut child_in = child.stdin.take().expect("stdin is piped");

    let copied = (|| -> Result<(String, bool, u64), ReceiveError> {
        let (name, incremental) =
            stream::rename_subvolume(&mut input, &mut child_in, &staging_name)?;
        if names::check_snapshot(&name).is_err() {
            return Err(ReceiveError::Name(name));
        }
        let bytes = forward(input, &mut child_in)?;
        Ok((name, incremental, bytes))
    })();
    drop(child_in);
    if copied.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| ReceiveError::Io {
        context: "waiting for btrfs receive",
        source,
    })?;
    let receive_stderr = stderr_reader.join().unwrap_or_default();
    let (name, incremental, bytes) = copied?;
    if !status.success() {
        return Err(ReceiveError::Receive(receive_stderr.trim().to_string()));
    }

    let identity = btrfs::identity(&staged.0)?;
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
    fsutil::rename_noreplace(&staged.0, &final_path).map_err(|source| {
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
    use std::io::Seek;

    /// A pipe whose read end is drained by a thread; returns the write end
    /// and the handle yielding everything read.
    fn drained_pipe() -> (File, std::thread::JoinHandle<Vec<u8>>) {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            File::from(read_end).read_to_end(&mut all).unwrap();
            all
        });
        (File::from(write_end), reader)
    }

    fn payload() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn forward_splices_from_a_pipe() {
        let data = payload();
        let (source_read, source_write) = nix::unistd::pipe().unwrap();
        let to_write = data.clone();
        let writer = std::thread::spawn(move || File::from(source_write).write_all(&to_write));
        let (mut sink, drained) = drained_pipe();
        let bytes = forward(Source::Fd(File::from(source_read)), &mut sink).unwrap();
        drop(sink);
        writer.join().unwrap().unwrap();
        assert_eq!(bytes, data.len() as u64);
        assert!(drained.join().unwrap() == data, "spliced bytes differ");
    }

    #[test]
    fn forward_moves_a_regular_file() {
        // A stream saved to a file (`receive < file`): spliced from the page
        // cache like a pipe.
        let data = payload();
        let mut file = tempfile_in_tmp();
        file.write_all(&data).unwrap();
        file.rewind().unwrap();
        let (mut sink, drained) = drained_pipe();
        let bytes = forward(Source::Fd(file), &mut sink).unwrap();
        drop(sink);
        assert_eq!(bytes, data.len() as u64);
        assert!(drained.join().unwrap() == data);
    }

    #[test]
    fn forward_copies_from_a_reader() {
        let data = payload();
        let (mut sink, drained) = drained_pipe();
        let reader = Source::Reader(Box::new(std::io::Cursor::new(data.clone())));
        assert_eq!(forward(reader, &mut sink).unwrap(), data.len() as u64);
        drop(sink);
        assert!(drained.join().unwrap() == data);
    }

    #[test]
    fn forward_stops_without_error_when_the_receiver_goes_away() {
        let (source_read, source_write) = nix::unistd::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let mut w = File::from(source_write);
            // Ends with EPIPE once forward has returned and closed the source.
            for _ in 0..64 {
                if w.write_all(&[7u8; 65536]).is_err() {
                    break;
                }
            }
        });
        let (sink_read, sink_write) = nix::unistd::pipe().unwrap();
        drop(sink_read);
        let mut sink = File::from(sink_write);
        let bytes = forward(Source::Fd(File::from(source_read)), &mut sink).unwrap();
        assert_eq!(bytes, 0);
        writer.join().unwrap();
    }

    fn tempfile_in_tmp() -> File {
        let path = std::env::temp_dir().join(format!("bv-forward-{}", fsutil::unique_suffix()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}
