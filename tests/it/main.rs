//! The integration tests, one binary: a real daemon on a real btrfs, the
//! private dockerd and network-namespace nodes (fixtures in the `testkit`
//! crate). One module per area; `cargo test --test it <filter>` (or
//! `scripts/test.sh <filter>`) runs the tests whose path contains the
//! filter, e.g. `schedule` or `replication::`.

mod backup;
mod cluster;
mod cluster_scenario;
mod docker_e2e;
mod follow;
mod handover;
mod hardening;
mod init;
mod managed_plugin;
mod metrics_listener;
mod node_docker;
mod peer_reply_limits;
mod peer_trust;
mod prometheus;
mod purge;
mod purge_vectors;
mod receive_confinement;
mod reference_cli;
mod reference_replies;
mod replication;
mod replication_faults;
mod replication_interop;
mod schedule;
mod snapshot_if_changed;
mod snapshots;
mod socket_fuzz;
mod socket_limits;
mod status_metrics;
mod swarm;
mod volume_driver;
