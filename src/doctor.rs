//! `buttervolume doctor [--fix]`: find and repair what goes wrong between
//! Docker and the plugin on a node.
//!
//! - Duplicates (buttervolume issue #16): after a reboot, containers that
//!   started before the plugin was up got a fresh `local` volume of the same
//!   name, so Docker lists the name under both `local` and this driver, and
//!   the app may have written into the wrong one. With `--fix`: when the
//!   local copy is empty or identical to the btrfs volume, Docker's local
//!   record is removed; when only the local copy has data, it is copied into
//!   the (empty) btrfs volume first; when both hold different data nothing
//!   is touched and the difference is explained.
//! - Stale plugin sockets (moby #22653): a socket file nobody listens on
//!   makes `docker volume ls` hang. With `--fix` it is removed.
//! - The legacy `btrfs` driver left behind after a switch to the managed
//!   plugin (or after its daemon stopped), see [`crate::legacy_driver`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::ClientError;
use crate::config::Config;
use crate::docker;

/// One finding and what was (or would be) done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: String,
    pub action: String,
}

/// True when `a` and `b` hold the same tree (names, types, file contents).
pub fn same_tree(a: &Path, b: &Path) -> std::io::Result<bool> {
    let list = |dir: &Path| -> std::io::Result<BTreeMap<std::ffi::OsString, std::fs::FileType>> {
        Ok(std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| Some((e.file_name(), e.file_type().ok()?)))
            .collect())
    };
    let (la, lb) = (list(a)?, list(b)?);
    if la.len() != lb.len() {
        return Ok(false);
    }
    for (name, kind) in &la {
        let Some(other) = lb.get(name) else {
            return Ok(false);
        };
        if kind.is_dir() != other.is_dir() || kind.is_symlink() != other.is_symlink() {
            return Ok(false);
        }
        let (pa, pb) = (a.join(name), b.join(name));
        let same = if kind.is_dir() {
            same_tree(&pa, &pb)?
        } else if kind.is_symlink() {
            std::fs::read_link(&pa)? == std::fs::read_link(&pb)?
        } else {
            same_file(&pa, &pb)?
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

fn same_file(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Socket files under RUNPATH/plugins that nobody listens on, but the
/// legacy driver's own (see [`crate::legacy_driver`]).
fn stale_sockets(config: &Config) -> Vec<PathBuf> {
    let plugins = config.runpath.join("plugins");
    let legacy = plugins.join(crate::config::SOCKET_FILE);
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&plugins) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                candidates.push(path.join(crate::config::SOCKET_FILE));
            } else {
                candidates.push(path);
            }
        }
    }
    use std::os::unix::fs::FileTypeExt;
    candidates
        .into_iter()
        .filter(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false)
        })
        .filter(|p| *p != legacy && std::os::unix::net::UnixStream::connect(p).is_err())
        .collect()
}

/// Why the doctor stopped (what it found so far is not lost: nothing is
/// removed before its copy is verified).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("cannot list Docker volumes: {0}")]
    ListVolumes(ClientError),
    #[error("cp: {0}")]
    Spawn(std::io::Error),
    #[error("copying {name} failed, nothing removed: {stderr}")]
    Copy { name: String, stderr: String },
    #[error("the copy of {0} differs from its source; nothing removed")]
    CopyDiffers(String),
    #[error("removing the local {name}: {source}")]
    Remove { name: String, source: ClientError },
    #[error("removing the local {name} failed: {body}")]
    Refused {
        name: String,
        body: serde_json::Value,
    },
}

