//! buttervolume: a btrfs volume plugin for Docker, drop-in compatible with
//! buttervolume 3.13.
//!
//! Map of the crate, from the socket down to the disk:
//! - [`server`]: the HTTP server on the plugin socket, one file per family
//!   of endpoints;
//! - [`volumes`]: one btrfs subvolume per volume, options, mount counts;
//! - [`metadata`]: per-volume metadata that travels with the subvolume;
//! - [`api`]: endpoint paths and request/reply bodies, shared by server and
//!   CLI;
//! - [`subvolumes`]: the btrfs operations as a trait (real, and a recording
//!   fake for unit tests);
//! - [`btrfs`]: the thin safe layer over libbtrfsutil and the few ioctls;
//! - [`names`]: which names are acceptable, snapshot timestamps;
//! - [`config`]: settings from env / config.ini / defaults;
//! - [`fsutil`]: atomic writes and renames;
//! - [`mounts`]: persisted mount reference counts;
//! - [`schedule`]: the built-in job scheduler and schedule.csv;
//! - [`daemon`]: the `run` verb that wires everything together;
//! - [`init`]: `buttervolume init`, preparing a btrfs data directory;
//! - [`status`]: what `buttervolume status` shows, problems first;
//! - [`metrics`]: the Prometheus metrics and their optional listener.

pub mod api;
pub mod backup;
pub mod btrfs;
pub mod cluster;
pub mod cli;
pub mod client;
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
