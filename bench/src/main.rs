//! buttervolume's benchmarks, one subcommand each, on the `testkit`
//! fixtures (the same daemons the integration tests start), reading typed
//! API replies and printing one markdown table (`report`):
//!
//! ```text
//! flock /tmp/cargo.lock cargo build --release -p buttervolume -p bench
//! target/release/bench --help          # every benchmark
//! target/release/bench <name> --help   # its sizes and options
//! target/release/bench <name>
//! ```
//!
//! As root, on a btrfs at `BUTTERVOLUME_TEST_BTRFS` (default
//! `/mnt/buttervolume-test`; `scripts/test-btrfs.sh` makes one). The daemon
//! is `target/release/buttervolume` beside this program, or
//! `BUTTERVOLUME_BIN`. Figures and the commands that made them:
//! BENCHMARKS.md.

mod app_data;
mod backup;
mod cluster;
mod cpu;
mod follow;
mod handover;
mod idle_round;
mod pair;
mod plugin;
mod probe_dead_link;
mod probe_transport;
mod receive;
mod replication;
mod replication_cpu;
mod report;
mod scheduler;
mod snapshot_breakdown;
mod status;
mod swarm;
mod volumes;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "buttervolume's benchmarks (figures in BENCHMARKS.md)")]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// What Status and a /metrics scrape cost, and a background size
    /// measurement.
    Status(status::Options),
    /// Local API latency of our daemon vs the reference 3.13, side by side.
    Volumes(volumes::Options),
    /// Where a Snapshot request's time goes: the ioctl, the request, the
    /// reference's `btrfs` CLI call.
    SnapshotBreakdown(snapshot_breakdown::Options),
    /// The receiving side alone: plain `btrfs receive` vs our forced
    /// command, from the same full stream.
    Receive(receive::Options),
    /// How the libssh2 transport meets a link that dies (two nodes).
    ProbeDeadLink(probe_dead_link::Options),
    /// Cluster mode on etcd: node loss, fencing, data lost on failover,
    /// idle cost per owned volume, and pair mode for comparison.
    Cluster(cluster::Options),
    /// Docker Swarm moving a task between the pair's nodes: drain,
    /// rolling update (against a local volume) and node loss.
    Swarm(swarm::Options),
    /// Our full send against raw local send|receive, alternating, with CPU.
    ReplicationCpu(replication_cpu::Options),
    /// The managed plugin: rootfs size, create, enable, first volume; vs the reference.
    Plugin(plugin::Options),
    /// Backups to a local restic repository against plain restic.
    Backup(backup::Options),
    /// A scheduler round of 1,000 replicated volumes: in use, changed, idle.
    IdleRound(idle_round::Options),
    /// Snapshot.Send of ours vs the reference 3.13 and raw send|receive.
    Replication(replication::Options),
    /// The SSH transports of a full send: OpenSSH, ours (auto), libssh2.
    ProbeTransport(probe_transport::Options),
    /// Moving an app between the two nodes: our follow vs the reference's
    /// script, each node with its own dockerd.
    Follow(follow::Options),
    /// Handover's downtime-critical phase vs the reference's script, and
    /// the follow's pull at Mount and push at Unmount of a delta.
    Handover(handover::Options),
    /// The scheduler with fake jobs, 1,000 volumes x 3 jobs all due:
    /// ours and the reference 3.13's runjobs() (no root, no btrfs).
    Scheduler(scheduler::Options),
}

fn main() {
    let args = Args::parse();
    println!("binary: {}", testkit::bin());
    println!("load average at start: {}", report::load_average());
    let table = match args.bench {
        Bench::Status(options) => status::run(&options),
        Bench::Volumes(options) => volumes::run(&options),
        Bench::SnapshotBreakdown(options) => snapshot_breakdown::run(&options),
        Bench::Receive(options) => receive::run(&options),
        Bench::ProbeDeadLink(options) => probe_dead_link::run(&options),
        Bench::Cluster(options) => cluster::run(&options),
        Bench::Swarm(options) => swarm::run(&options),
        Bench::ReplicationCpu(options) => replication_cpu::run(&options),
        Bench::Plugin(options) => plugin::run(&options),
        Bench::Backup(options) => backup::run(&options),
        Bench::IdleRound(options) => idle_round::run(&options),
        Bench::Replication(options) => replication::run(&options),
        Bench::ProbeTransport(options) => probe_transport::run(&options),
        Bench::Follow(options) => follow::run(&options),
        Bench::Handover(options) => handover::run(&options),
        Bench::Scheduler(options) => scheduler::run(&options),
    };
    println!("load average at end: {}", report::load_average());
    println!();
    print!("{table}");
}
