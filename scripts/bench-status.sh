#!/usr/bin/env bash
# bench-status.sh - what `buttervolume status` and a /metrics scrape cost,
# and what a background size measurement costs.
#
# Starts one daemon on the test btrfs (scripts/test-btrfs.sh) with its own
# dirs under $BUTTERVOLUME_TEST_BTRFS/bench-status.<pid>/ and its metrics
# listener on 127.0.0.1 (a free port), then, with a python3 client (stdlib,
# one connection per request, time = request sent -> reply read):
#   1. VOLUMES volumes with SNAPSHOTS snapshots each, and a sent marker for
#      every volume (made as the daemon makes them: a read-only snapshot of
#      the snapshot, `btrfs subvolume snapshot -r`), so every peer row is
#      computed;
#   2. RUNS calls of /VolumeDriver.Status and RUNS scrapes of /metrics
#      (p50, max), after a first call that queues the size measurements
#      (measured in the background, never while the call waits);
#   3. one more volume with FILES small files: how long its background size
#      measurement takes (the daemon's own log line), next to `du -s`.
# Prints a markdown table.
#
# Usage: scripts/bench-status.sh
# Environment: BV_BINARY (default: target/release/buttervolume, built
# first), BUTTERVOLUME_TEST_BTRFS (default /mnt/buttervolume-test), sizes
# VOLUMES=100 SNAPSHOTS=20 RUNS=20 FILES=100000.
# Needs root. Cleans up (daemon, subvolumes, work dir) on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mnt=${BUTTERVOLUME_TEST_BTRFS:-/mnt/buttervolume-test}
VOLUMES=${VOLUMES:-100}
SNAPSHOTS=${SNAPSHOTS:-20}
RUNS=${RUNS:-20}
FILES=${FILES:-100000}

die() { echo "bench-status.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root"
[[ $(stat -f -c %T "$mnt" 2>/dev/null) == btrfs ]] ||
    die "$mnt is not btrfs: run scripts/test-btrfs.sh first"
if [[ -n ${BV_BINARY:-} ]]; then
    bin=$BV_BINARY
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    bin=$repo/target/release/buttervolume
fi

work=$mnt/bench-status.$$
daemon=

cleanup() {
    trap - EXIT INT TERM
    if [[ -n $daemon ]]; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    if [[ -d $work ]]; then
        find "$work" -mindepth 2 -maxdepth 2 -depth -type d -inum 256 -print0 |
            xargs -0 -r -n 500 btrfs property set -ts ro false 2>/dev/null || true
        find "$work" -mindepth 2 -maxdepth 2 -depth -type d -inum 256 -print0 |
            xargs -0 -r -n 500 btrfs subvolume delete >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT INT TERM

mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env BUTTERVOLUME_VOLUMES_PATH="$work/volumes/" BUTTERVOLUME_SNAPSHOTS_PATH="$work/snapshots/" \
    BUTTERVOLUME_TEST_REMOTE_PATH="$work/received/" BUTTERVOLUME_STATE_PATH="$work/state/" \
    BUTTERVOLUME_SCHEDULE="$work/config/schedule.csv" BUTTERVOLUME_SOCKET="$work/bv.sock" \
    BUTTERVOLUME_DOCKER_SOCKET="$work/no-docker.sock" BUTTERVOLUME_RUNPATH="$work/run" \
    BUTTERVOLUME_SSH_DIR="$work/ssh" BUTTERVOLUME_METRICS_ADDR="127.0.0.1:$port" \
    RUST_LOG=info,buttervolume::status=debug \
    "$bin" run >"$work/daemon.log" 2>&1 &
daemon=$!

python3 - "$work" "$port" "$VOLUMES" "$SNAPSHOTS" "$RUNS" "$FILES" <<'EOF'
import http.client, json, os, socket, statistics, subprocess, sys, time

work, port, volumes, snapshots, runs, files = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
sock = os.path.join(work, "bv.sock")

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock)

def call(path, body=None):
    c = Unix("localhost")
    c.request("POST", path, json.dumps(body or {}))
    reply = json.loads(c.getresponse().read())
    c.close()
    if reply.get("Err"):
        raise SystemExit(f"{path} {body}: {reply['Err']}")
    return reply

def scrape():
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, body
    return body

for _ in range(200):
    try:
        call("/Plugin.Activate")
        break
    except OSError:
        time.sleep(0.05)

for v in range(volumes):
    name = f"v{v:04d}"
    call("/VolumeDriver.Create", {"Name": name})
    for s in range(snapshots):
        snap = call("/VolumeDriver.Snapshot", {"Name": name})["Snapshot"]
    subprocess.run(["btrfs", "subvolume", "snapshot", "-r", f"{work}/snapshots/{snap}",
                    f"{work}/snapshots/{snap}@10.9.0.2"], check=True, capture_output=True)

def timed(f):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out), max(out)

first = time.perf_counter()
status = call("/VolumeDriver.Status")
first = (time.perf_counter() - first) * 1000
assert len(status["Volumes"]) == volumes
assert all(v["Peers"][0]["LagSeconds"] == 0 for v in status["Volumes"])
st = timed(lambda: call("/VolumeDriver.Status"))
page = scrape()
me = timed(scrape)

# A volume with many small files: its background measurement.
call("/VolumeDriver.Create", {"Name": "many"})
root = f"{work}/volumes/many"
for d in range(files // 1000):
    os.mkdir(f"{root}/d{d}")
    for f in range(1000):
        with open(f"{root}/d{d}/f{f}", "wb") as fh:
            fh.write(b"x" * 100)
subprocess.run(["sync"], check=True)
t = time.perf_counter()
du = subprocess.run(["du", "-s", "-B1", root], check=True, capture_output=True, text=True)
du_ms = (time.perf_counter() - t) * 1000
call("/VolumeDriver.Status")
deadline = time.time() + 600
while time.time() < deadline:
    v = [v for v in call("/VolumeDriver.Status")["Volumes"] if v["Name"] == "many"][0]
    if v["SizeBytes"] is not None:
        break
    time.sleep(0.2)
walk_ms = None
with open(f"{work}/daemon.log") as log:
    for line in log:
        if "volume size measured" in line and "volume=\"many\"" in line or ("volume size measured" in line and " volume=many" in line):
            walk_ms = line.rsplit("ms=", 1)[1].split()[0]

print(f"| what | figure |")
print(f"|---|---|")
print(f"| volumes × snapshots (+1 sent marker each) | {volumes} × {snapshots} (+{volumes}) |")
print(f"| first Status (queues {volumes} size measurements) | {first:.1f} ms |")
print(f"| Status, {runs} calls | p50 {st[0]:.1f} ms, max {st[1]:.1f} ms ({len(json.dumps(status))} bytes) |")
print(f"| /metrics scrape, {runs} calls | p50 {me[0]:.1f} ms, max {me[1]:.1f} ms ({len(page)} bytes) |")
print(f"| background size of a volume of {files} files of 100 B | {walk_ms} ms (SizeBytes {v['SizeBytes']}; `du -s -B1` {du.stdout.split()[0]} in {du_ms:.0f} ms) |")
EOF
