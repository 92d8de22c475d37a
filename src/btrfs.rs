//! The only place that touches btrfs: subvolumes, snapshots, the read-only
//! flag, file attributes (NOCOW, compression) and extended attributes.
//!
//! Subvolume operations go through libbtrfsutil (the `btrfsutil` crate),
//! except the hot paths (snapshot creation, send) and the few ioctls and
//! xattr calls libbtrfsutil does not cover, which are wrapped here, once,
//! behind safe functions. Nothing here spawns a process.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use btrfsutil::subvolume::{DeleteFlags, Subvolume};

/// Inode number of the root directory of every btrfs subvolume
/// (BTRFS_FIRST_FREE_OBJECTID). A directory with this inode number on a
/// btrfs filesystem is a subvolume root: a `stat`, not an ioctl.
const SUBVOLUME_ROOT_INO: u64 = 256;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// `chattr +C`: no copy-on-write (and no compression) for new files.
pub const FS_NOCOW_FL: libc::c_int = 0x0080_0000;
/// `chattr +c`: compress new files with the filesystem's default algorithm.
pub const FS_COMPR_FL: libc::c_int = 0x0000_0004;

#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    #[error("{op} {path}: {message}")]
    Util {
        op: &'static str,
        path: PathBuf,
        message: String,
        /// The errno libbtrfsutil left behind (it reports failed syscalls
        /// through errno), so callers match kinds, never message text.
        errno: Option<i32>,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BtrfsError {
    /// Must be called right after the failed libbtrfsutil call, before
    /// anything else can overwrite errno.
    fn util(op: &'static str, path: &Path, err: btrfsutil::BtrfsUtilError) -> Self {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .filter(|&n| n != 0);
        BtrfsError::Util {
            op,
            path: path.into(),
            message: err.to_string(),
            errno,
        }
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        BtrfsError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, BtrfsError>;

/// Identity of a subvolume, as replication and `inspect` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolumeIdentity {
    pub uuid: String,
    pub parent_uuid: Option<String>,
    pub received_uuid: Option<String>,
    pub read_only: bool,
    /// Creation time, seconds since the epoch (the local clock: for ages,
    /// never for order).
    pub otime: i64,
    /// Subvolume id: allocated in increasing order as subvolumes are made.
    pub id: u64,
    /// The transaction that created the subvolume.
    pub otransid: u64,
    /// The last transaction that changed the subvolume's tree.
    pub generation: u64,
}

impl SubvolumeIdentity {
    /// The subvolume's place in this filesystem's creation order: what
    /// "newer" means for snapshots, whatever their names or clocks say.
    pub fn creation_order(&self) -> (u64, u64) {
        (self.otransid, self.id)
    }
}

/// Identities for unit tests, instead of each test module spelling out
/// every field.
#[cfg(test)]
impl SubvolumeIdentity {
    /// A read-only subvolume `uuid`, the `order`-th created here
    /// (transaction `order`, id `256 + order`, so [`Self::creation_order`]
    /// follows `order`), with no parent, nothing received, created at the
    /// epoch.
    pub fn example(uuid: &str, order: u64) -> SubvolumeIdentity {
        SubvolumeIdentity {
            uuid: uuid.into(),
            parent_uuid: None,
            received_uuid: None,
            read_only: true,
            otime: 0,
            id: 256 + order,
            otransid: order,
            generation: order,
        }
    }

    /// A snapshot of the subvolume `parent` (its parent UUID).
    pub fn parent(mut self, parent: Option<&str>) -> SubvolumeIdentity {
        self.parent_uuid = parent.map(String::from);
        self
    }

    /// Received from a peer as the state `received` (its received UUID).
    pub fn received(mut self, received: Option<&str>) -> SubvolumeIdentity {
        self.received_uuid = received.map(String::from);
        self
    }

    /// Created at `otime`, seconds since the epoch.
    pub fn at(mut self, otime: i64) -> SubvolumeIdentity {
        self.otime = otime;
        self
    }
}

/// True if `path` is on a btrfs filesystem.
pub fn is_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == BTRFS_SUPER_MAGIC)
        .unwrap_or(false)
}

