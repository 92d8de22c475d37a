//! The `-o key=value` options of `docker volume create`: which keys exist,
//! which values each accepts, and the one combination btrfs cannot do.

use std::collections::{BTreeMap, HashMap};

use super::{Result, VolumeError};

/// Compression requested at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// `true`: the filesystem's default algorithm (`chattr +c`, as the reference).
    Default,
    Zlib,
    Lzo,
    Zstd,
}

/// The `-o key=value` options of `docker volume create`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub copy_on_write: bool,
    pub compression: Compression,
    pub nonmigrable: bool,
    /// The options as given (lower-cased values), stored in the metadata.
    pub given: BTreeMap<String, String>,
}

/// The value as the reference prints it in an error: lower-cased, not
/// trimmed (Python's `opts.get(key).lower()`).
fn shown(raw: &str) -> String {
    raw.to_lowercase()
}

fn parse_bool(key: &str, raw: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(VolumeError::InvalidBool {
            key: key.into(),
            value: shown(raw),
        }),
    }
}

impl CreateOptions {
    /// Validates Docker's `Opts`. Values are case-insensitive like the
    /// reference's, and its error texts are kept; unknown keys are refused
    /// (as the reference's master does) rather than silently ignored (as
    /// 3.13 did).
    pub fn parse(opts: &HashMap<String, String>) -> Result<CreateOptions> {
        let mut parsed = CreateOptions {
            copy_on_write: true,
            compression: Compression::None,
            nonmigrable: false,
            given: BTreeMap::new(),
        };
        for (key, raw) in opts {
            let value = raw.trim().to_ascii_lowercase();
            match key.as_str() {
                "copyonwrite" => parsed.copy_on_write = parse_bool(key, raw, &value)?,
                "nonmigrable" => parsed.nonmigrable = parse_bool(key, raw, &value)?,
                // Stored as given; the metadata reads it into a flag
                // (`metadata::VolumeOptions::follow`).
                "follow" => {
                    parse_bool(key, raw, &value)?;
                }
                "compression" => {
                    parsed.compression = match value.as_str() {
                        "" | "false" | "none" | "no" => Compression::None,
                        "true" => Compression::Default,
                        "zlib" => Compression::Zlib,
                        "lzo" => Compression::Lzo,
                        "zstd" => Compression::Zstd,
                        _ => return Err(VolumeError::InvalidCompression(shown(raw))),
                    }
                }
                other => return Err(VolumeError::UnknownOption(other.into())),
            }
            parsed.given.insert(key.clone(), value);
        }
        if !parsed.copy_on_write && parsed.compression != Compression::None {
            return Err(VolumeError::CompressionWithoutCow(
                parsed.given["compression"].clone(),
            ));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_and_refuse() {
        let o = CreateOptions::parse(&opts(&[("copyonwrite", "FALSE")])).unwrap();
        assert!(!o.copy_on_write);
        let o = CreateOptions::parse(&opts(&[("compression", "zstd"), ("nonmigrable", "true")]))
            .unwrap();
        assert_eq!(o.compression, Compression::Zstd);
        assert!(o.nonmigrable);
        // The reference's texts, byte for byte, the value lower-cased.
        let err = CreateOptions::parse(&opts(&[("compression", "Brotli")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid option for compression: brotli. Valid options: false, true, zlib, lzo, zstd"
        );
        let err = CreateOptions::parse(&opts(&[("copyonwrite", "Maybe")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid option for copyonwrite: maybe. Set to \"true\" or \"false\"."
        );
        let err = CreateOptions::parse(&opts(&[("nonmigrable", "yes")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid option for nonmigrable: yes. Set to \"true\" or \"false\"."
        );
        let err = CreateOptions::parse(&opts(&[("size", "1G")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Unknown option 'size'. Options are copyonwrite, compression"),
            "{err}"
        );
        assert!(
            CreateOptions::parse(&opts(&[("copyonwrite", "false"), ("compression", "lzo")]))
                .is_err()
        );
    }
}
