//! A recording fake of [`Subvolumes`] for unit tests without root.
//!
//! A "subvolume" is a plain directory that the fake made; its identity
//! (UUID, parent UUID, received UUID, read-only flag, creation order) and
//! its extended attributes live in memory, keyed by the directory's inode
//! number, so they follow the directory through renames and
//! `RENAME_EXCHANGE` exactly as a real subvolume does. A snapshot copies the
//! directory tree, so tests can read back what a restore put in place.
//! Creation order is one counter, like btrfs's transaction id and
//! subvolume id, so "newest" is decided as on the real filesystem and never
//! by names. Every change is recorded in [`FakeSubvolumes::calls`] and any
//! change can be made to fail once ([`FakeSubvolumes::fail_next`]), to test
//! that nothing half-done is left behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Subvolumes;
use crate::btrfs::{BtrfsError, Result, SubvolumeIdentity};

/// A store on a fresh fake in a new temporary directory (kept alive by
/// the returned `TempDir`): what the unit tests of the rules start from.
pub fn store() -> (
    tempfile::TempDir,
    std::sync::Arc<FakeSubvolumes>,
    crate::volumes::VolumeStore,
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    let env: HashMap<String, String> = [
        ("VOLUMES_PATH", root.join("volumes")),
        ("SNAPSHOTS_PATH", root.join("snapshots")),
        ("TEST_REMOTE_PATH", root.join("received")),
        ("STATE_PATH", root.join("state")),
    ]
    .into_iter()
    .map(|(k, v)| (format!("BUTTERVOLUME_{k}"), v.display().to_string()))
    .collect();
    let config = crate::config::Config::resolve(&env, &HashMap::new()).expect("test config");
    let fs = std::sync::Arc::new(FakeSubvolumes::default());
    let store = crate::volumes::VolumeStore::open_with(std::sync::Arc::new(config), fs.clone())
        .expect("a store on the fake");
    (dir, fs, store)
}

/// A change made through the fake, in call order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create(PathBuf),
    Delete(PathBuf),
    Snapshot {
        source: PathBuf,
        dest: PathBuf,
        read_only: bool,
    },
    SetReadOnly(PathBuf, bool),
    AddInodeFlags(PathBuf, libc::c_int),
    SetXattr(PathBuf, String),
    RemoveXattr(PathBuf, String),
}

/// Which change [`FakeSubvolumes::fail_next`] makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Delete,
    Snapshot,
    SetReadOnly,
    AddInodeFlags,
    SetXattr,
}

#[derive(Debug, Clone)]
struct Subvolume {
    identity: SubvolumeIdentity,
    xattrs: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct State {
    /// By inode number of the subvolume's directory.
    subvolumes: HashMap<u64, Subvolume>,
    counter: u64,
    calls: Vec<Call>,
    /// The next change of this kind whose path contains the text fails.
    fail: Option<(Op, String)>,
}

/// See the module doc.
#[derive(Default)]
pub struct FakeSubvolumes {
    state: Mutex<State>,
}

/// The key of the directory at `path`: its inode number.
fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| m.ino())
}

fn injected(op: &'static str, path: &Path) -> BtrfsError {
    BtrfsError::Io {
        op,
        path: path.into(),
        source: std::io::Error::other("injected failure"),
    }
}

fn missing(op: &'static str, path: &Path) -> BtrfsError {
    BtrfsError::Io {
        op,
        path: path.into(),
        source: std::io::ErrorKind::NotFound.into(),
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BtrfsError + 'a {
    move |source| BtrfsError::Io {
        op,
        path: path.into(),
        source,
    }
}

/// Copies a directory tree (files, directories, symlinks).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &dest)?;
        } else {
            std::fs::copy(&source, &dest)?;
        }
    }
    Ok(())
}

impl FakeSubvolumes {
    /// The changes made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Makes the next change of kind `op` fail (once).
    pub fn fail_next(&self, op: Op) {
        self.fail_next_at(op, "");
    }

    /// Makes the next change of kind `op` on a path containing `needle`
    /// fail (once).
    pub fn fail_next_at(&self, op: Op, needle: &str) {
        self.lock().fail = Some((op, needle.into()));
    }

    /// Places a read-only subvolume at `dest` as `btrfs receive` would:
    /// its received UUID is `received_uuid`, its content a copy of `from`.
    pub fn receive(&self, from: &Path, dest: &Path, received_uuid: &str) {
        copy_tree(from, dest).expect("fake receive copies");
        let mut state = self.lock();
        let mut identity = state.next_identity(None, true);
        identity.received_uuid = Some(received_uuid.into());
        state.insert(dest, identity, HashMap::new());
    }

    /// Records a change of the subvolume's content (what a write does to a
    /// real subvolume's generation): it moves to the next transaction.
    pub fn touch(&self, path: &Path) {
        let mut state = self.lock();
        state.counter += 1;
        let transaction = state.counter;
        state
            .get_mut("touch", path)
            .expect("a fake subvolume")
            .identity
            .generation = transaction;
    }