/// True if `path` is the root of a subvolume. One `lstat`: the root directory
/// of a subvolume always has inode 256, and the data dirs are checked to be
/// btrfs at start, so this is as exact as libbtrfsutil's check and far cheaper.
pub fn is_subvolume(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.is_dir() && m.ino() == SUBVOLUME_ROOT_INO)
        .unwrap_or(false)
}

/// Creates an empty subvolume at `path`.
pub fn create_subvolume(path: &Path) -> Result<()> {
    Subvolume::create(path, None)
        .map(|_| ())
        .map_err(|e| BtrfsError::util("create subvolume", path, e))
}

/// Deletes the subvolume at `path` (not recursive: a nested subvolume inside
/// a volume makes this fail rather than silently destroy it).
pub fn delete_subvolume(path: &Path) -> Result<()> {
    let subvolume = open(path)?;
    subvolume
        .delete(None::<DeleteFlags>)
        .map_err(|e| BtrfsError::util("delete subvolume", path, e))
}

/// `struct btrfs_ioctl_vol_args_v2` from linux/btrfs.h (4096 bytes), as
/// BTRFS_IOC_SNAP_CREATE_V2 reads it: `fd` is the source subvolume, `name`
/// the new entry in the directory the ioctl is called on.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_MAX + 1],
}

const SUBVOL_NAME_MAX: usize = 4039;
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);
/// BTRFS_SUBVOL_RDONLY.
const SUBVOL_RDONLY: u64 = 1 << 1;

nix::ioctl_write_ptr!(btrfs_ioc_snap_create_v2, 0x94, 23, VolArgsV2);

/// Snapshots the subvolume `source` to `dest` (which must not exist).
///
/// One BTRFS_IOC_SNAP_CREATE_V2 on `dest`'s parent, nothing else: the
/// btrfsutil crate's snapshot added two opens, two INO_LOOKUPs, two statfs
/// and a WAIT_SYNC around it, ~0.5 ms on top of the ~2 ms transaction
/// commit the snapshot itself costs.
pub fn snapshot(source: &Path, dest: &Path, read_only: bool) -> Result<()> {
    let invalid = |message: &str| {
        BtrfsError::io(
            "snapshot",
            dest,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message.to_string()),
        )
    };
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Err(invalid("no parent directory or name"));
    };
    let name = name.as_bytes();
    if name.len() > SUBVOL_NAME_MAX {
        return Err(invalid("name too long"));
    }
    if !is_subvolume(source) {
        let source_error = match std::fs::symlink_metadata(source) {
            Err(e) => e,
            Ok(_) => std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a subvolume"),
        };
        return Err(BtrfsError::io("snapshot", source, source_error));
    }
    let source_dir = File::open(source).map_err(|e| BtrfsError::io("open", source, e))?;
    let parent_dir = File::open(parent).map_err(|e| BtrfsError::io("open", parent, e))?;
    let mut args = VolArgsV2 {
        fd: source_dir.as_raw_fd() as i64,
        transid: 0,
        flags: if read_only { SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; SUBVOL_NAME_MAX + 1],
    };
    args.name[..name.len()].copy_from_slice(name);
    // SAFETY: both fds are open for the duration of the call; `args` is a
    // properly laid out, NUL-terminated vol_args_v2 the kernel only reads.
    unsafe { btrfs_ioc_snap_create_v2(parent_dir.as_raw_fd(), &args) }
        .map_err(|e| BtrfsError::io("snapshot", dest, e.into()))?;
    Ok(())
}

/// Sets or clears the read-only flag of a subvolume.
pub fn set_read_only(path: &Path, read_only: bool) -> Result<()> {
    open(path)?
        .set_ro(read_only)
        .map_err(|e| BtrfsError::util("set read-only flag", path, e))
}

