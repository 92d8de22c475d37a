//! The stream header and its first command (SUBVOL or SNAPSHOT): what it
//! says ([`FirstCommand`]) and its rewrite under the receiver's staging name
//! ([`rename_subvolume`]), checksum recomputed.

use std::io::{Read, Write};

use super::{
    attr, cmd, crc32c, le16, le32, put_attribute, Attributes, StreamError, COMMAND_HEADER, MAGIC,
};

/// The first command is small (a name, UUIDs, transids); refuse anything
/// absurd instead of allocating what a corrupt length says.
const MAX_FIRST_COMMAND: usize = 64 * 1024;
/// Stream versions the kernel writes today.
const MAX_VERSION: u32 = 3;

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
        put_attribute(&mut rebuilt, *kind, value);
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

#[cfg(test)]
mod tests {
    use super::super::build::{command, end, header};
    use super::*;

    fn stream(first: Vec<u8>, rest: &[Vec<u8>]) -> Vec<u8> {
        let mut s = header(1);
        s.extend(first);
        for c in rest {
            s.extend_from_slice(c);
        }
        s
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
}
