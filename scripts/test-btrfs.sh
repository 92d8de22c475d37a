#!/usr/bin/env bash
# Mounts a loop-backed btrfs filesystem for the test suite (idempotent).
# Usage: scripts/test-btrfs.sh [mountpoint] [size] [image]
#   default mountpoint /mnt/buttervolume-test, default size 8G (sparse),
#   default image /var/tmp/<basename of mountpoint>.img.
# Tests find it through BUTTERVOLUME_TEST_BTRFS (default: that mountpoint).
# scripts/test.sh uses a fresh one per run and removes it at the end.
set -euo pipefail
mnt=${1:-/mnt/buttervolume-test}
size=${2:-8G}
img=${3:-/var/tmp/$(basename "$mnt").img}

is_btrfs() { [ "$(stat -f -c %T "$1" 2>/dev/null)" = "btrfs" ]; }

mkdir -p "$mnt"
if is_btrfs "$mnt"; then
    echo "btrfs already mounted on $mnt"
    exit 0
fi
if [ ! -f "$img" ]; then
    truncate -s "$size" "$img"
    mkfs.btrfs -q "$img"
fi
mount -o loop,noatime "$img" "$mnt"
is_btrfs "$mnt" || { echo "mounting $img on $mnt did not give btrfs" >&2; exit 1; }
echo "btrfs mounted on $mnt (image $img)"
