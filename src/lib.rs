//! buttervolume: a btrfs volume plugin for Docker, drop-in compatible with
//! buttervolume 3.13.
//!
//! Map of the crate, from the socket down to the disk (README's "Code
//! map" has the files of each):
//! - [`server`]: the HTTP server on the plugin socket, one file per family
//!   of endpoints;
//! - [`api`]: the endpoint table and request/reply bodies, shared by
//!   server and CLI;
//! - [`cli`]: the command line: verbs that run here and verbs that call
//!   the daemon; [`client`]: JSON over a unix socket;
//! - [`volumes`]: one btrfs subvolume per volume, options, locks;
//! - [`snapshots`]: snapshot, list, "newest" (btrfs creation order),
//!   restore, clone;
//! - [`purge`]: retention patterns and what they keep;
//! - [`replication`]: send, receive and sync with peers over SSH, the
//!   peer protocol, and the forced command that confines a peer's key;
//! - [`follow`]: volumes follow their containers between the two nodes;
//!   [`handover`]: moving a volume's state to the other node with the
//!   shortest downtime;
//!   [`takeover`]: the check before restoring a received state;
//!   [`lineage`]: "this state was built on that one";
//! - [`backup`]: off-site backups with restic;
//! - [`cluster`]: cluster mode on etcd: one writer per volume, failover,
//!   fencing;
//! - [`schedule`]: the built-in job scheduler and schedule.csv;
//! - [`status`]: what `buttervolume status` shows, problems first;
//! - [`metrics`]: the Prometheus metrics and their optional listener;
//! - [`metadata`]: per-volume metadata that travels with the subvolume;
//!   [`labels`]: Docker labels; [`mounts`]: persisted mount counts;
//! - [`names`]: which names are acceptable, snapshot timestamps;
//! - [`subvolumes`]: the btrfs operations as a trait (real, and a
//!   recording fake for unit tests);
//! - [`btrfs`]: the thin safe layer over libbtrfsutil and the few ioctls;
//! - [`config`]: settings from env / config.ini / defaults, one definition
//!   per key;
//! - [`fsutil`]: atomic writes and renames;
//! - [`daemon`]: the `run` verb that wires everything together;
//!   [`sshd`]: the managed plugin's sshd;
//! - [`init`]: `buttervolume init`, preparing a btrfs data directory;
//! - [`doctor`]: `buttervolume doctor`; [`legacy_driver`]: what it sees
//!   of the legacy `btrfs` driver; [`docker`]: the few Docker API calls;
//!   [`announce`]: the legacy daemon making its driver known to its
//!   engine at start (Swarm places tasks only where a driver is listed).

pub mod announce;
pub mod api;
pub mod backup;
pub mod btrfs;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod doctor;
pub mod follow;
pub mod fsutil;
pub mod handover;
pub mod init;
pub mod labels;
pub mod legacy_driver;
pub mod lineage;
pub mod metadata;
pub mod metrics;
pub mod mounts;
pub mod names;
pub mod purge;
pub mod replication;
pub mod schedule;
pub mod server;
pub mod snapshots;
pub mod sshd;
pub mod status;
pub mod subvolumes;
pub mod takeover;
pub mod volumes;

#[cfg(test)]
mod code_map_tests;
