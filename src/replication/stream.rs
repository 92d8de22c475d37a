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

use std::io::{Read, Write};

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// Header + command header.
const COMMAND_HEADER: usize = 10;
/// The first command is small (a name, UUIDs, transids); refuse anything
/// absurd instead of allocating what a corrupt length says.
const MAX_FIRST_COMMAND: usize = 64 * 1024;
/// The kernel's largest command: 64 KiB in v1, 16 KiB + 128 KiB of encoded
/// data in v2. Anything larger is not a stream btrfs produced.
const MAX_COMMAND: usize = 1 << 20;
/// Stream versions the kernel writes today.
const MAX_VERSION: u32 = 3;

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

/// One command's attributes, as `btrfs receive` will see them.
#[derive(Debug, Default)]
pub struct Attributes<'a> {
    items: Vec<(u16, &'a [u8])>,
}

impl<'a> Attributes<'a> {
    /// Splits a command's data. Unknown or repeated attributes are refused:
    /// the kernel never writes them, and a repeated one could make this side
    /// and `btrfs receive` disagree on its value.
    pub fn parse(data: &'a [u8], version: u32) -> Result<Attributes<'a>, StreamError> {
        let mut items: Vec<(u16, &'a [u8])> = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let kind = le16(
                data.get(pos..pos + 2)
                    .ok_or(StreamError::Corrupt("truncated attribute"))?,
            );
            if kind == 0 || kind > attr::MAX {
                return Err(StreamError::Corrupt("unknown attribute"));
            }
            if items.iter().any(|(k, _)| *k == kind) {
                return Err(StreamError::Corrupt("repeated attribute"));
            }
            let value = if version >= 2 && kind == attr::DATA {
                let value = &data[pos + 2..];
                pos = data.len();
                value
            } else {
                let size = le16(
                    data.get(pos + 2..pos + 4)
                        .ok_or(StreamError::Corrupt("truncated attribute"))?,
                ) as usize;
                let value = data
                    .get(pos + 4..pos + 4 + size)
                    .ok_or(StreamError::Corrupt("attribute past the command"))?;
                pos += 4 + size;
                value
            };
            items.push((kind, value));
        }
        Ok(Attributes { items })
    }

    pub fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.items.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
    }
}

/// What the first command says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstCommand {
    /// The subvolume name the sender wrote.
    pub name: String,
    /// SNAPSHOT (incremental) rather than SUBVOL (full).
    pub incremental: bool,
    /// For an incremental stream, the key (received UUID, else UUID) of the
    /// parent `btrfs receive` will look up.
    pub parent_uuid: Option<String>,
    pub version: u32,
}

