//! The rule that keeps a received stream inside the one subvolume it
//! creates: every path of every command is checked before `btrfs receive`
//! sees it.
//!
//! `btrfs receive` joins each path of the stream to the new subvolume and
//! calls open/rename/link/unlink/... on the result, following symlinks and
//! `..` like any program. A hostile peer could otherwise write
//! `../../volumes/db/data` or create a symlink `l -> /root/.ssh` and then
//! write `l/authorized_keys`. Receive also runs chrooted into the receive
//! directory (see [`super::receive`]), so even a gap here cannot leave that
//! directory; this module closes the rest:
//!
//! - a path is relative, has no `..` component and no NUL byte;
//! - every directory a path goes through is known to be a real directory:
//!   created by this stream (MKDIR, moved by RENAME), or inherited from the
//!   parent snapshot of an incremental stream and a directory there (looked
//!   up component by component, never following a symlink);
//! - operations that follow a symlink in their last component (WRITE,
//!   TRUNCATE, CHMOD, CLONE, FALLOCATE, FILEATTR, ENCODED_WRITE,
//!   ENABLE_VERITY) never target one;
//! - no second SUBVOL/SNAPSHOT command: one stream lands one subvolume;
//! - no `trusted.` extended attribute but the volume's own metadata
//!   ([`crate::metadata::XATTR`]) on the subvolume's root: that namespace
//!   is for privileged programs (overlayfs keeps its whiteouts and
//!   redirects there), and a stream must not plant metadata on a file.
//!
//! The kernel never sends anything these rules refuse: a path it writes is
//! built from the inode's parent directories, and it does not write data
//! through symlinks.
//!
//! This file owns those rules: the state of one stream ([`Confinement`]),
//! what each command may do. Beside it: the syntax of a path
//! (`confine/paths.rs`), the walk of the parent snapshot on disk
//! ([`ParentSnapshot`], `confine/parent.rs`) and the tests
//! (`confine/tests.rs`).

mod parent;
mod paths;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

pub use parent::ParentSnapshot;
use paths::{checked_path, join, normalize, parent_of, refused};

use super::stream::{attr, cmd, Attributes, StreamError};

/// What a path names, as far as confinement cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    /// A regular file, device, fifo or socket.
    Other,
    Missing,
}

/// Answers "what is at this path of the parent snapshot" (without following
/// symlinks anywhere along it).
pub trait Inherited {
    fn kind(&mut self, path: &str) -> Kind;
}

/// A full stream has no parent: nothing is inherited.
pub struct NoParent;

impl Inherited for NoParent {
    fn kind(&mut self, _path: &str) -> Kind {
        Kind::Missing
    }
}

/// What this stream has done at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Created (or linked) by this stream.
    Made(Kind),
    /// Moved here by a RENAME from this path of the parent snapshot.
    From(String),
    /// Removed or renamed away.
    Gone,
}

/// Where a path's content comes from.
enum Origin {
    Made(Kind),
    Parent(String),
    Missing,
}

/// The state of one received stream; feed it every command after the first.
pub struct Confinement<I: Inherited> {
    inherited: I,
    nodes: BTreeMap<String, Node>,
    cache: HashMap<String, Kind>,
}

impl<I: Inherited> Confinement<I> {
    /// `incremental`: the stream builds on a parent snapshot, whose tree is
    /// `inherited`; a full stream starts from an empty root directory.
    pub fn new(inherited: I, incremental: bool) -> Confinement<I> {
        let mut nodes = BTreeMap::new();
        if !incremental {
            nodes.insert(String::new(), Node::Made(Kind::Dir));
        }
        Confinement {
            inherited,
            nodes,
            cache: HashMap::new(),
        }
    }

    fn origin(&self, path: &str) -> Origin {
        match self.nodes.get(path) {
            Some(Node::Made(kind)) => return Origin::Made(*kind),
            Some(Node::From(old)) => return Origin::Parent(old.clone()),
            Some(Node::Gone) => return Origin::Missing,
            None => {}
        }
        let Some((dir, name)) = parent_of(path) else {
            return Origin::Parent(String::new());
        };
        match self.origin(dir) {
            Origin::Parent(old) => Origin::Parent(join(&old, name)),
            // A directory made by this stream holds only what it put there.
            Origin::Made(_) | Origin::Missing => Origin::Missing,
        }
    }

    fn kind(&mut self, path: &str) -> Kind {
        match self.origin(path) {
            Origin::Made(kind) => kind,
            Origin::Missing => Kind::Missing,
            Origin::Parent(old) => {
                if let Some(kind) = self.cache.get(&old) {
                    return *kind;
                }
                let kind = self.inherited.kind(&old);
                self.cache.insert(old, kind);
                kind
            }
        }
    }

    /// Every directory `path` goes through must be a real directory.
    fn check_dirs(&mut self, path: &str) -> Result<(), StreamError> {
        let mut dir = String::new();
        let mut components = path.split('/').peekable();
        while let Some(component) = components.next() {
            if self.kind(&dir) != Kind::Dir {
                return Err(refused(format!(
                    "{path:?} goes through {dir:?}, which is not a directory of the received subvolume"
                )));
            }
            if components.peek().is_none() {
                break;
            }
            dir = join(&dir, component);
        }
        Ok(())
    }

