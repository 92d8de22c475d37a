//! Makes the legacy (socket) driver known to its Docker engine at start,
//! so Docker Swarm can place tasks using it.
//!
//! Swarm places a task whose mount names `volume-driver=btrfs` only on a
//! node whose engine lists that driver (otherwise the task stays Pending
//! with `no suitable node (missing plugin)`), and an engine lists a legacy
//! socket plugin only once something used it (a managed plugin is always
//! listed). The legacy daemon therefore asks its engine, through
//! `DOCKER_SOCKET`, for the volumes of its driver
//! (`GET /volumes?filters={"driver":["btrfs"]}`, what `docker volume ls
//! --filter driver=btrfs` sends): the engine then looks the driver up,
//! activates it and lists it from then on (the Swarm agent reports its
//! engine's drivers to the managers within its update period).
//!
//! The request is retried (the engine may start after the daemon) until
//! the engine answers it, or the daemon stops. A dockerd restarted while
//! the daemon runs forgets the driver again: restarting the daemon, or the
//! same `docker volume ls --filter driver=btrfs`, announces it again. The
//! managed plugin (`run --sshd`) does not announce itself: its engine
//! lists it already.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use tokio::sync::watch;

use crate::client::{self, ClientError};

/// How long the engine may take to activate the driver (it calls
/// `Plugin.Activate` and `VolumeDriver.List` on this daemon meanwhile).
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits between two attempts, growing to the last.
const RETRY: [u64; 5] = [1, 2, 5, 10, 30];

/// The driver name Docker knows the legacy daemon by: its socket's file
/// name without `.sock` (`btrfs.sock` is driver `btrfs`).
pub fn driver_name(socket: &Path) -> Option<String> {
    let name = socket.file_name()?.to_str()?.strip_suffix(".sock")?;
    crate::names::check_volume(name).ok()?;
    Some(name.to_string())
}

/// The engine API path listing `driver`'s volumes (filters URL-encoded).
fn list_path(driver: &str) -> String {
    format!("/volumes?filters=%7B%22driver%22%3A%5B%22{driver}%22%5D%7D")
}

/// One announcement: the engine lists `driver`'s volumes (so it has the
/// driver), or the error.
pub async fn announce_once(docker: &Path, driver: &str) -> Result<(), ClientError> {
    let path = list_path(driver);
    let (status, body) =
        client::request(docker, Method::GET, &path, None, ANNOUNCE_TIMEOUT).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(ClientError::Status {
            status,
            path,
            body: body.to_string(),
        })
    }
}

/// Announces `driver` to the engine at `docker` until it answers or
/// `stop` says so; logs the outcome.
pub async fn announce(docker: PathBuf, driver: String, mut stop: watch::Receiver<bool>) {
    for attempt in 0usize.. {
        match announce_once(&docker, &driver).await {
            Ok(()) => {
                tracing::info!(driver = %driver, docker = %docker.display(), "driver announced to the Docker engine (Swarm can place tasks using it)");
                return;
            }
            Err(e) if attempt == 0 => {
                tracing::info!(driver = %driver, docker = %docker.display(), error = %e, "cannot announce the driver to the Docker engine yet; retrying");
            }
            Err(e) => {
                tracing::debug!(driver = %driver, error = %e, "driver announcement failed; retrying")
            }
        }
        let wait = Duration::from_secs(RETRY[attempt.min(RETRY.len() - 1)]);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_the_socket_name() {
        assert_eq!(
            driver_name(Path::new("/run/docker/plugins/btrfs.sock")).as_deref(),
            Some("btrfs")
        );
        assert_eq!(
            driver_name(Path::new("/x/other.sock")).as_deref(),
            Some("other")
        );
        assert_eq!(driver_name(Path::new("/x/btrfs")), None);
        assert_eq!(driver_name(Path::new("/x/a%b.sock")), None);
    }

    #[test]
    fn the_request_filters_on_the_driver() {
        assert_eq!(
            list_path("btrfs"),
            "/volumes?filters=%7B%22driver%22%3A%5B%22btrfs%22%5D%7D"
        );
    }
}