fn uuid_text(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Copies the stream header and first command from `input` to `output`,
/// with the subvolume name replaced by `new_name`. The caller copies the
/// rest (see [`copy_checked`]).
pub fn rename_subvolume(
    input: &mut (impl Read + ?Sized),
    output: &mut impl Write,
    new_name: &str,
) -> Result<FirstCommand, StreamError> {
    let mut header = [0u8; 17];
    input.read_exact(&mut header)?;
    if &header[..13] != MAGIC {
        return Err(StreamError::BadMagic);
    }
    let version = le32(&header[13..17]);
    if version == 0 || version > MAX_VERSION {
        return Err(StreamError::Version(version));
    }
    let mut cmd_header = [0u8; COMMAND_HEADER];
    input.read_exact(&mut cmd_header)?;
    let len = le32(&cmd_header[0..4]) as usize;
    let command = le16(&cmd_header[4..6]);
    let crc = le32(&cmd_header[6..10]);
    if command != cmd::SUBVOL && command != cmd::SNAPSHOT {
        return Err(StreamError::UnexpectedCommand(command));
    }
    if len > MAX_FIRST_COMMAND {
        return Err(StreamError::Corrupt("first command too long"));
    }
    let mut data = vec![0u8; len];
    input.read_exact(&mut data)?;

    let mut zeroed = cmd_header;
    zeroed[6..10].fill(0);
    if crc32c(crc32c(0, &zeroed), &data) != crc {
        return Err(StreamError::Checksum);
    }
    let attributes = Attributes::parse(&data, version)?;
    let original = attributes
        .get(attr::PATH)
        .ok_or(StreamError::Corrupt("no subvolume name"))?;
    let parent_uuid = if command == cmd::SNAPSHOT {
        let uuid = attributes
            .get(attr::CLONE_UUID)
            .and_then(uuid_text)
            .ok_or(StreamError::Corrupt("no parent UUID"))?;
        Some(uuid)
    } else {
        None
    };

    // Rebuild the attributes with the new PATH, in their original order.
    let mut rebuilt = Vec::with_capacity(len + new_name.len());
    for (kind, value) in &attributes.items {
        let value = if *kind == attr::PATH {
            new_name.as_bytes()
        } else {
            value
        };
        rebuilt.extend_from_slice(&kind.to_le_bytes());
        rebuilt.extend_from_slice(&(value.len() as u16).to_le_bytes());
        rebuilt.extend_from_slice(value);
    }
    let mut new_header = [0u8; COMMAND_HEADER];
    new_header[0..4].copy_from_slice(&(rebuilt.len() as u32).to_le_bytes());
    new_header[4..6].copy_from_slice(&command.to_le_bytes());
    let new_crc = crc32c(crc32c(0, &new_header), &rebuilt);
    new_header[6..10].copy_from_slice(&new_crc.to_le_bytes());

    output.write_all(&header)?;
    output.write_all(&new_header)?;
    output.write_all(&rebuilt)?;
    Ok(FirstCommand {
        name: String::from_utf8_lossy(original).into_owned(),
        incremental: command == cmd::SNAPSHOT,
        parent_uuid,
        version,
    })
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of input
/// before the first byte.
fn read_or_eof(input: &mut (impl Read + ?Sized), buf: &mut [u8]) -> Result<bool, StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(StreamError::Corrupt("truncated command")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Reads the commands after the first, lets `check` accept or refuse each
/// one (command number, attributes), and forwards the accepted ones to
/// `output` unchanged. The stream must end with exactly one END command and
/// nothing after it. Returns the byte count forwarded (first command
/// excluded). A closed `output` (receive gave up) ends the copy without
/// error: the receiver's exit status says why.
pub fn copy_checked(
    input: &mut (impl Read + ?Sized),
    output: &mut impl Write,
    version: u32,
    mut check: impl FnMut(u16, &Attributes) -> Result<(), StreamError>,
) -> Result<u64, StreamError> {
    let mut buf = vec![0u8; COMMAND_HEADER + 64 * 1024];
    let mut bytes = 0u64;
    loop {
        if !read_or_eof(input, &mut buf[..COMMAND_HEADER])? {
            return Err(StreamError::Truncated);
        }
        let len = le32(&buf[0..4]) as usize;
        let command = le16(&buf[4..6]);
        if len > MAX_COMMAND {
            return Err(StreamError::Corrupt("command too long"));
        }
        if buf.len() < COMMAND_HEADER + len {
            buf.resize(COMMAND_HEADER + len, 0);
        }
        if !read_or_eof(input, &mut buf[COMMAND_HEADER..COMMAND_HEADER + len])? && len > 0 {
            return Err(StreamError::Corrupt("truncated command"));
        }
        let attributes = Attributes::parse(&buf[COMMAND_HEADER..COMMAND_HEADER + len], version)?;
        check(command, &attributes)?;
        match output.write_all(&buf[..COMMAND_HEADER + len]) {
            Ok(()) => bytes += (COMMAND_HEADER + len) as u64,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(bytes),
            Err(e) => return Err(e.into()),
        }
        if command == cmd::END {
            let mut extra = [0u8; 1];
            if read_or_eof(input, &mut extra)? {
                return Err(StreamError::Refused(
                    "data after the end of the stream".into(),
                ));
            }
            return Ok(bytes);
        }
    }
}

/// Builds send streams, for tests and fuzzing: the same format the kernel
/// writes, checksums included.
pub mod build {
    use super::{crc32c, MAGIC};

    /// The stream header for `version`.
    pub fn header(version: u32) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&version.to_le_bytes());
        s
    }

    /// One command with its attributes (all with a length field).
    pub fn command(command: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (kind, value) in attributes {
            data.extend_from_slice(&kind.to_le_bytes());
            data.extend_from_slice(&(value.len() as u16).to_le_bytes());
            data.extend_from_slice(value);
        }
        let mut header = [0u8; 10];
        header[0..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
        header[4..6].copy_from_slice(&command.to_le_bytes());
        let crc = crc32c(crc32c(0, &header), &data);
        header[6..10].copy_from_slice(&crc.to_le_bytes());
        [header.to_vec(), data].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::build::{command, header};
    use super::*;

    fn stream(first: Vec<u8>, rest: &[Vec<u8>]) -> Vec<u8> {
        let mut s = header(1);
        s.extend(first);
        for c in rest {
            s.extend_from_slice(c);
        }
        s
    }

    fn end() -> Vec<u8> {
        command(cmd::END, &[])
    }

    #[test]
    fn crc32c_known_value() {
        // Standard CRC-32C of "123456789" is 0xE3069283 (with inversions).
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn renames_the_first_command_and_keeps_the_rest() {
        let uuid = [7u8; 16];
        let input = stream(
            command(
                cmd::SNAPSHOT,
                &[
                    (attr::PATH, b"db@2026"),
                    (attr::UUID, &uuid),
                    (attr::CLONE_UUID, &[0xabu8; 16]),
                ],
            ),
            &[end()],
        );
        let mut out = Vec::new();
        let mut reader = &input[..];
        let first = rename_subvolume(&mut reader, &mut out, ".recv.1").unwrap();
        assert_eq!(first.name, "db@2026");
        assert!(first.incremental);
        assert_eq!(
            first.parent_uuid.as_deref(),
            Some("abababab-abab-abab-abab-abababababab")
        );
        assert_eq!(reader, &end()[..]);
        // The output parses again, with a valid checksum and the new name.
        let mut again = Vec::new();
        let first = rename_subvolume(&mut &out[..], &mut again, "x").unwrap();
        assert_eq!(first.name, ".recv.1");
    }

    #[test]
    fn refuses_garbage() {
        let mut out = Vec::new();
        assert!(matches!(
            rename_subvolume(&mut &b"not a stream at all......"[..], &mut out, "x"),
            Err(StreamError::BadMagic)
        ));
        let mut bad = stream(command(cmd::SUBVOL, &[(attr::PATH, b"v@1")]), &[]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // corrupt the name
        assert!(matches!(
            rename_subvolume(&mut &bad[..], &mut out, "x"),
            Err(StreamError::Checksum)
        ));
        let other = stream(command(3, &[(attr::PATH, b"v@1")]), &[]);
        assert!(matches!(
            rename_subvolume(&mut &other[..], &mut out, "x"),
            Err(StreamError::UnexpectedCommand(3))
        ));
        let mut v9 = header(9);
        v9.extend(command(cmd::SUBVOL, &[(attr::PATH, b"v@1")]));
        assert!(matches!(
            rename_subvolume(&mut &v9[..], &mut out, "x"),
            Err(StreamError::Version(9))
        ));
    }

    #[test]
    fn copy_checked_forwards_until_end_and_nothing_after() {
        let body = [
            command(cmd::MKFILE, &[(attr::PATH, b"f")]),
            command(
                cmd::WRITE,
                &[
                    (attr::PATH, b"f"),
                    (18, &0u64.to_le_bytes()),
                    (attr::DATA, b"hi"),
                ],
            ),
            end(),
        ]
        .concat();
        let mut seen = Vec::new();
        let mut out = Vec::new();
        let bytes = copy_checked(&mut &body[..], &mut out, 1, |c, a| {
            seen.push((c, a.get(attr::PATH).map(|p| p.to_vec())));
            Ok(())
        })
        .unwrap();
        assert_eq!(out, body);
        assert_eq!(bytes, body.len() as u64);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1], (cmd::WRITE, Some(b"f".to_vec())));

        let trailing = [body.clone(), b"x".to_vec()].concat();
        assert!(matches!(
            copy_checked(&mut &trailing[..], &mut Vec::new(), 1, |_, _| Ok(())),
            Err(StreamError::Refused(_))
        ));
        let no_end = &body[..body.len() - end().len()];
        assert!(matches!(
            copy_checked(&mut &no_end[..], &mut Vec::new(), 1, |_, _| Ok(())),
            Err(StreamError::Truncated)
        ));
        let cut = &body[..body.len() - end().len() - 3];
        assert!(matches!(
            copy_checked(&mut &cut[..], &mut Vec::new(), 1, |_, _| Ok(())),
            Err(StreamError::Corrupt(_))
        ));
    }

    #[test]
    fn version_2_data_runs_to_the_end_of_the_command() {
        // PATH with a length, then DATA without one.
        let mut data = Vec::new();
        data.extend_from_slice(&attr::PATH.to_le_bytes());
        data.extend_from_slice(&1u16.to_le_bytes());
        data.push(b'f');
        data.extend_from_slice(&attr::DATA.to_le_bytes());
        data.extend_from_slice(b"payload");
        let a = Attributes::parse(&data, 2).unwrap();
        assert_eq!(a.get(attr::PATH), Some(&b"f"[..]));
        assert_eq!(a.get(attr::DATA), Some(&b"payload"[..]));
        // In v1 the same bytes are a corrupt length.
        assert!(Attributes::parse(&data, 1).is_err());
    }

    #[test]
    fn repeated_and_unknown_attributes_are_refused() {
        let twice = [
            &attr::PATH.to_le_bytes()[..],
            &1u16.to_le_bytes(),
            b"a",
            &attr::PATH.to_le_bytes(),
            &1u16.to_le_bytes(),
            b"b",
        ]
        .concat();
        assert!(Attributes::parse(&twice, 1).is_err());
        let unknown = [&999u16.to_le_bytes()[..], &0u16.to_le_bytes()].concat();
        assert!(Attributes::parse(&unknown, 1).is_err());
    }
}
