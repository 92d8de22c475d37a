#!/usr/bin/env bash
# bench-replication-cpu.sh - our full send against raw local
# `btrfs send | btrfs receive`, alternating on one fresh node pair, with the
# busy and stolen CPU seconds of each (the whole machine, /proc/stat).
#
# bench-replication.sh runs five paths per repetition, so raw local and ours
# are minutes apart there; here they follow each other, which shows what the
# ratio is when raw local is at its fastest. With PERF=1 the last send of
# ours is also recorded with `perf record -a` and the CPU samples are printed
# per process and object (what BENCHMARKS.md quotes).
#
# Usage: scripts/bench-replication-cpu.sh
# Environment: BV_BINARY (default target/release/buttervolume), REPS=3,
# DATA_MIB=1024, PERF=1. Needs root, curl, the tools of tests/nodes/README.md
# (and perf for PERF=1). Cleans up on exit: `nodes.sh down bvc`.
# shellcheck disable=SC2016  # single-quoted sh -c scripts expand in the child
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
REPS=${REPS:-3}
DATA_MIB=${DATA_MIB:-1024}
data=/var/lib/buttervolume   # inside a node
snaps=$data/snapshots
work=/var/tmp/bench-replication-cpu.$$

die() { echo "bench-replication-cpu.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
ours=$(realpath "${BV_BINARY:-$repo/target/release/buttervolume}")
[[ -x $ours ]] || die "not an executable: $ours (cargo build --release)"

cleanup() {
    "$nodes" down bvc >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work"
cp "$ours" "$work/buttervolume" # the peer's forced command execs it per send
ours=$work/buttervolume

nx() { "$nodes" exec "$@"; }
api() { curl -sS --fail-with-body --unix-socket "/run/bvnodes/$1/btrfs.sock" -d "$3" "http://localhost$2"; }
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
# Deletes subvolumes in a node and waits until btrfs has cleaned them up.
node_delete() {
    local node=$1; shift
    nx "$node" sh -c 'for s; do [ -e "$s" ] && btrfs subvolume delete "$s" >/dev/null; done
        btrfs subvolume sync /var/lib/buttervolume >/dev/null; sync' sh "$@"
}
# measure <label> <command...>: wall, busy and stolen CPU seconds.
measure() {
    local label=$1 c0 s0 c1 s1 t0 t1; shift
    sync
    read -r c0 s0 < <(cpu_jiffies)
    t0=$EPOCHREALTIME
    "$@" >/dev/null
    t1=$EPOCHREALTIME
    read -r c1 s1 < <(cpu_jiffies)
    awk -v l="$label" -v t="$t1" -v u="$t0" -v c=$((c1 - c0)) -v s=$((s1 - s0)) \
        'BEGIN { printf "| %s | %.2f s | %.1f | %.2f |\n", l, t - u, c / 100, s / 100 }'
}

BVNODES_PREALLOCATE=1 "$nodes" up bvc 2 4G >/dev/null
"$nodes" daemon-start bvc1 "$ours"
"$nodes" daemon-start bvc2 "$ours"
# The nodes share the host's /root; its .bashrc may be slow (see
# bench-replication.sh).
: >"$work/empty-bashrc"
for node in bvc1 bvc2; do nx "$node" mount --bind "$work/empty-bashrc" /root/.bashrc; done
"$nodes" pair bvc1 bvc2 "$ours ssh-command"
ip=$("$nodes" ip bvc2)

api bvc1 /VolumeDriver.Create '{"Name": "big"}' >/dev/null
head -c "${DATA_MIB}M" /dev/urandom >"$work/data.bin"
nx bvc1 cp "$work/data.bin" "$data/volumes/big/data"
snap=$(api bvc1 /VolumeDriver.Snapshot '{"Name": "big"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Snapshot"])')
nx bvc1 mkdir -p "$data/rawrecv"
send_body="{\"Name\": \"$snap\", \"Host\": \"$ip\"}"

echo "Run $(date -u '+%F %T UTC'), $(nproc) cores, $DATA_MIB MiB of random data, binary sha256 $(sha256sum "$ours" | cut -c1-12), repo at $(cd "$repo" && git rev-parse --short HEAD)"
echo
echo "| path | wall | CPU-s busy | CPU-s stolen |"
echo "|---|---:|---:|---:|"
for rep in $(seq 1 "$REPS"); do
    measure "raw local ($rep)" nx bvc1 sh -c 'btrfs -q send "$1" | btrfs -q receive "$2"' \
        sh "$snaps/$snap" "$data/rawrecv"
    node_delete bvc1 "$data/rawrecv/$snap"
    if [[ -n ${PERF:-} && $rep == "$REPS" ]]; then
        measure "ours ($rep, under perf)" perf record -q -a -o "$work/perf.data" -- \
            curl -sS --fail-with-body --unix-socket /run/bvnodes/bvc1/btrfs.sock \
            -d "$send_body" http://localhost/VolumeDriver.Snapshot.Send
    else
        measure "ours ($rep)" api bvc1 /VolumeDriver.Snapshot.Send "$send_body"
    fi
    node_delete bvc2 "$snaps/$snap"
    node_delete bvc1 "$snaps/$snap@$ip"
done
if [[ -n ${PERF:-} ]]; then
    echo
    echo "CPU samples of the last send of ours, per process and object:"
    echo
    perf report -i "$work/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -12
fi
