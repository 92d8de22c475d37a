//! Every endpoint of the plugin socket, defined once in [`ENDPOINTS`]: its
//! path, which server family answers it and with which handler (the
//! [`Endpoint`] value: each family of `crate::server` matches on its own
//! enum, so an endpoint without a handler does not compile), its metrics
//! label (its path; anything else is [`OTHER`]) and whether its reply
//! carries `Err`. The server routes through [`find`], the metrics label
//! with [`label`], and the tests iterate over the table.

use super::backup::path as backup_path;
use super::path;

/// Which handler answers: the family (the server's submodule) and the
/// endpoint within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Docker's own calls (`server::volume_driver`).
    Docker(Docker),
    /// Local snapshots and volumes (`server::control`).
    Control(Control),
    /// Peers (`server::replication`).
    Replication(Replication),
    /// The scheduler (`server::schedule`).
    Schedule(Schedule),
    /// `buttervolume status` (`server::status`).
    Status,
    /// Off-site backups (`server::backup`).
    Backup(Backup),
    /// Cluster mode's owner record (`server::cluster`).
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Docker {
    Activate,
    Capabilities,
    Create,
    Remove,
    Mount,
    Unmount,
    Path,
    Get,
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Snapshot,
    SnapshotList,
    SnapshotRemove,
    SnapshotRestore,
    Clone,
    Purge,
    Inspect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    Send,
    Receive,
    Replicate,
    Handover,
    Sync,
    Transfers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Schedule,
    List,
    Pause,
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backup {
    Backup,
    List,
    Restore,
    Check,
}

/// One endpoint: a row of [`ENDPOINTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub endpoint: Endpoint,
    /// `<path>/<volume>` is this endpoint for that volume too (3.13's
    /// `Snapshot.List/<volume>`).
    pub volume_suffix: bool,
    /// The reply carries `Err` (empty on success); Activate and
    /// Capabilities answer without it, as the reference does.
    pub carries_err: bool,
}

impl Route {
    const fn new(path: &'static str, endpoint: Endpoint) -> Route {
        Route {
            path,
            endpoint,
            volume_suffix: false,
            carries_err: true,
        }
    }

    const fn without_err(self) -> Route {
        Route {
            carries_err: false,
            ..self
        }
    }

    const fn with_volume_suffix(self) -> Route {
        Route {
            volume_suffix: true,
            ..self
        }
    }

    /// The `endpoint` label of its requests in the metrics: its path.
    pub fn label(&self) -> &'static str {
        self.path
    }
}

/// The `endpoint` label of requests to no endpoint (a client's unknown
/// paths never make new series).
pub const OTHER: &str = "other";

