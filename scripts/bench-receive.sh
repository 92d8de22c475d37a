#!/usr/bin/env bash
# bench-receive.sh - the receiving side alone: a full send stream landed by
# plain `btrfs receive` (the floor) and by our forced command (`buttervolume
# ssh-command`, which reads every command through the confinement check
# before handing it to `btrfs receive --chroot`), alternating, from the same
# stream file on the same loop btrfs. Wall seconds and user/system CPU
# seconds of each (the process and the btrfs receive it runs). No network.
#
# Usage: scripts/bench-receive.sh
# Environment: BV_BINARY (default target/release/buttervolume), REPS=3,
# DATA_MIB=1024. Needs root, btrfs-progs and GNU time. Makes and removes its own loop
# btrfs under /var/tmp/bench-receive.<pid>.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
DATA_MIB=${DATA_MIB:-1024}
work=/var/tmp/bench-receive.$$
mnt=$work/mnt

die() { echo "bench-receive.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
ours=$(realpath "${BV_BINARY:-$repo/target/release/buttervolume}")
[[ -x $ours ]] || die "not an executable: $ours (cargo build --release)"
[[ -x /usr/bin/time ]] || die "needs GNU time (apt-get install time)"

cleanup() {
    mountpoint -q "$mnt" && umount "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$mnt"
truncate -s $((DATA_MIB * 3 + 1024))M "$work/img"
mkfs.btrfs -q "$work/img" >/dev/null 2>&1
mount -o loop "$work/img" "$mnt"
mkdir -p "$mnt"/{volumes,snapshots,received,state,raw}
btrfs subvolume create "$mnt/volumes/v" >/dev/null
head -c "${DATA_MIB}M" /dev/urandom >"$mnt/volumes/v/data"
snapshot=v@2026-01-01T00:00:00.000000
btrfs subvolume snapshot -r "$mnt/volumes/v" "$mnt/$snapshot" >/dev/null
btrfs send -q -f "$work/stream" "$mnt/$snapshot"
stream_mib=$(( $(stat -c %s "$work/stream") >> 20 ))

# clear <dir>: delete what landed and let btrfs finish cleaning up.
clear() {
    btrfs subvolume delete "$1/$snapshot" >/dev/null
    btrfs subvolume sync "$mnt" >/dev/null
    sync
}
# measure <label> <command...> < stream: wall, user and system seconds.
measure() {
    local label=$1; shift
    cat "$work/stream" >/dev/null # both start from the page cache
    /usr/bin/time -f "| $label | %e s | %U | %S |" "$@" <"$work/stream" >/dev/null
}
echo "receive of a ${stream_mib} MiB full stream, $REPS alternating repetitions, $(nproc) cores"
echo "| path | wall | user CPU-s | system CPU-s |"
echo "|---|---|---|---|"
for _ in $(seq "$REPS"); do
    measure "btrfs receive" btrfs receive -q "$mnt/raw" 2>&1
    clear "$mnt/raw"
    measure "buttervolume ssh-command" env \
        SSH_ORIGINAL_COMMAND="buttervolume receive" \
        BUTTERVOLUME_VOLUMES_PATH="$mnt/volumes/" \
        BUTTERVOLUME_SNAPSHOTS_PATH="$mnt/snapshots/" \
        BUTTERVOLUME_TEST_REMOTE_PATH="$mnt/received/" \
        BUTTERVOLUME_STATE_PATH="$mnt/state/" \
        "$ours" ssh-command 2>&1
    clear "$mnt/snapshots"
done
