#!/usr/bin/env bash
# Where a Snapshot request's time goes, on the test btrfs: one python3
# process alternates, ROUNDS times, (1) the bare BTRFS_IOC_SNAP_CREATE_V2
# ioctl (read-only snapshot), (2) our daemon's /VolumeDriver.Snapshot over its
# unix socket, (3) `btrfs subvolume snapshot -r` run through `sh -c`, which is
# what the reference does per snapshot (without its HTTP layer), and prints
# the p50 of each. Usage: scripts/bench-snapshot-breakdown.sh [ROUNDS]
# Environment: BV_BINARY (default target/release/buttervolume),
# BUTTERVOLUME_TEST_BTRFS (default /mnt/buttervolume-test).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-60}
bin=${BV_BINARY:-$repo/target/release/buttervolume}
[ -x "$bin" ] || (cd "$repo" && cargo build --release --quiet)
mnt=${BUTTERVOLUME_TEST_BTRFS:-/mnt/buttervolume-test}
work=$mnt/snapshot-breakdown.$$
mkdir -p "$work/raw"
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    for s in "$work"/raw/* "$work"/snapshots/* "$work"/volumes/*; do
        [ -d "$s" ] && btrfs subvolume delete "$s" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

export BUTTERVOLUME_VOLUMES_PATH=$work/volumes/ BUTTERVOLUME_SNAPSHOTS_PATH=$work/snapshots/ \
    BUTTERVOLUME_STATE_PATH=$work/state BUTTERVOLUME_SCHEDULE=$work/config/schedule.csv \
    BUTTERVOLUME_SOCKET=$work/bv.sock BUTTERVOLUME_DOCKER_SOCKET=$work/no-docker.sock LOGLEVEL=WARNING
"$bin" run >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$work/bv.sock" ] && break; sleep 0.1; done

python3 - "$work" "$rounds" <<'PY'
import fcntl, os, socket, statistics, struct, subprocess, sys, time
work, rounds = sys.argv[1], int(sys.argv[2])
sock = os.path.join(work, "bv.sock")

def call(path, body):
    s = socket.socket(socket.AF_UNIX); s.connect(sock)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
              % (path.encode(), len(body), body))
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    assert b'"Err":""' in out, out

call("/VolumeDriver.Create", b'{"Name":"v"}')
vol = os.path.join(work, "volumes", "v")
raw = os.path.join(work, "raw")
# struct btrfs_ioctl_vol_args_v2: fd, transid, flags, 32 bytes union, name[4040]
SNAP_CREATE_V2 = 0x50009417
RDONLY = 1 << 1
src = os.open(vol, os.O_RDONLY)
dst = os.open(raw, os.O_RDONLY)
times = {"ioctl": [], "daemon": [], "btrfs CLI via sh -c": []}
for i in range(rounds):
    args = bytearray(struct.pack("=qQQ32s4040s", src, 0, RDONLY, b"", b"s%d" % i))
    t = time.perf_counter(); fcntl.ioctl(dst, SNAP_CREATE_V2, args); times["ioctl"].append(time.perf_counter() - t)
    t = time.perf_counter(); call("/VolumeDriver.Snapshot", b'{"Name":"v"}'); times["daemon"].append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run('btrfs subvolume snapshot -r "%s" "%s/c%d"' % (vol, raw, i), shell=True, check=True, stdout=subprocess.DEVNULL)
    times["btrfs CLI via sh -c"].append(time.perf_counter() - t)
for name, values in times.items():
    print("%-22s p50 %.2f ms" % (name, statistics.median(values) * 1000))
PY
