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

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(VolumeError::InvalidOptionValue {
            key: key.into(),
            value: value.into(),
            accepted: "set to \"true\" or \"false\"",
        }),
    }
}

impl CreateOptions {
    /// Validates Docker's `Opts`. Values are case-insensitive like the
    /// reference's; unknown keys are refused rather than silently ignored.
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
                "copyonwrite" => parsed.copy_on_write = parse_bool(key, &value)?,
                "nonmigrable" => parsed.nonmigrable = parse_bool(key, &value)?,
                // Read back by the follow rule from the metadata's options.
                "follow" => {
                    parse_bool(key, &value)?;
                }
                "compression" => {
                    parsed.compression = match value.as_str() {
                        "" | "false" | "none" | "no" => Compression::None,
                        "true" => Compression::Default,
                        "zlib" => Compression::Zlib,
                        "lzo" => Compression::Lzo,
                        "zstd" => Compression::Zstd,
                        _ => {
                            return Err(VolumeError::InvalidOptionValue {
                                key: key.clone(),
                                value,
                                accepted: "valid options: none, false, true, zlib, lzo, zstd",
                            })
                        }
                    }
                }
                other => return Err(VolumeError::UnknownOption(other.into())),
            }
            parsed.given.insert(key.clone(), value);
        }
        if !parsed.copy_on_write && parsed.compression != Compression::None {
            return Err(VolumeError::InvalidOptionValue {
                key: "compression".into(),
                value: parsed.given["compression"].clone(),
                accepted: "btrfs cannot compress a volume created with copyonwrite=false",
            });
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
        let err = CreateOptions::parse(&opts(&[("compression", "brotli")])).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
        let err = CreateOptions::parse(&opts(&[("copyonwrite", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("\"true\" or \"false\""), "{err}");
        let err = CreateOptions::parse(&opts(&[("size", "1G")])).unwrap_err();
        assert!(err.to_string().contains("copyonwrite"), "{err}");
        assert!(
            CreateOptions::parse(&opts(&[("copyonwrite", "false"), ("compression", "lzo")]))
                .is_err()
        );
    }
}