/// Every endpoint of the socket, Docker's first.
pub const ENDPOINTS: [Route; 32] = [
    Route::new(path::ACTIVATE, Endpoint::Docker(Docker::Activate)).without_err(),
    Route::new(path::CAPABILITIES, Endpoint::Docker(Docker::Capabilities)).without_err(),
    Route::new(path::CREATE, Endpoint::Docker(Docker::Create)),
    Route::new(path::REMOVE, Endpoint::Docker(Docker::Remove)),
    Route::new(path::MOUNT, Endpoint::Docker(Docker::Mount)),
    Route::new(path::UNMOUNT, Endpoint::Docker(Docker::Unmount)),
    Route::new(path::PATH, Endpoint::Docker(Docker::Path)),
    Route::new(path::GET, Endpoint::Docker(Docker::Get)),
    Route::new(path::LIST, Endpoint::Docker(Docker::List)),
    Route::new(path::SNAPSHOT, Endpoint::Control(Control::Snapshot)),
    Route::new(
        path::SNAPSHOT_LIST,
        Endpoint::Control(Control::SnapshotList),
    )
    .with_volume_suffix(),
    Route::new(
        path::SNAPSHOT_REMOVE,
        Endpoint::Control(Control::SnapshotRemove),
    ),
    Route::new(
        path::SNAPSHOT_RESTORE,
        Endpoint::Control(Control::SnapshotRestore),
    ),
    Route::new(path::CLONE, Endpoint::Control(Control::Clone)),
    Route::new(path::PURGE, Endpoint::Control(Control::Purge)),
    Route::new(path::INSPECT, Endpoint::Control(Control::Inspect)),
    Route::new(
        path::SNAPSHOT_SEND,
        Endpoint::Replication(Replication::Send),
    ),
    Route::new(
        path::SNAPSHOT_RECEIVE,
        Endpoint::Replication(Replication::Receive),
    ),
    Route::new(
        path::REPLICATE,
        Endpoint::Replication(Replication::Replicate),
    ),
    Route::new(path::HANDOVER, Endpoint::Replication(Replication::Handover)),
    Route::new(path::SYNC, Endpoint::Replication(Replication::Sync)),
    Route::new(
        path::TRANSFERS,
        Endpoint::Replication(Replication::Transfers),
    ),
    Route::new(path::SCHEDULE, Endpoint::Schedule(Schedule::Schedule)),
    Route::new(path::SCHEDULE_LIST, Endpoint::Schedule(Schedule::List)),
    Route::new(path::SCHEDULE_PAUSE, Endpoint::Schedule(Schedule::Pause)),
    Route::new(path::SCHEDULE_RESUME, Endpoint::Schedule(Schedule::Resume)),
    Route::new(path::STATUS, Endpoint::Status),
    Route::new(backup_path::BACKUP, Endpoint::Backup(Backup::Backup)),
    Route::new(backup_path::BACKUP_LIST, Endpoint::Backup(Backup::List)),
    Route::new(
        backup_path::BACKUP_RESTORE,
        Endpoint::Backup(Backup::Restore),
    ),
    Route::new(backup_path::BACKUP_CHECK, Endpoint::Backup(Backup::Check)),
    Route::new(super::cluster::path::OWNER, Endpoint::Owner),
];

/// The endpoint a request path names, and the volume of a
/// `<path>/<volume>` request; `None`: no endpoint (404, label [`OTHER`]).
pub fn find(request_path: &str) -> Option<(&'static Route, Option<&str>)> {
    ENDPOINTS.iter().find_map(|route| {
        if request_path == route.path {
            return Some((route, None));
        }
        let rest = request_path.strip_prefix(route.path)?.strip_prefix('/')?;
        route.volume_suffix.then_some((route, Some(rest)))
    })
}

/// The metrics `endpoint` label of a request path.
pub fn label(request_path: &str) -> &'static str {
    find(request_path).map_or(OTHER, |(route, _)| route.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_found_by_its_path_and_labelled_by_it() {
        for route in &ENDPOINTS {
            assert_eq!(find(route.path), Some((route, None)), "{}", route.path);
            assert_eq!(label(route.path), route.path);
        }
        let paths: std::collections::BTreeSet<_> = ENDPOINTS.iter().map(|r| r.path).collect();
        assert_eq!(paths.len(), ENDPOINTS.len(), "a path defined twice");
        let endpoints: Vec<_> = ENDPOINTS.iter().map(|r| r.endpoint).collect();
        for (i, e) in endpoints.iter().enumerate() {
            assert!(!endpoints[i + 1..].contains(e), "{e:?} routed twice");
        }
    }

    #[test]
    fn only_snapshot_list_takes_a_volume_and_unknown_paths_are_other() {
        let list = find("/VolumeDriver.Snapshot.List/db").unwrap();
        assert_eq!((list.0.path, list.1), (path::SNAPSHOT_LIST, Some("db")));
        for unknown in [
            "/",
            "/x",
            "/VolumeDriver.Mount/x",
            "/VolumeDriver.Nope",
            "/VolumeDriver.SnapshotX",
            "/VolumeDriver.Snapshot.ListX",
        ] {
            assert_eq!(find(unknown), None, "{unknown}");
            assert_eq!(label(unknown), OTHER, "{unknown}");
        }
    }
}
