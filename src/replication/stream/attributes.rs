//! One command's attributes (TLVs) split out of its data, as `btrfs
//! receive` will see them: unknown and repeated attributes are refused, and
//! from version 2 on DATA runs to the end of the command.

use super::{attr, le16, StreamError};

/// One command's attributes, as `btrfs receive` will see them.
#[derive(Debug, Default)]
pub struct Attributes<'a> {
    pub(super) items: Vec<(u16, &'a [u8])>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
