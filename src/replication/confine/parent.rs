//! The parent snapshot of an incremental stream, as it is on disk: what a
//! path names there, found by `lstat`ing each component (never following a
//! symlink).

use std::path::{Path, PathBuf};

use super::{Inherited, Kind};

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

#[cfg(test)]
mod tests {
    use super::*;

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