    /// A path attribute, checked and normalized, whose directories are real.
    fn path(&mut self, attributes: &Attributes, kind: u16) -> Result<String, StreamError> {
        let name = match kind {
            attr::PATH_TO => "target path",
            attr::PATH_LINK => "link path",
            _ => "path",
        };
        let bytes = attributes
            .get(kind)
            .ok_or_else(|| refused(format!("a command without its {name}")))?;
        let path = normalize(checked_path(bytes, name)?);
        if !path.is_empty() {
            self.check_dirs(&path)?;
        }
        Ok(path)
    }

    /// The last component is operated on through a call that follows
    /// symlinks: it must not be one.
    fn no_symlink(&mut self, path: &str) -> Result<(), StreamError> {
        if self.kind(path) == Kind::Symlink {
            return Err(refused(format!(
                "{path:?} is a symlink: refusing to write through it"
            )));
        }
        Ok(())
    }

    fn forget_below(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in below {
            self.nodes.remove(&key);
        }
    }

    /// Accepts or refuses one command (any command after the first).
    pub fn check(&mut self, command: u16, attributes: &Attributes) -> Result<(), StreamError> {
        match command {
            cmd::SUBVOL | cmd::SNAPSHOT => {
                return Err(refused("a second subvolume in one stream"));
            }
            cmd::MKFILE | cmd::MKNOD | cmd::MKFIFO | cmd::MKSOCK => {
                let path = self.path(attributes, attr::PATH)?;
                self.forget_below(&path);
                self.nodes.insert(path, Node::Made(Kind::Other));
            }
            cmd::MKDIR => {
                let path = self.path(attributes, attr::PATH)?;
                self.forget_below(&path);
                self.nodes.insert(path, Node::Made(Kind::Dir));
            }
            cmd::SYMLINK => {
                let path = self.path(attributes, attr::PATH)?;
                // The link's target is content, never followed here.
                attributes
                    .get(attr::PATH_LINK)
                    .ok_or_else(|| refused("a symlink without a target"))?;
                self.forget_below(&path);
                self.nodes.insert(path, Node::Made(Kind::Symlink));
            }
            cmd::RENAME => {
                let from = self.path(attributes, attr::PATH)?;
                let to = self.path(attributes, attr::PATH_TO)?;
                if from.is_empty() || to.is_empty() {
                    return Err(refused("renaming the subvolume's root"));
                }
                if to == from || to.starts_with(&format!("{from}/")) {
                    return Err(refused(format!("renaming {from:?} into itself")));
                }
                let moved = match self.origin(&from) {
                    Origin::Made(kind) => Node::Made(kind),
                    Origin::Parent(old) => Node::From(old),
                    Origin::Missing => {
                        return Err(refused(format!("renaming {from:?}, which does not exist")))
                    }
                };
                // What lived under `from` now lives under `to`.
                let prefix = format!("{from}/");
                let below: Vec<(String, Node)> = self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.forget_below(&from);
                self.forget_below(&to);
                for (key, node) in below {
                    self.nodes
                        .insert(format!("{to}/{}", &key[prefix.len()..]), node);
                }
                self.nodes.insert(to, moved);
                self.nodes.insert(from, Node::Gone);
            }
            cmd::LINK => {
                let path = self.path(attributes, attr::PATH)?;
                let existing = self.path(attributes, attr::PATH_LINK)?;
                let kind = self.kind(&existing);
                if kind == Kind::Dir {
                    return Err(refused(format!("hard link to the directory {existing:?}")));
                }
                self.nodes.insert(path, Node::Made(kind));
            }
            cmd::UNLINK | cmd::RMDIR => {
                let path = self.path(attributes, attr::PATH)?;
                if path.is_empty() {
                    return Err(refused("removing the subvolume's root"));
                }
                self.forget_below(&path);
                self.nodes.insert(path, Node::Gone);
            }
            // lsetxattr, lremovexattr, lchown, utimensat(AT_SYMLINK_NOFOLLOW),
            // and the no-data placeholder: the last component is not followed.
            cmd::SET_XATTR | cmd::REMOVE_XATTR => {
                let path = self.path(attributes, attr::PATH)?;
                let name = attributes.get(attr::XATTR_NAME).unwrap_or_default();
                let ours = crate::metadata::XATTR.as_bytes();
                if name.starts_with(b"trusted.") && (name != ours || !path.is_empty()) {
                    return Err(refused(format!(
                        "the extended attribute {:?} on {path:?}",
                        String::from_utf8_lossy(name)
                    )));
                }
            }
            cmd::CHOWN | cmd::UTIMES | cmd::UPDATE_EXTENT => {
                self.path(attributes, attr::PATH)?;
            }
            cmd::WRITE
            | cmd::TRUNCATE
            | cmd::CHMOD
            | cmd::FALLOCATE
            | cmd::FILEATTR
            | cmd::ENCODED_WRITE
            | cmd::ENABLE_VERITY => {
                let path = self.path(attributes, attr::PATH)?;
                self.no_symlink(&path)?;
            }
            cmd::CLONE => {
                let path = self.path(attributes, attr::PATH)?;
                self.no_symlink(&path)?;
                // The source is read from a subvolume found by UUID (inside
                // the chroot): only its syntax can be checked here.
                let source = attributes
                    .get(attr::CLONE_PATH)
                    .ok_or_else(|| refused("a clone without its source path"))?;
                checked_path(source, "clone source path")?;
            }
            cmd::END => {}
            other => return Err(refused(format!("unknown command {other}"))),
        }
        Ok(())
    }
}