/// UUIDs, read-only flag and creation time of a subvolume.
pub fn identity(path: &Path) -> Result<SubvolumeIdentity> {
    let subvolume = open(path)?;
    let info = subvolume
        .info()
        .map_err(|e| BtrfsError::util("subvolume info", path, e))?;
    // Bit 0 of the root item flags is BTRFS_ROOT_SUBVOL_RDONLY.
    Ok(SubvolumeIdentity {
        uuid: info.uuid.to_string(),
        parent_uuid: info.parent_uuid.map(|u| u.to_string()),
        received_uuid: info.received_uuid.map(|u| u.to_string()),
        read_only: info.flags & 1 == 1,
        otime: info.otime.timestamp(),
        id: info.id,
        otransid: info.otransid,
        generation: info.generation,
    })
}

fn open(path: &Path) -> Result<Subvolume> {
    if !path.exists() {
        return Err(BtrfsError::io(
            "open subvolume",
            path,
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    Subvolume::get(path).map_err(|e| BtrfsError::util("open subvolume", path, e))
}

// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS are declared with a `long` argument in
// the kernel headers but the kernel reads and writes an `int`.
nix::ioctl_read_bad!(
    fs_ioc_getflags,
    nix::request_code_read!(b'f', 1, std::mem::size_of::<libc::c_long>()),
    libc::c_int
);
nix::ioctl_write_ptr_bad!(
    fs_ioc_setflags,
    nix::request_code_write!(b'f', 2, std::mem::size_of::<libc::c_long>()),
    libc::c_int
);

/// Adds inode attribute flags (`chattr +...`) to a file or directory.
/// Directories pass them on to files created inside them afterwards.
pub fn add_inode_flags(path: &Path, flags: libc::c_int) -> Result<()> {
    let file = File::open(path).map_err(|e| BtrfsError::io("open", path, e))?;
    let mut current: libc::c_int = 0;
    // SAFETY: the fd is open for the duration of the call and `current` is a
    // valid, writable c_int.
    unsafe { fs_ioc_getflags(file.as_raw_fd(), &mut current) }
        .map_err(|e| BtrfsError::io("get inode flags", path, e.into()))?;
    let wanted = current | flags;
    // SAFETY: the fd is open for the duration of the call and `wanted` is a
    // valid c_int the kernel only reads (FS_IOC_SETFLAGS reads an int even
    // though its header declares a long, see the macro above).
    unsafe { fs_ioc_setflags(file.as_raw_fd(), &wanted) }
        .map_err(|e| BtrfsError::io("set inode flags", path, e.into()))?;
    Ok(())
}

/// Reads the inode attribute flags of a file or directory.
pub fn inode_flags(path: &Path) -> Result<libc::c_int> {
    let file = File::open(path).map_err(|e| BtrfsError::io("open", path, e))?;
    let mut current: libc::c_int = 0;
    // SAFETY: the fd is open for the duration of the call and `current` is a
    // valid, writable c_int (FS_IOC_GETFLAGS writes an int).
    unsafe { fs_ioc_getflags(file.as_raw_fd(), &mut current) }
        .map_err(|e| BtrfsError::io("get inode flags", path, e.into()))?;
    Ok(current)
}

fn cstring(path: &Path, op: &'static str) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        BtrfsError::io(
            op,
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte in path"),
        )
    })
}

/// Sets an extended attribute on `path` (not following symlinks).
///
/// `btrfs.compression` is how btrfs exposes its compression property.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let c_path = cstring(path, "set xattr")?;
    let c_name = CString::new(name).expect("xattr names are static strings");
    // SAFETY: all pointers are valid NUL-terminated strings / a valid slice
    // for the duration of the call.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(BtrfsError::io(
            "set xattr",
            path,
            std::io::Error::last_os_error(),
        ))
    }
}

/// Removes an extended attribute from `path` (not following symlinks);
/// one that is not set is no error.
pub fn remove_xattr(path: &Path, name: &str) -> Result<()> {
    let c_path = cstring(path, "remove xattr")?;
    let c_name = CString::new(name).expect("xattr names are static strings");
    // SAFETY: both pointers are valid NUL-terminated strings that live
    // across the call.
    let rc = unsafe { libc::lremovexattr(c_path.as_ptr(), c_name.as_ptr()) };
    let err = std::io::Error::last_os_error();
    if rc == 0 || err.raw_os_error() == Some(libc::ENODATA) {
        Ok(())
    } else {
        Err(BtrfsError::io("remove xattr", path, err))
    }
}

