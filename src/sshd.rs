//! The managed plugin's own sshd, supervised by the daemon (`run --sshd`).
//!
//! Peers send snapshots to `ssh -p SSH_PORT` on this host, which inside the
//! managed plugin is an OpenSSH server the plugin runs itself (as the
//! reference plugin does). The daemon starts it after the plugin socket is
//! up, restarts it if it dies, and stops it on shutdown. Its host key lives
//! in the state dir under the data mount, so it survives plugin upgrades and
//! peers' known_hosts stay valid. No shell: ssh-keygen and sshd are run with
//! argument vectors.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::config::Config;
use crate::fsutil::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum SshdError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("ssh-keygen failed: {0}")]
    Keygen(String),
}

/// glibc malloc settings sshd runs with. sshd grows its channel buffers by
/// allocate-and-copy; with glibc's default (dynamic) mmap threshold every
/// growth past 128 KiB is a fresh `mmap`, so the first ~10 MiB of each
/// session are paid in page faults: 62 % of the receiving sshd's CPU samples
/// during a 10 MiB incremental send, which made that send take 0.3-0.4 s
/// instead of ~0.2 s. Fixed thresholds keep the buffers in the heap and
/// reuse them. tests/nodes/nodes.sh starts the test nodes' sshd the same way.
pub const SSHD_MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=134217728";

/// Where sshd's host key and config live.
pub fn sshd_dir(config: &Config) -> PathBuf {
    config.state_path.join("sshd")
}

/// The sshd configuration: key-only root login (restricted by the forced
/// command on each authorized key), no PAM, no forwarding.
fn sshd_config(port: u16, dir: &Path, authorized_keys: &Path) -> String {
    format!(
        "Port {port}\n\
         {host_keys}\
         PidFile none\n\
         AuthorizedKeysFile {authorized}\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         AllowTcpForwarding no\n\
         X11Forwarding no\n\
         PermitTunnel no\n\
         ClientAliveInterval 15\n\
         ClientAliveCountMax 4\n\
         ExposeAuthInfo yes\n\
         LogLevel INFO\n",
        host_keys = [
            "ssh_host_ed25519_key",
            "ssh_host_ecdsa_key",
            "ssh_host_rsa_key"
        ]
        .iter()
        .map(|k| dir.join(k))
        .filter(|k| k == &dir.join("ssh_host_ed25519_key") || k.exists())
        .map(|k| format!("HostKey {}\n", k.display()))
        .collect::<String>(),
        authorized = authorized_keys.display(),
    )
}

/// Creates the host key (once) and writes the config; returns its path.
pub async fn prepare(config: &Config) -> Result<PathBuf, SshdError> {
    let dir = sshd_dir(config);
    let io = |context: &str| {
        let context = context.to_string();
        move |source| SshdError::Io { context, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("creating the sshd dir"))?;
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").map_err(io("creating /run/sshd"))?;
    let key = dir.join("ssh_host_ed25519_key");
    if !key.exists() {
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "buttervolume-plugin",
                "-f",
            ])
            .arg(&key)
            .output()
            .await
            .map_err(io("running ssh-keygen"))?;
        if !out.status.success() {
            return Err(SshdError::Keygen(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
    }
    let file = dir.join("sshd_config");
    let contents = sshd_config(
        config.ssh_port,
        &dir,
        &config.ssh_dir.join("authorized_keys"),
    );
    write_atomic(&file, contents.as_bytes()).map_err(io("writing sshd_config"))?;
    Ok(file)
}

/// sshd in the foreground, logging to stderr (the daemon's log), with its
/// malloc settings.
fn sshd_command(config_file: &Path) -> Command {
    let mut command = Command::new("/usr/sbin/sshd");
    command
        .args(["-D", "-e", "-f"])
        .arg(config_file)
        .env("GLIBC_TUNABLES", SSHD_MALLOC_TUNABLES)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs sshd in the foreground until `stop` fires, restarting it when it
/// exits on its own.
pub async fn supervise(
    config: std::sync::Arc<Config>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let file = match prepare(&config).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot prepare sshd: replication to this node will not work");
            return;
        }
    };
    loop {
        let child = sshd_command(&file).spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start sshd");
                return;
            }
        };
        tracing::info!(port = config.ssh_port, "sshd started");
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, "sshd exited; restarting in 2 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return,
                }
            }
            _ = stop.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                tracing::info!("sshd stopped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sshd rewrites its argv and environ area for its process title, so a
    // running sshd's /proc/<pid>/environ cannot show the setting: check the
    // command the daemon spawns instead.
    #[test]
    fn sshd_runs_with_its_malloc_settings() {
        let command = sshd_command(Path::new("/state/sshd/sshd_config"));
        let envs: Vec<_> = command.as_std().get_envs().collect();
        assert_eq!(
            envs,
            [(
                std::ffi::OsStr::new("GLIBC_TUNABLES"),
                Some(std::ffi::OsStr::new(SSHD_MALLOC_TUNABLES))
            )]
        );
        let args: Vec<_> = command.as_std().get_args().collect();
        assert_eq!(args, ["-D", "-e", "-f", "/state/sshd/sshd_config"]);
    }
}
