//! The btrfs send-stream format, as the receiving side needs it: read the
//! header and the commands one by one, split each command into its
//! attributes, and rewrite the first command's subvolume name.
//!
//! Why the rewrite: `btrfs receive` creates the subvolume under the name
//! written in the stream's first command, directly in the target directory,
//! and fills it from there on: a partial receive would be visible under its
//! final name. And a read-only subvolume cannot be moved to another
//! directory afterwards (that would rewrite its `..`; btrfs says EROFS),
//! only renamed in place. So the receiver rewrites the name in the first
//! command to a hidden staging name (`.recv.<pid>.<n>`), lets `btrfs
//! receive` work there, checks the result, then renames it in place.
//!
//! Why every command is read: a peer is hostile until checked. Each command
//! after the first passes through [`copy_checked`], which hands its
//! attributes to a [`super::confine::Confinement`] before forwarding it.
//!
//! Layout (linux/btrfs send.h): a 17-byte header `btrfs-stream\0` + le32
//! version, then commands: le32 length, le16 command, le32 crc32c, then
//! `length` bytes of attributes (TLVs: le16 type, le16 length, value). From
//! version 2 on, the DATA attribute has no length: it runs to the end of the
//! command. The first command is SUBVOL (full send) or SNAPSHOT
//! (incremental); its PATH is the subvolume name. The crc covers the command
//! header (crc zeroed) and its data; `btrfs receive` verifies it for every
//! command, so this module checks it only on the command it rewrites.
//!
//! This file owns the format's vocabulary (command and attribute numbers,
//! [`StreamError`], the checksum); the parts live beside it:
//! [`Attributes`] (`stream/attributes.rs`), the first command and its
//! rewrite ([`rename_subvolume`], `stream/first.rs`), the checked copy of
//! the rest ([`copy_checked`], `stream/copy.rs`) and a stream builder for
//! tests and fuzzing ([`build`], `stream/build.rs`).

mod attributes;
pub mod build;
mod copy;
mod first;

pub use attributes::Attributes;
pub use copy::copy_checked;
pub use first::{rename_subvolume, FirstCommand};

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// A command's header: le32 length, le16 command, le32 crc32c.
const COMMAND_HEADER: usize = 10;

/// Command numbers (enum btrfs_send_cmd).
pub mod cmd {
    pub const SUBVOL: u16 = 1;
    pub const SNAPSHOT: u16 = 2;
    pub const MKFILE: u16 = 3;
    pub const MKDIR: u16 = 4;
    pub const MKNOD: u16 = 5;
    pub const MKFIFO: u16 = 6;
    pub const MKSOCK: u16 = 7;
    pub const SYMLINK: u16 = 8;
    pub const RENAME: u16 = 9;
    pub const LINK: u16 = 10;
    pub const UNLINK: u16 = 11;
    pub const RMDIR: u16 = 12;
    pub const SET_XATTR: u16 = 13;
    pub const REMOVE_XATTR: u16 = 14;
    pub const WRITE: u16 = 15;
    pub const CLONE: u16 = 16;
    pub const TRUNCATE: u16 = 17;
    pub const CHMOD: u16 = 18;
    pub const CHOWN: u16 = 19;
    pub const UTIMES: u16 = 20;
    pub const END: u16 = 21;
    pub const UPDATE_EXTENT: u16 = 22;
    pub const FALLOCATE: u16 = 23;
    pub const FILEATTR: u16 = 24;
    pub const ENCODED_WRITE: u16 = 25;
    pub const ENABLE_VERITY: u16 = 26;
}

/// Attribute types (enum btrfs_send_attr) this side looks at.
pub mod attr {
    pub const UUID: u16 = 1;
    pub const XATTR_NAME: u16 = 13;
    pub const PATH: u16 = 15;
    pub const PATH_TO: u16 = 16;
    pub const PATH_LINK: u16 = 17;
    pub const DATA: u16 = 19;
    pub const CLONE_UUID: u16 = 20;
    pub const CLONE_PATH: u16 = 22;
    /// The highest attribute of version 3.
    pub const MAX: u16 = 35;
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not a btrfs send stream")]
    BadMagic,
    #[error("send stream version {0} is not supported")]
    Version(u32),
    #[error("the stream must start with a subvolume or snapshot command, not command {0}")]
    UnexpectedCommand(u16),
    #[error("corrupt send stream: {0}")]
    Corrupt(&'static str),
    #[error("send stream checksum mismatch in its first command")]
    Checksum,
    #[error("the stream ended before its end command")]
    Truncated,
    #[error("refused send stream: {0}")]
    Refused(String),
    #[error("reading or writing the stream: {0}")]
    Io(#[from] std::io::Error),
}

/// CRC-32C (Castagnoli), raw: no initial or final inversion, as btrfs uses
/// it for send-stream commands (seed 0). Only the small first command is
/// checksummed here, so a bitwise loop is enough.
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends one attribute with its length field (TLV).
fn put_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // Standard CRC-32C of "123456789" is 0xE3069283 (with inversions).
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }
}
