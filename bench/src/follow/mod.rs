//! `follow`: moving an app between the two nodes of a pair, our daemon's
//! follow (the volume's state moves with the container) vs the same move
//! scripted with the reference 3.13, side by side in one run.
//!
//! Two pairs of throw-away nodes (`testkit::pairs`), each node with its own
//! dockerd whose `btrfs` driver is the node's daemon: `bfo1 <-> bfo2` run
//! ours (volume `vol` created by Docker on both with `-o
//! replicate:<peer>=cron:0 0 1 1 *`, an active line that never runs during
//! the bench), `bfr1 <-> bfr2` the reference (plain keys). Both volumes
//! hold the same DATA_MIB file of random bytes, replicated once to node 2
//! (ours: `Replicate`; reference: `snapshot`, `send`, `restore`). Then a
//! chain of containers (`moves`) alternately on node 2 and node 1: move 1
//! is a warm-up, then REPS round trips. Three chains: ours with the volume
//! at /data (a directory of the image: Docker mounts at create, unmounts,
//! mounts again), ours at /srv (not in the image: one Mount), the
//! reference at /data moved by its users' script between two containers.
//!
//! What each move costs is read from typed sources: the containers' own
//! timestamps, the `docker run` calls, our daemons' request-duration
//! histograms (`/metrics`, scraped on both nodes once the new container's
//! first command ran), the reference CLI calls timed here, the old node's
//! eth0 counters, and `/proc/stat` for CPU. Figures: BENCHMARKS.md.

mod moves;
mod tables;

use clap::Args;
use testkit::nodes::Nodes;
use testkit::pairs::Program;

use buttervolume::api::{path, PeerVolumeRequest, SnapshotReply};

use crate::app_data;
use crate::cpu::{now, Sampler};
use crate::report::Table;
use moves::{Chain, Move, Pair};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    sizes: crate::app_data::Sizes,
    /// What the app overwrites each time.
    #[arg(long, default_value_t = 10)]
    change_mib: usize,
    /// How long the app runs.
    #[arg(long, default_value_t = 1)]
    app_seconds: u64,
    /// Our nodes' loop images.
    #[arg(long, default_value = "4G")]
    image_size: String,
}

/// The metrics listener inside each of our nodes (their own loopback).
const METRICS_PORT: u16 = 9477;
const YEARLY: &str = "cron:0 0 1 1 *";

pub fn run(o: &Options) -> Table {
    assert!(
        o.sizes.data_mib > 2 * o.change_mib,
        "data-mib must exceed 2 * change-mib"
    );
    let metrics = format!("BUTTERVOLUME_METRICS_ADDR=127.0.0.1:{METRICS_PORT}");
    let ours = Pair::new(Nodes::pair_of(
        "bfo",
        &o.image_size,
        Program::Ours,
        &[metrics.as_str()],
    ));
    // A reference move lands a whole new copy each time (BENCHMARKS.md):
    // room for REPS + 2 of them.
    let ref_size = format!("{}M", (o.sizes.reps + 3) * o.sizes.data_mib + 1024);
    let reference = Pair::new(Nodes::pair_of("bfr", &ref_size, Program::Reference, &[]));
    println!(
        "reps {} data {} MiB change {} MiB app {} s; images: ours {}, reference {ref_size} (preallocated, nodiscard)",
        o.sizes.reps, o.sizes.data_mib, o.change_mib, o.app_seconds, o.image_size
    );
    for pair in [&ours, &reference] {
        for node in &pair.names {
            pair.nodes.docker_start(node);
        }
    }
    for (k, node) in ours.names.iter().enumerate() {
        let peer = ours.ip(1 - k);
        let option = format!("replicate:{peer}={YEARLY}");
        let d = ours.nodes.dockerd(node);
        d.docker(&["volume", "create", "-d", "btrfs", "-o", &option, "vol"]);
    }
    for node in &reference.names {
        let d = reference.nodes.dockerd(node);
        d.docker(&["volume", "create", "-d", "btrfs", "vol"]);
    }
    for pair in [&ours, &reference] {
        let dir = pair.nodes.volume_dir(&pair.names[0], "vol");
        app_data::write_at(&dir.join("big"), 0, o.sizes.data_mib, 1);
        std::fs::write(dir.join("seq"), "fill\n").unwrap();
        testkit::run("sync", &[]);
    }

    let cpu = Sampler::start();
    let (a, b) = (&ours.names[0], &ours.names[1]);
    let t0 = now();
    let request = PeerVolumeRequest {
        name: "vol".into(),
        host: ours.ip(1),
    };
    let reply: SnapshotReply = ours.nodes.call(a, path::REPLICATE, &request);
    let initial_ours = (now() - t0, reply.summary.unwrap_or_default());
    println!("initial replication, ours ({a} -> {b}): {initial_ours:?}");
    let t0 = now();
    let (r1, r2) = (&reference.names[0], &reference.names[1]);
    let snapshot = reference.nodes.reference_cli(r1, &["snapshot", "vol"]);
    reference
        .nodes
        .reference_cli(r1, &["send", &reference.ip(1), &snapshot]);
    reference.nodes.reference_cli(r2, &["restore", &snapshot]);
    let initial_ref = now() - t0;

    let last = 2 * o.sizes.reps + 1;
    let mut chain = Chain::new(o, &cpu, &ours, METRICS_PORT);
    let mut moves: Vec<Move> = chain.run("ours", 0, last, "/data");
    moves.extend(chain.run("ours_nopath", last + 1, last + 2 * o.sizes.reps, "/srv"));
    let mut chain = Chain::new(o, &cpu, &reference, 0);
    moves.extend(chain.run("ref", 0, last, "/data"));

    let startup: Vec<f64> = (0..3)
        .map(|_| {
            let t0 = now();
            reference.nodes.reference_cli(r1, &["--version"]);
            now() - t0
        })
        .collect();
    tables::print(o, &moves, &startup, &initial_ours, initial_ref)
}