    /// Sets a subvolume's creation time (seconds since the epoch).
    pub fn set_otime(&self, path: &Path, otime: i64) {
        let mut state = self.lock();
        state
            .get_mut("set otime", path)
            .expect("a fake subvolume")
            .identity
            .otime = otime;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `call`, or fails it if [`FakeSubvolumes::fail_next`] asked.
    fn change(&self, op: Op, name: &'static str, path: &Path, call: Call) -> Result<()> {
        let mut state = self.lock();
        let armed = state.fail.as_ref().is_some_and(|(kind, needle)| {
            *kind == op && path.to_string_lossy().contains(needle.as_str())
        });
        if armed {
            state.fail = None;
            return Err(injected(name, path));
        }
        state.calls.push(call);
        Ok(())
    }
}

impl State {
    fn next_identity(&mut self, parent_uuid: Option<String>, read_only: bool) -> SubvolumeIdentity {
        self.counter += 1;
        SubvolumeIdentity {
            uuid: format!("00000000-0000-0000-0000-{:012}", self.counter),
            parent_uuid,
            received_uuid: None,
            read_only,
            otime: chrono::Utc::now().timestamp(),
            id: 255 + self.counter,
            otransid: self.counter,
            generation: self.counter,
        }
    }

    fn get(&self, op: &'static str, path: &Path) -> Result<&Subvolume> {
        inode(path)
            .and_then(|ino| self.subvolumes.get(&ino))
            .ok_or_else(|| missing(op, path))
    }

    fn get_mut(&mut self, op: &'static str, path: &Path) -> Result<&mut Subvolume> {
        inode(path)
            .and_then(|ino| self.subvolumes.get_mut(&ino))
            .ok_or_else(|| missing(op, path))
    }

    fn insert(
        &mut self,
        path: &Path,
        identity: SubvolumeIdentity,
        xattrs: HashMap<String, Vec<u8>>,
    ) {
        let ino = inode(path).expect("the fake just made this directory");
        self.subvolumes.insert(ino, Subvolume { identity, xattrs });
    }
}

impl Subvolumes for FakeSubvolumes {
    fn is_btrfs(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn is_subvolume(&self, path: &Path) -> bool {
        self.lock().get("", path).is_ok()
    }

    fn create(&self, path: &Path) -> Result<()> {
        self.change(
            Op::Create,
            "create subvolume",
            path,
            Call::Create(path.into()),
        )?;
        std::fs::create_dir(path).map_err(io("create subvolume", path))?;
        let mut state = self.lock();
        let identity = state.next_identity(None, false);
        state.insert(path, identity, HashMap::new());
        Ok(())
    }

    fn delete(&self, path: &Path) -> Result<()> {
        self.lock().get("delete subvolume", path)?;
        self.change(
            Op::Delete,
            "delete subvolume",
            path,
            Call::Delete(path.into()),
        )?;
        let ino = inode(path);
        std::fs::remove_dir_all(path).map_err(io("delete subvolume", path))?;
        if let Some(ino) = ino {
            self.lock().subvolumes.remove(&ino);
        }
        Ok(())
    }

    fn snapshot(&self, source: &Path, dest: &Path, read_only: bool) -> Result<()> {
        let (parent, xattrs) = {
            let state = self.lock();
            let source = state.get("snapshot", source)?;
            (source.identity.uuid.clone(), source.xattrs.clone())
        };
        let call = Call::Snapshot {
            source: source.into(),
            dest: dest.into(),
            read_only,
        };
        self.change(Op::Snapshot, "snapshot", dest, call)?;
        copy_tree(source, dest).map_err(io("snapshot", dest))?;
        let mut state = self.lock();
        let identity = state.next_identity(Some(parent), read_only);
        state.insert(dest, identity, xattrs);
        Ok(())
    }

    fn set_read_only(&self, path: &Path, read_only: bool) -> Result<()> {
        self.lock().get("set read-only flag", path)?;
        let call = Call::SetReadOnly(path.into(), read_only);
        self.change(Op::SetReadOnly, "set read-only flag", path, call)?;
        self.lock()
            .get_mut("set read-only flag", path)?
            .identity
            .read_only = read_only;
        Ok(())
    }

    fn identity(&self, path: &Path) -> Result<SubvolumeIdentity> {
        Ok(self.lock().get("subvolume info", path)?.identity.clone())
    }

    fn add_inode_flags(&self, path: &Path, flags: libc::c_int) -> Result<()> {
        self.change(
            Op::AddInodeFlags,
            "set inode flags",
            path,
            Call::AddInodeFlags(path.into(), flags),
        )
    }

    fn flush(&self, _path: &Path) -> Result<()> {
        Ok(())
    }

    fn get_xattr(&self, path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
        let state = self.lock();
        Ok(state
            .get("getxattr", path)
            .ok()
            .and_then(|s| s.xattrs.get(name).cloned()))
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> Result<()> {
        if self.lock().get("setxattr", path)?.identity.read_only {
            return Err(BtrfsError::Io {
                op: "setxattr",
                path: path.into(),
                source: std::io::Error::from_raw_os_error(libc::EROFS),
            });
        }
        self.change(
            Op::SetXattr,
            "setxattr",
            path,
            Call::SetXattr(path.into(), name.into()),
        )?;
        let mut state = self.lock();
        let subvolume = state.get_mut("setxattr", path)?;
        subvolume.xattrs.insert(name.into(), value.to_vec());
        Ok(())
    }

    fn remove_xattr(&self, path: &Path, name: &str) -> Result<()> {
        self.change(
            Op::SetXattr,
            "removexattr",
            path,
            Call::RemoveXattr(path.into(), name.into()),
        )?;
        let mut state = self.lock();
        state.get_mut("removexattr", path)?.xattrs.remove(name);
        Ok(())
    }
}
