//! Just enough of the btrfs send-stream format to land a received snapshot
//! atomically.
//!
//! `btrfs receive` creates the subvolume under the name written in the
//! stream's first command, directly in the target directory, and fills it
//! from there on: a partial receive would be visible under its final name.
//! And a read-only subvolume cannot be moved to another directory afterwards
//! (that would rewrite its `..`; btrfs says EROFS), only renamed in place.
//! So the receiver rewrites the name in the first command to a hidden
//! staging name (`.recv.<pid>.<n>`), lets `btrfs receive` work there, checks
//! the result, then renames it in place to the real name, atomically.
//!
//! Stream layout (linux/btrfs send.h): a 17-byte header `btrfs-stream\0` +
//! le32 version, then commands: le32 length, le16 command, le32 crc32c,
//! then `length` bytes of TLVs (le16 type, le16 length, value). The first
//! command is SUBVOL (full send) or SNAPSHOT (incremental); its PATH TLV is
//! the subvolume name. The crc covers the command header (crc zeroed) and
//! its data.

use std::io::{Read, Write};

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const CMD_SUBVOL: u16 = 1;
const CMD_SNAPSHOT: u16 = 2;
const ATTR_PATH: u16 = 15;
/// The first command is small (a name, UUIDs, transids); refuse anything
/// absurd instead of allocating what a corrupt length says.
const MAX_FIRST_COMMAND: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not a btrfs send stream")]
    BadMagic,
    #[error("the stream must start with a subvolume or snapshot command, not command {0}")]
    UnexpectedCommand(u16),
    #[error("corrupt send stream: {0}")]
    Corrupt(&'static str),
    #[error("send stream checksum mismatch in its first command")]
    Checksum,
    #[error("reading or writing the stream: {0}")]
    Io(#[from] std::io::Error),
}

/// CRC-32C (Castagnoli), raw: no initial or final inversion, as btrfs uses
/// it for send-stream commands (seed 0).
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

/// Copies the stream header and first command from `input` to `output`,
/// with the subvolume name replaced by `new_name`. Returns the original
/// name and whether the stream is incremental. The caller copies the rest.
pub fn rename_subvolume(
    input: &mut (impl Read + ?Sized),
    output: &mut impl Write,
    new_name: &str,
) -> Result<(String, bool), StreamError> {
    let mut header = [0u8; 17];
    input.read_exact(&mut header)?;
    if &header[..13] != MAGIC {
        return Err(StreamError::BadMagic);
    }
    let mut cmd_header = [0u8; 10];
    input.read_exact(&mut cmd_header)?;
    let len = le32(&cmd_header[0..4]) as usize;
    let cmd = le16(&cmd_header[4..6]);
    let crc = le32(&cmd_header[6..10]);
    if cmd != CMD_SUBVOL && cmd != CMD_SNAPSHOT {
        return Err(StreamError::UnexpectedCommand(cmd));
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

    // Rebuild the TLVs with the new PATH.
    let mut rebuilt = Vec::with_capacity(len + new_name.len());
    let mut original = None;
    let mut pos = 0;
    while pos < data.len() {
        if pos + 4 > data.len() {
            return Err(StreamError::Corrupt("truncated attribute"));
        }
        let kind = le16(&data[pos..]);
        let size = le16(&data[pos + 2..]) as usize;
        let value = data
            .get(pos + 4..pos + 4 + size)
            .ok_or(StreamError::Corrupt("attribute past the command"))?;
        if kind == ATTR_PATH && original.is_none() {
            original = Some(String::from_utf8_lossy(value).into_owned());
            rebuilt.extend_from_slice(&ATTR_PATH.to_le_bytes());
            rebuilt.extend_from_slice(&(new_name.len() as u16).to_le_bytes());
            rebuilt.extend_from_slice(new_name.as_bytes());
        } else {
            rebuilt.extend_from_slice(&data[pos..pos + 4 + size]);
        }
        pos += 4 + size;
    }
    let original = original.ok_or(StreamError::Corrupt("no subvolume name"))?;

    let mut new_header = [0u8; 10];
    new_header[0..4].copy_from_slice(&(rebuilt.len() as u32).to_le_bytes());
    new_header[4..6].copy_from_slice(&cmd.to_le_bytes());
    let new_crc = crc32c(crc32c(0, &new_header), &rebuilt);
    new_header[6..10].copy_from_slice(&new_crc.to_le_bytes());

    output.write_all(&header)?;
    output.write_all(&new_header)?;
    output.write_all(&rebuilt)?;
    Ok((original, cmd == CMD_SNAPSHOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(cmd: u16, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (kind, value) in tlvs {
            data.extend_from_slice(&kind.to_le_bytes());
            data.extend_from_slice(&(value.len() as u16).to_le_bytes());
            data.extend_from_slice(value);
        }
        let mut header = [0u8; 10];
        header[0..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
        header[4..6].copy_from_slice(&cmd.to_le_bytes());
        let crc = crc32c(crc32c(0, &header), &data);
        header[6..10].copy_from_slice(&crc.to_le_bytes());
        [header.to_vec(), data].concat()
    }

    fn stream(first: Vec<u8>) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&1u32.to_le_bytes());
        s.extend(first);
        s.extend_from_slice(b"REST");
        s
    }

    #[test]
    fn crc32c_known_value() {
        // Standard CRC-32C of "123456789" is 0xE3069283 (with inversions).
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn renames_the_first_command_and_keeps_the_rest() {
        let uuid = [7u8; 16];
        let input = stream(command(
            CMD_SNAPSHOT,
            &[(ATTR_PATH, b"db@2026"), (1, &uuid)],
        ));
        let mut out = Vec::new();
        let mut reader = &input[..];
        let (name, incremental) = rename_subvolume(&mut reader, &mut out, ".recv.1").unwrap();
        assert_eq!(name, "db@2026");
        assert!(incremental);
        assert_eq!(reader, b"REST");
        // The output parses again, with a valid checksum and the new name.
        let mut again = Vec::new();
        let (name, _) = rename_subvolume(&mut &out[..], &mut again, "x").unwrap();
        assert_eq!(name, ".recv.1");
    }

    #[test]
    fn refuses_garbage() {
        let mut out = Vec::new();
        assert!(matches!(
            rename_subvolume(&mut &b"not a stream at all......"[..], &mut out, "x"),
            Err(StreamError::BadMagic)
        ));
        let mut bad = stream(command(CMD_SUBVOL, &[(ATTR_PATH, b"v@1")]));
        let last = bad.len() - 5;
        bad[last] ^= 0xff; // corrupt the name
        assert!(matches!(
            rename_subvolume(&mut &bad[..], &mut out, "x"),
            Err(StreamError::Checksum)
        ));
        let other = stream(command(3, &[(ATTR_PATH, b"v@1")]));
        assert!(matches!(
            rename_subvolume(&mut &other[..], &mut out, "x"),
            Err(StreamError::UnexpectedCommand(3))
        ));
    }
}
