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
//! - no second SUBVOL/SNAPSHOT command: one stream lands one subvolume.
//!
//! The kernel never sends anything these rules refuse: a path it writes is
//! built from the inode's parent directories, and it does not write data
//! through symlinks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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

/// The parent snapshot on disk (read-only, so its answers never change).
pub struct ParentSnapshot {
    root: PathBuf,
}

impl ParentSnapshot {
    pub fn new(root: &Path) -> ParentSnapshot {
        ParentSnapshot { root: root.into() }
    }
}

impl Inherited for ParentSnapshot {
    fn kind(&mut self, path: &str) -> Kind {
        // lstat each component in turn: a symlink anywhere before the last
        // one means the path does not name anything inside the snapshot.
        let mut current = self.root.clone();
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, component) in components.iter().enumerate() {
            current.push(component);
            let kind = match std::fs::symlink_metadata(&current) {
                Ok(m) if m.is_dir() => Kind::Dir,
                Ok(m) if m.file_type().is_symlink() => Kind::Symlink,
                Ok(_) => Kind::Other,
                Err(_) => Kind::Missing,
            };
            if i + 1 < components.len() && kind != Kind::Dir {
                return Kind::Missing;
            }
            if i + 1 == components.len() {
                return kind;
            }
        }
        Kind::Dir
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

fn refused(why: impl Into<String>) -> StreamError {
    StreamError::Refused(why.into())
}

/// A path attribute as text, after the syntactic checks.
fn checked_path<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, StreamError> {
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
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn parent_of(path: &str) -> Option<(&str, &str)> {
    if path.is_empty() {
        return None;
    }
    Some(path.rsplit_once('/').unwrap_or(("", path)))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
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
            cmd::SET_XATTR | cmd::REMOVE_XATTR | cmd::CHOWN | cmd::UTIMES | cmd::UPDATE_EXTENT => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A parent snapshot given as a list of (path, kind).
    struct FakeParent(HashMap<String, Kind>, Vec<String>);

    impl Inherited for FakeParent {
        fn kind(&mut self, path: &str) -> Kind {
            self.1.push(path.to_string());
            if path.is_empty() {
                return Kind::Dir;
            }
            *self.0.get(path).unwrap_or(&Kind::Missing)
        }
    }

    fn parent(entries: &[(&str, Kind)]) -> FakeParent {
        FakeParent(
            entries.iter().map(|(p, k)| (p.to_string(), *k)).collect(),
            Vec::new(),
        )
    }

    fn attrs<'a>(items: &[(u16, &'a [u8])]) -> Attributes<'a> {
        let mut data = Vec::new();
        for (kind, value) in items {
            data.extend_from_slice(&kind.to_le_bytes());
            data.extend_from_slice(&(value.len() as u16).to_le_bytes());
            data.extend_from_slice(value);
        }
        // Leak: the test data must outlive the parsed view.
        let data: &'a [u8] = Box::leak(data.into_boxed_slice());
        Attributes::parse(data, 1).unwrap()
    }

    fn run<I: Inherited>(c: &mut Confinement<I>, command: u16, items: &[(u16, &[u8])]) -> bool {
        c.check(command, &attrs(items)).is_ok()
    }

    #[test]
    fn a_legitimate_full_stream_passes() {
        let mut c = Confinement::new(NoParent, false);
        let p = attr::PATH;
        assert!(run(&mut c, cmd::MKDIR, &[(p, b"o257-5-0")]));
        assert!(run(
            &mut c,
            cmd::RENAME,
            &[(p, b"o257-5-0"), (attr::PATH_TO, b"dir")]
        ));
        assert!(run(&mut c, cmd::MKFILE, &[(p, b"o258-5-0")]));
        assert!(run(
            &mut c,
            cmd::RENAME,
            &[(p, b"o258-5-0"), (attr::PATH_TO, b"dir/f")]
        ));
        assert!(run(
            &mut c,
            cmd::WRITE,
            &[(p, b"dir/f"), (attr::DATA, b"x")]
        ));
        assert!(run(
            &mut c,
            cmd::SYMLINK,
            &[(p, b"dir/l"), (attr::PATH_LINK, b"/etc/passwd")]
        ));
        assert!(run(&mut c, cmd::CHOWN, &[(p, b"dir/l")]));
        assert!(run(
            &mut c,
            cmd::LINK,
            &[(p, b"dir/g"), (attr::PATH_LINK, b"dir/f")]
        ));
        assert!(run(&mut c, cmd::UTIMES, &[(p, b"")]));
        assert!(run(&mut c, cmd::CHMOD, &[(p, b"dir")]));
        assert!(run(&mut c, cmd::END, &[]));
    }

    #[test]
    fn traversal_absolute_and_nul_paths_are_refused() {
        for bad in [
            &b"../x"[..],
            b"../../volumes/db/data.txt",
            b"a/../../x",
            b"/etc/passwd",
            b"a\0b",
            b"\xff",
        ] {
            for command in [cmd::MKFILE, cmd::MKDIR, cmd::UNLINK, cmd::WRITE, cmd::CHOWN] {
                let mut c = Confinement::new(NoParent, false);
                assert!(
                    !run(&mut c, command, &[(attr::PATH, bad)]),
                    "{bad:?} {command}"
                );
            }
            let mut c = Confinement::new(NoParent, false);
            run(&mut c, cmd::MKFILE, &[(attr::PATH, b"f")]);
            assert!(!run(
                &mut c,
                cmd::RENAME,
                &[(attr::PATH, b"f"), (attr::PATH_TO, bad)]
            ));
            assert!(!run(
                &mut c,
                cmd::LINK,
                &[(attr::PATH, b"g"), (attr::PATH_LINK, bad)]
            ));
            assert!(!run(
                &mut c,
                cmd::CLONE,
                &[(attr::PATH, b"f"), (attr::CLONE_PATH, bad)]
            ));
        }
    }

    #[test]
    fn nothing_goes_through_or_writes_to_a_symlink_made_by_the_stream() {
        let mut c = Confinement::new(NoParent, false);
        let p = attr::PATH;
        assert!(run(
            &mut c,
            cmd::SYMLINK,
            &[(p, b"l"), (attr::PATH_LINK, b"/root/.ssh")]
        ));
        for command in [
            cmd::MKFILE,
            cmd::WRITE,
            cmd::UNLINK,
            cmd::CHOWN,
            cmd::SET_XATTR,
        ] {
            assert!(
                !run(&mut c, command, &[(p, b"l/authorized_keys")]),
                "{command}"
            );
        }
        for command in [cmd::WRITE, cmd::TRUNCATE, cmd::CHMOD, cmd::FALLOCATE] {
            assert!(!run(&mut c, command, &[(p, b"l")]), "{command}");
        }
        // Renamed or hard-linked, it is still a symlink.
        assert!(run(
            &mut c,
            cmd::RENAME,
            &[(p, b"l"), (attr::PATH_TO, b"m")]
        ));
        assert!(!run(&mut c, cmd::WRITE, &[(p, b"m")]));
        assert!(run(
            &mut c,
            cmd::LINK,
            &[(p, b"n"), (attr::PATH_LINK, b"m")]
        ));
        assert!(!run(&mut c, cmd::MKFILE, &[(p, b"n/x")]));
        // A file is not a directory either.
        assert!(run(&mut c, cmd::MKFILE, &[(p, b"f")]));
        assert!(!run(&mut c, cmd::MKFILE, &[(p, b"f/x")]));
        // Removed and recreated as a directory: fine.
        assert!(run(&mut c, cmd::UNLINK, &[(p, b"f")]));
        assert!(run(&mut c, cmd::MKDIR, &[(p, b"f")]));
        assert!(run(&mut c, cmd::MKFILE, &[(p, b"f/x")]));
    }

    #[test]
    fn inherited_symlinks_and_directories_are_looked_up_in_the_parent() {
        let p = attr::PATH;
        let mut c = Confinement::new(
            parent(&[
                ("data", Kind::Dir),
                ("data/f", Kind::Other),
                ("link", Kind::Symlink),
            ]),
            true,
        );
        assert!(run(&mut c, cmd::WRITE, &[(p, b"data/f")]));
        assert!(!run(&mut c, cmd::WRITE, &[(p, b"link")]));
        assert!(!run(&mut c, cmd::MKFILE, &[(p, b"link/x")]));
        assert!(!run(&mut c, cmd::MKFILE, &[(p, b"nowhere/x")]));
        // A renamed inherited directory keeps its inherited content.
        assert!(run(
            &mut c,
            cmd::RENAME,
            &[(p, b"data"), (attr::PATH_TO, b"moved")]
        ));
        assert!(run(&mut c, cmd::WRITE, &[(p, b"moved/f")]));
        assert!(!run(&mut c, cmd::WRITE, &[(p, b"data/f")]));
        // An inherited symlink renamed is still one.
        assert!(run(
            &mut c,
            cmd::RENAME,
            &[(p, b"link"), (attr::PATH_TO, b"moved/l")]
        ));
        assert!(!run(&mut c, cmd::MKFILE, &[(p, b"moved/l/x")]));
        // Each parent path is looked up once.
        let asked = &c.inherited.1;
        let mut unique = asked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(asked.len(), unique.len(), "{asked:?}");
    }

    #[test]
    fn one_subvolume_per_stream() {
        let mut c = Confinement::new(NoParent, false);
        assert!(!run(&mut c, cmd::SUBVOL, &[(attr::PATH, b"db@2099")]));
        assert!(!run(&mut c, cmd::SNAPSHOT, &[(attr::PATH, b"db@2099")]));
        assert!(!run(&mut c, 99, &[]));
    }

    #[test]
    fn the_parent_snapshot_is_walked_without_following_symlinks() {
        let dir =
            std::env::temp_dir().join(format!("bv-confine-{}", crate::fsutil::unique_suffix()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("l")).unwrap();
        let mut parent = ParentSnapshot::new(&dir);
        assert_eq!(parent.kind(""), Kind::Dir);
        assert_eq!(parent.kind("d"), Kind::Dir);
        assert_eq!(parent.kind("d/f"), Kind::Other);
        assert_eq!(parent.kind("l"), Kind::Symlink);
        // /etc/passwd exists, but not inside the snapshot.
        assert_eq!(parent.kind("l/passwd"), Kind::Missing);
        assert_eq!(parent.kind("d/f/x"), Kind::Missing);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
