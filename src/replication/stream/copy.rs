//! The commands after the first: each one read whole, split into its
//! attributes, handed to a check (the receive side's
//! [`super::super::confine::Confinement`]) and only then forwarded.

use std::io::{Read, Write};

use super::{cmd, le16, le32, Attributes, StreamError, COMMAND_HEADER};

/// The kernel's largest command: 64 KiB in v1, 16 KiB + 128 KiB of encoded
/// data in v2. Anything larger is not a stream btrfs produced.
const MAX_COMMAND: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::super::attr;
    use super::super::build::{command, end};
    use super::*;

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
}