/// Reads an extended attribute; `Ok(None)` when it is not set.
pub fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let c_path = cstring(path, "get xattr")?;
    let c_name = CString::new(name).expect("xattr names are static strings");
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `c_path` and `c_name` are NUL-terminated and live across the
        // call; `buf` is writable for exactly the `buf.len()` bytes passed.
        let rc = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if rc >= 0 {
            buf.truncate(rc as usize);
            return Ok(Some(buf));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            _ => return Err(BtrfsError::io("get xattr", path, err)),
        }
    }
}

/// Forces the filesystem holding `path` to commit (used before a send and
/// after a receive, so what was written is what is read back). It commits
/// the running transaction only: data still in the page cache (an
/// overwrite in place not written back yet) is not in it; see
/// [`flush_and_sync`].
pub fn sync(path: &Path) -> Result<()> {
    btrfsutil::sync::sync(path).map_err(|e| BtrfsError::util("sync", path, e))
}

nix::ioctl_none!(btrfs_ioc_sync, 0x94, 8);

/// Writes the filesystem's dirty data out, then commits (`BTRFS_IOC_SYNC`,
/// what `btrfs filesystem sync` does): afterwards a subvolume's generation
/// accounts for every write made so far, buffered overwrites included
/// ([`sync`] alone leaves those out: the volume looks unchanged).
pub fn flush_and_sync(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| BtrfsError::io("open", path, e))?;
    // SAFETY: BTRFS_IOC_SYNC takes no argument; the fd is open.
    unsafe { btrfs_ioc_sync(dir.as_raw_fd()) }
        .map_err(|e| BtrfsError::io("sync", path, std::io::Error::from(e)))?;
    Ok(())
}

/// `struct btrfs_ioctl_send_args` from linux/btrfs.h.
#[repr(C)]
struct SendArgs {
    send_fd: i64,
    clone_sources_count: u64,
    clone_sources: *mut u64,
    parent_root: u64,
    flags: u64,
    version: u32,
    reserved: [u8; 28],
}

nix::ioctl_write_ptr!(btrfs_ioc_send, 0x94, 38, SendArgs);

/// The subvolume ID (root objectid) of the subvolume at `path`.
pub fn subvolume_id(path: &Path) -> Result<u64> {
    Ok(open(path)?.id())
}

/// Writes the send stream of the read-only snapshot `snapshot` to `out`
/// (BTRFS_IOC_SEND), incremental from `parent` when given. Blocks until the
/// whole stream is written, so `out` must be drained concurrently (a pipe
/// read by another thread).
pub fn send(snapshot: &Path, parent: Option<&Path>, out: &impl AsRawFd) -> Result<()> {
    let mut clone_sources: Vec<u64> = Vec::new();
    let parent_root = match parent {
        Some(p) => {
            let id = subvolume_id(p)?;
            clone_sources.push(id);
            id
        }
        None => 0,
    };
    let dir = File::open(snapshot).map_err(|e| BtrfsError::io("open", snapshot, e))?;
    let args = SendArgs {
        send_fd: out.as_raw_fd() as i64,
        clone_sources_count: clone_sources.len() as u64,
        clone_sources: if clone_sources.is_empty() {
            std::ptr::null_mut()
        } else {
            clone_sources.as_mut_ptr()
        },
        parent_root,
        flags: 0,
        version: 0,
        reserved: [0; 28],
    };
    // SAFETY: `dir` and `out` are open fds; `args` and `clone_sources` live
    // until the ioctl returns; the kernel only reads them.
    unsafe { btrfs_ioc_send(dir.as_raw_fd(), &args) }
        .map_err(|e| BtrfsError::io("btrfs send", snapshot, e.into()))?;
    Ok(())
}
