//! Replication between real nodes (network + mount namespaces, loop btrfs,
//! sshd with our forced command, one daemon each): full and incremental
//! sends checked by content and UUIDs, the forced command's refusals, sync.

use std::path::Path;

use serde_json::json;
use testkit::nodes::Nodes;

mod sends;
mod sessions;
mod sync_and_receive;

fn write_file(path: &Path, bytes: usize, seed: u8) {
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(path, data).unwrap();
}

fn digest(path: &Path) -> u64 {
    // FNV-1a over the file: enough to tell contents apart in a test.
    std::fs::read(path)
        .unwrap()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100000001b3)
        })
}

fn identity(path: &Path) -> buttervolume::btrfs::SubvolumeIdentity {
    buttervolume::btrfs::identity(path).unwrap()
}
