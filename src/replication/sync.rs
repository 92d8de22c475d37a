//! `Volume.Sync`: rsync pulls of a volume's files from peers (the
//! reference's `sync` verb); the peer side is the forced command's rsync
//! allow-list ([`super::protocol`]).

use std::process::Command;

use super::transport;
use super::ReplicationError;
use crate::volumes::VolumeStore;

/// Pulls each volume's content from each host with rsync over SSH (never
/// deletes local files). Errors of all pairs are collected, like the
/// reference does.
pub fn sync(
    store: &VolumeStore,
    volumes: &[String],
    hosts: &[String],
    test: bool,
) -> Result<(), ReplicationError> {
    let config = store.config();
    let remote_dir = if test {
        &config.test_remote_path
    } else {
        &config.volumes_path
    };
    let settings = transport::SshSettings::of(config);
    let mut errors = Vec::new();
    for volume in volumes {
        let local = store
            .existing(volume)
            .map_err(|e| ReplicationError::Sync(e.to_string()))?;
        for host in hosts {
            // rsync splits the -e value on spaces itself: no shell. Our
            // paths (the ssh dir) hold no spaces.
            transport::check_host(host)?;
            let ssh = transport::ssh_options(&settings)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let source = format!(
                "{host}:{}/{volume}/",
                remote_dir.display().to_string().trim_end_matches('/')
            );
            let output = Command::new("rsync")
                .args(["-r", "-a", "-z", "-h", "-e", &ssh, &source])
                .arg(&local)
                .output();
            match output {
                Ok(o) if o.status.success() => {}
                Ok(o) => errors.push(format!(
                    "Error while rsync {volume} from {host}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => errors.push(format!("Error while rsync {volume} from {host}: {e}")),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ReplicationError::Sync(errors.join("\n")))
    }
}
