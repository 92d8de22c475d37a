//! The seam between the volume logic and btrfs: [`Subvolumes`], the few
//! operations the store, snapshots, purge, parent choice and the forced
//! command need, as a trait.
//!
//! Why a trait: the rules built on these operations (which snapshot is the
//! newest, what restore saves before it swaps, which snapshots a purge or a
//! peer may delete, which parent an incremental send uses) deserve unit
//! tests that run without root or a btrfs filesystem. The daemon uses
//! [`Btrfs`], which forwards to the safe ioctl layer in [`crate::btrfs`];
//! unit tests use the recording fake in `fake` (test builds only), which
//! keeps subvolumes as plain directories and their identities in memory.
//!
//! What stays outside the trait: the send ioctl and `sync` (replication
//! streams are tested end to end against real btrfs), and inode flags,
//! which only `create` sets.

use std::path::Path;

use crate::btrfs::{self, Result, SubvolumeIdentity};

#[cfg(test)]
pub mod fake;

/// Subvolume operations. Every method blocks.
pub trait Subvolumes: Send + Sync + 'static {
    /// True if `path` is on a btrfs filesystem.
    fn is_btrfs(&self, path: &Path) -> bool;
    /// True if `path` is the root of a subvolume.
    fn is_subvolume(&self, path: &Path) -> bool;
    /// Creates an empty subvolume.
    fn create(&self, path: &Path) -> Result<()>;
    /// Deletes a subvolume (not recursively).
    fn delete(&self, path: &Path) -> Result<()>;
    /// Snapshots `source` at `dest` (which must not exist).
    fn snapshot(&self, source: &Path, dest: &Path, read_only: bool) -> Result<()>;
    /// Sets or clears the read-only flag.
    fn set_read_only(&self, path: &Path, read_only: bool) -> Result<()>;
    /// UUIDs, flags and creation order of a subvolume.
    fn identity(&self, path: &Path) -> Result<SubvolumeIdentity>;
    /// Adds `chattr` flags ([`btrfs::FS_NOCOW_FL`], [`btrfs::FS_COMPR_FL`]).
    fn add_inode_flags(&self, path: &Path, flags: libc::c_int) -> Result<()>;
    /// Writes the filesystem's dirty data out and commits, so that
    /// [`SubvolumeIdentity::generation`] accounts for every write made so far.
    fn flush(&self, path: &Path) -> Result<()>;
    /// Reads an extended attribute (`None` when absent).
    fn get_xattr(&self, path: &Path, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes an extended attribute.
    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> Result<()>;
    /// Removes an extended attribute (absent: no error).
    fn remove_xattr(&self, path: &Path, name: &str) -> Result<()>;
}

/// The real thing: the kernel's btrfs through [`crate::btrfs`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Btrfs;

impl Subvolumes for Btrfs {
    fn is_btrfs(&self, path: &Path) -> bool {
        btrfs::is_btrfs(path)
    }
    fn is_subvolume(&self, path: &Path) -> bool {
        btrfs::is_subvolume(path)
    }
    fn create(&self, path: &Path) -> Result<()> {
        btrfs::create_subvolume(path)
    }
    fn delete(&self, path: &Path) -> Result<()> {
        btrfs::delete_subvolume(path)
    }
    fn snapshot(&self, source: &Path, dest: &Path, read_only: bool) -> Result<()> {
        btrfs::snapshot(source, dest, read_only)
    }
    fn set_read_only(&self, path: &Path, read_only: bool) -> Result<()> {
        btrfs::set_read_only(path, read_only)
    }
    fn identity(&self, path: &Path) -> Result<SubvolumeIdentity> {
        btrfs::identity(path)
    }
    fn add_inode_flags(&self, path: &Path, flags: libc::c_int) -> Result<()> {
        btrfs::add_inode_flags(path, flags)
    }
    fn flush(&self, path: &Path) -> Result<()> {
        btrfs::flush_and_sync(path)
    }
    fn get_xattr(&self, path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
        btrfs::get_xattr(path, name)
    }
    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> Result<()> {
        btrfs::set_xattr(path, name, value)
    }
    fn remove_xattr(&self, path: &Path, name: &str) -> Result<()> {
        btrfs::remove_xattr(path, name)
    }
}
