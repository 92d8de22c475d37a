//! Builds send streams, for tests and fuzzing: the same format the kernel
//! writes, checksums included.

use super::{cmd, crc32c, put_attribute, COMMAND_HEADER, MAGIC};

/// The stream header for `version`.
pub fn header(version: u32) -> Vec<u8> {
    let mut s = MAGIC.to_vec();
    s.extend_from_slice(&version.to_le_bytes());
    s
}

/// A command's data: its attributes, each with a length field.
pub fn attributes(attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (kind, value) in attributes {
        put_attribute(&mut data, *kind, value);
    }
    data
}

/// One command with its attributes (all with a length field).
pub fn command(command: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let data = self::attributes(attributes);
    let mut header = [0u8; COMMAND_HEADER];
    header[0..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    header[4..6].copy_from_slice(&command.to_le_bytes());
    let crc = crc32c(crc32c(0, &header), &data);
    header[6..10].copy_from_slice(&crc.to_le_bytes());
    [header.to_vec(), data].concat()
}

/// The END command.
pub fn end() -> Vec<u8> {
    command(cmd::END, &[])
}
