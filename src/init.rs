//! `buttervolume init`: make the data directory usable on any machine.
//!
//! The plugin needs VOLUMES_PATH and SNAPSHOTS_PATH on one btrfs filesystem.
//! When the data root (the parent of VOLUMES_PATH, `/var/lib/buttervolume`
//! by default) is not btrfs, init creates a sparse image file beside it,
//! formats it with `mkfs.btrfs` and loop-mounts it there. Programs are run
//! with argument vectors, never through a shell.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::btrfs;
use crate::config::Config;

/// Default size of the loop image: sparse, so it costs only what is used.
pub const DEFAULT_LOOP_SIZE: &str = "20G";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid size {0:?}: use a number with an optional K, M, G or T suffix, e.g. 20G")]
    Size(String),
    #[error("{0} is not on btrfs and is not empty; refusing to mount a loop image over existing data. Move the data away or mount a btrfs filesystem there yourself")]
    NotEmpty(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{0} is still not on btrfs after mounting the loop image")]
    StillNotBtrfs(PathBuf),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let context = context.into();
    move |source| InitError::Io { context, source }
}

/// Parses `20G`, `512M`, `1073741824`.
pub fn parse_size(text: &str) -> Result<u64, InitError> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let base: u64 = digits.parse().map_err(|_| InitError::Size(text.into()))?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(InitError::Size(text.into())),
    };
    base.checked_mul(1 << shift)
        .filter(|b| *b >= 128 << 20)
        .ok_or_else(|| InitError::Size(text.into()))
}

fn run(program: &str, args: &[&str]) -> Result<(), InitError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(io(format!("running {program} (is it installed?)")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(InitError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// The directory that holds volumes, snapshots, config and ssh keys.
pub fn data_root(config: &Config) -> PathBuf {
    config
        .volumes_path
        .components()
        .collect::<PathBuf>()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/var/lib/buttervolume"))
}

/// Prepares the data root; returns a human summary of what was done.
pub fn init(config: &Config, loop_size: &str) -> Result<String, InitError> {
    let size = parse_size(loop_size)?;
    let root = data_root(config);
    std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
    let mut summary = Vec::new();
    if btrfs::is_btrfs(&root) {
        summary.push(format!("{} is already on btrfs", root.display()));
    } else {
        let non_empty = std::fs::read_dir(&root)
            .map_err(io(format!("reading {}", root.display())))?
            .next()
            .is_some();
        if non_empty {
            return Err(InitError::NotEmpty(root));
        }
        let mut image = root.clone().into_os_string();
        image.push(".img");
        let image = PathBuf::from(image);
        if !image.exists() {
            let file = std::fs::File::create(&image)
                .map_err(io(format!("creating {}", image.display())))?;
            file.set_len(size)
                .map_err(io(format!("sizing {}", image.display())))?;
            run("mkfs.btrfs", &["-q", &image.to_string_lossy()])?;
            summary.push(format!(
                "created a {loop_size} sparse btrfs image {}",
                image.display()
            ));
        }
        run(
            "mount",
            &[
                "-o",
                // Reads must not change a volume: its generation is how
                // "unchanged since its last snapshot" is decided.
                "loop,noatime",
                &image.to_string_lossy(),
                &root.to_string_lossy(),
            ],
        )?;
        if !btrfs::is_btrfs(&root) {
            return Err(InitError::StillNotBtrfs(root));
        }
        summary.push(format!(
            "mounted {} on {} (add it to /etc/fstab to survive a reboot)",
            image.display(),
            root.display()
        ));
    }
    for dir in [
        config.volumes_path.clone(),
        config.snapshots_path.clone(),
        config.test_remote_path.clone(),
        root.join("config"),
    ] {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let ssh = root.join("ssh");
    std::fs::create_dir_all(&ssh).map_err(io(format!("creating {}", ssh.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(io("securing the ssh dir"))?;
    summary.push(format!("data directories ready under {}", root.display()));
    Ok(summary.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("12").is_err(), "too small for btrfs");
        assert!(parse_size("big").is_err());
        assert!(parse_size("10X").is_err());
    }
}