/// Examines the node; repairs when `fix`. Returns what was found.
pub async fn run(config: &Config, fix: bool) -> Result<Vec<Finding>, DoctorError> {
    let mut findings = Vec::new();
    for socket in stale_sockets(config) {
        let action = if fix {
            std::fs::remove_file(&socket)
                .map(|()| "removed".to_string())
                .unwrap_or_else(|e| format!("could not remove it: {e}"))
        } else {
            "run with --fix to remove it".to_string()
        };
        findings.push(Finding {
            problem: format!(
                "stale plugin socket {} (nobody listens: `docker volume ls` would hang)",
                socket.display()
            ),
            action,
        });
    }
    findings.extend(crate::legacy_driver::findings(
        &crate::legacy_driver::LegacyPaths::of(config),
        fix,
    ));

    for key in crate::replication::scope::unscoped_keys(config) {
        findings.push(Finding {
            problem: crate::replication::scope::unscoped_key_message(&key),
            action: "not changed by --fix: pair the nodes again".into(),
        });
    }

    let volumes = docker::local_volumes(&config.docker_socket)
        .await
        .map_err(DoctorError::ListVolumes)?;
    // Docker shows a name once: a `local` record shadows the btrfs volume of
    // the same name (older Dockers listed both). Either way the duplicate
    // is a local volume whose name is also one of our subvolumes.
    for (name, local) in volumes {
        let local = PathBuf::from(local);
        let ours = config.volumes_path.join(&name);
        if crate::names::check_volume(&name).is_err() || !crate::btrfs::is_subvolume(&ours) {
            continue;
        }
        let problem = format!(
            "volume {name} exists both as a `local` Docker volume ({}) and as a btrfs volume ({}): containers get the local one",
            local.display(),
            ours.display()
        );
        let action = repair(config, &name, &local, &ours, fix).await?;
        findings.push(Finding { problem, action });
    }
    Ok(findings)
}

async fn repair(
    config: &Config,
    name: &str,
    local: &Path,
    ours: &Path,
    fix: bool,
) -> Result<String, DoctorError> {
    let local_empty = !local.exists() || is_empty_dir(local);
    let identical = !local_empty && same_tree(local, ours).unwrap_or(false);
    let ours_empty = is_empty_dir(ours);
    let plan = if local_empty || identical {
        "remove Docker's local copy (it holds nothing the btrfs volume lacks)"
    } else if ours_empty {
        "copy the local data into the empty btrfs volume, then remove the local copy"
    } else {
        return Ok(format!(
            "left alone: both copies hold different data; compare {} and {} and move what you need by hand",
            local.display(),
            ours.display()
        ));
    };
    if !fix {
        return Ok(format!("would {plan} (run with --fix)"));
    }
    if !local_empty && !identical {
        // Copy with cp -a (argument vector, no shell): keeps owners, modes,
        // times, links; reflinks are not possible across filesystems.
        let mut source = local.as_os_str().to_owned();
        source.push("/.");
        let out = Command::new("cp")
            .arg("-a")
            .arg(&source)
            .arg(ours)
            .output()
            .map_err(DoctorError::Spawn)?;
        if !out.status.success() {
            return Err(DoctorError::Copy {
                name: name.into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        if !same_tree(local, ours).unwrap_or(false) {
            return Err(DoctorError::CopyDiffers(name.into()));
        }
    }
    let (status, body) = crate::client::request(
        &config.docker_socket,
        hyper::Method::DELETE,
        &format!("/volumes/{name}"),
        None,
        std::time::Duration::from_secs(30),
    )
    .await
    .map_err(|source| DoctorError::Remove {
        name: name.into(),
        source,
    })?;
    if !status.is_success() {
        return Err(DoctorError::Refused {
            name: name.into(),
            body,
        });
    }
    Ok(format!("fixed: {plan}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_comparison() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert!(same_tree(a.path(), b.path()).unwrap());
        std::fs::create_dir(a.path().join("d")).unwrap();
        std::fs::write(a.path().join("d/f"), "x").unwrap();
        assert!(!same_tree(a.path(), b.path()).unwrap());
        std::fs::create_dir(b.path().join("d")).unwrap();
        std::fs::write(b.path().join("d/f"), "y").unwrap();
        assert!(!same_tree(a.path(), b.path()).unwrap());
        std::fs::write(b.path().join("d/f"), "x").unwrap();
        assert!(same_tree(a.path(), b.path()).unwrap());
    }
}
