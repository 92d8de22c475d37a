#!/usr/bin/env bash
# bench-volumes.sh - local API latency of our daemon vs the reference
# buttervolume 3.13 (Python), side by side in one run.
#
# Starts two daemons on the test btrfs (scripts/test-btrfs.sh), each with its
# own fresh VOLUMES_PATH/SNAPSHOTS_PATH/STATE_PATH/SCHEDULE/SOCKET under
#   $BUTTERVOLUME_TEST_BTRFS/bench-volumes.<pid>/{ours,ref}/
# and drives both with the same python3 client (stdlib http.client over the
# unix socket, one connection per request like Docker; the time measured is
# request sent -> reply read, no process spawn). The daemons run one after
# the other (ours, then the reference), each alone on the filesystem: after
# the first one's phases its subvolumes are deleted and `btrfs subvolume
# sync` waits until btrfs has cleaned them up. (The reference runs `btrfs
# subvolume show` for every volume it checks, and that scans every
# subvolume of the filesystem: the other daemon's 5,000 snapshots would
# slow it down.) Phases, for each daemon:
#   1. Create: VOLUMES volumes (latency of each create, p50/p95)
#   2. List with VOLUMES volumes (LIST_RUNS calls), Get (GET_RUNS calls)
#   3. Snapshot: SNAPSHOTS snapshots of one volume (p50/p95)
#   4. fill SNAPSHOTS_PATH to SNAPSHOT_LIST_TOTAL entries with each daemon's
#      own Snapshot API (a tight loop), then Snapshot.List (LIST_RUNS calls)
#   5. Restore (Snapshot.Restore of a named snapshot) and Clone, RESTORE_RUNS each
#   6. VmRSS / VmHWM of each daemon process from /proc/<pid>/status
# Prints a markdown table (also saved as bench-volumes.md in the work dir
# until cleanup; pass --keep-results DIR to copy it out).
#
# Docker is kept out of the loop: BUTTERVOLUME_DOCKER_SOCKET points to a
# missing file, so our daemon does not look labels up after Create (the
# reference never talks to Docker). Both schedulers are idle (empty schedule).
#
# Usage: scripts/bench-volumes.sh [--keep-results DIR]
# Environment: BV_BINARY (default: target/release/buttervolume, built with
# `cargo build --release` first), BV_REFERENCE (default
# /opt/bv-ref/bin/buttervolume, see scripts/reference-venv.sh),
# BUTTERVOLUME_TEST_BTRFS (default /mnt/buttervolume-test), and the sizes
# VOLUMES=200 SNAPSHOTS=100 SNAPSHOT_LIST_TOTAL=5000 LIST_RUNS=10
# GET_RUNS=200 RESTORE_RUNS=20.
# Needs root. Cleans up (daemons, subvolumes, work dir) on exit, even on error.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mnt=${BUTTERVOLUME_TEST_BTRFS:-/mnt/buttervolume-test}
reference=${BV_REFERENCE:-/opt/bv-ref/bin/buttervolume}
VOLUMES=${VOLUMES:-200}
SNAPSHOTS=${SNAPSHOTS:-100}
SNAPSHOT_LIST_TOTAL=${SNAPSHOT_LIST_TOTAL:-5000}
LIST_RUNS=${LIST_RUNS:-10}
GET_RUNS=${GET_RUNS:-200}
RESTORE_RUNS=${RESTORE_RUNS:-20}
keep_results=

while [[ $# -gt 0 ]]; do
    case $1 in
        --keep-results) keep_results=$2; shift 2 ;;
        *) echo "usage: $0 [--keep-results DIR]" >&2; exit 2 ;;
    esac
done

die() { echo "bench-volumes.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root"
[[ $(stat -f -c %T "$mnt" 2>/dev/null) == btrfs ]] ||
    die "$mnt is not btrfs: run scripts/test-btrfs.sh first"
[[ -x $reference ]] || die "reference missing ($reference): run scripts/reference-venv.sh"
command -v python3 >/dev/null || die "python3 is needed"

if [[ -n ${BV_BINARY:-} ]]; then
    ours=$BV_BINARY
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    ours=$repo/target/release/buttervolume
fi
[[ -x $ours ]] || die "not an executable: $ours"

work=$mnt/bench-volumes.$$
declare -A pid=()

# Deletes every subvolume under $1 (children first), then the directory.
delete_tree() {
    local dir=$1 sv
    [[ -d $dir ]] || return 0
    find "$dir" -mindepth 2 -maxdepth 4 -depth -type d -inum 256 -print0 |
        xargs -0 -r -n 500 btrfs subvolume delete >/dev/null 2>&1 || true
    # Read-only leftovers that refused deletion: make writable, retry.
    while IFS= read -r -d '' sv; do
        btrfs property set -ts "$sv" ro false >/dev/null 2>&1 || true
        btrfs subvolume delete "$sv" >/dev/null 2>&1 || echo "cleanup: cannot delete $sv" >&2
    done < <(find "$dir" -mindepth 2 -maxdepth 4 -depth -type d -inum 256 -print0)
    rm -rf "$dir"
}

stop_daemon() {
    local who=$1 p=${pid[$1]:-} i
    [[ -n $p ]] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "pid[$who]"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_daemon ours
    stop_daemon ref
    if [[ $status != 0 && -d $work ]]; then
        for who in ours ref; do
            [[ -f $work/$who/daemon.log ]] || continue
            echo "--- $who daemon log (tail) ---" >&2
            tail -n 20 "$work/$who/daemon.log" >&2
        done
    fi
    if [[ -d $work ]]; then
        log "cleaning up $work (deleting subvolumes)"
        delete_tree "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- daemons

# start_daemon <ours|ref> <binary>: fresh dirs, env, wait for the socket.
start_daemon() {
    local who=$1 binary=$2 dir=$work/$1 i
    mkdir -p "$dir/volumes" "$dir/snapshots" "$dir/state" "$dir/config" "$dir/received"
    : >"$dir/config/schedule.csv"
    env BUTTERVOLUME_VOLUMES_PATH="$dir/volumes/" \
        BUTTERVOLUME_SNAPSHOTS_PATH="$dir/snapshots/" \
        BUTTERVOLUME_TEST_REMOTE_PATH="$dir/received/" \
        BUTTERVOLUME_STATE_PATH="$dir/state/" \
        BUTTERVOLUME_SCHEDULE="$dir/config/schedule.csv" \
        BUTTERVOLUME_SOCKET="$dir/bv.sock" \
        BUTTERVOLUME_DOCKER_SOCKET="$dir/no-docker.sock" \
        "$binary" run </dev/null >"$dir/daemon.log" 2>&1 &
    pid[$who]=$!
    for ((i = 0; i < 100; i++)); do
        if [[ -S $dir/bv.sock ]] && python3 "$work/bvbench.py" ping "$dir/bv.sock" 2>/dev/null; then
            return 0
        fi
        kill -0 "${pid[$who]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/daemon.log" >&2
    die "$who daemon did not answer on $dir/bv.sock"
}

mkdir -p "$work"
# A private copy: a rebuild during the run must not swap the binary.
cp "$ours" "$work/buttervolume"
ours_built=$ours
ours=$work/buttervolume

# ---------------------------------------------------------------- client
# One python3 process per phase and daemon; each prints JSON result lines.
cat >"$work/bvbench.py" <<'PY'
"""Timing client for a buttervolume socket (stdlib only)."""
import http.client, json, math, os, socket, statistics, sys, time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=600)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(600)
        s.connect(self.unix_path)
        self.sock = s


def call(sock, path, body=None, method="POST"):
    """One request on a fresh connection; returns (seconds, reply)."""
    conn = UnixConnection(sock)
    data = json.dumps(body) if body is not None else ""
    t0 = time.perf_counter()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    raw = conn.getresponse().read()
    dt = time.perf_counter() - t0
    conn.close()
    reply = json.loads(raw)
    if reply.get("Err"):
        sys.exit(f"{path} {body}: {reply['Err']}")
    return dt, reply


def pct(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def emit(who, metric, values, unit="ms", **extra):
    ms = [v * 1000 for v in values]
    out = {"daemon": who, "metric": metric, "n": len(ms), "unit": unit,
           "p50": statistics.median(ms), "p95": pct(ms, 95),
           "min": min(ms), "max": max(ms), "total_s": sum(values)}
    out.update(extra)
    print(json.dumps(out), flush=True)


def main():
    cmd, *args = sys.argv[1:]
    if cmd == "ping":
        call(args[0], "/Plugin.Activate", {})
        return
    who, sock = args[0], args[1]
    if cmd == "create":
        n = int(args[2])
        times = [call(sock, "/VolumeDriver.Create", {"Name": f"bench-{i:04d}"})[0] for i in range(n)]
        emit(who, "create", times)
        # Latency as the number of volumes grows (last 20 creates).
        emit(who, "create_last20", times[-20:])
    elif cmd == "list":
        runs = int(args[2])
        times, count = [], 0
        for _ in range(runs):
            dt, reply = call(sock, "/VolumeDriver.List", {})
            times.append(dt)
            count = len(reply["Volumes"])
        emit(who, "list", times, entries=count)
    elif cmd == "get":
        runs, nvol = int(args[2]), int(args[3])
        times = [call(sock, "/VolumeDriver.Get", {"Name": f"bench-{i % nvol:04d}"})[0] for i in range(runs)]
        emit(who, "get", times)
    elif cmd == "snapshot":
        vol, n = args[2], int(args[3])
        times = [call(sock, "/VolumeDriver.Snapshot", {"Name": vol})[0] for _ in range(n)]
        emit(who, "snapshot", times)
    elif cmd == "fill":
        # Snapshots until SNAPSHOTS_PATH holds `total` entries.
        vol, total = args[2], int(args[3])
        _, reply = call(sock, "/VolumeDriver.Snapshot.List", method="GET")
        missing = total - len(reply["Snapshots"])
        t0 = time.perf_counter()
        times = [call(sock, "/VolumeDriver.Snapshot", {"Name": vol})[0] for _ in range(max(0, missing))]
        wall = time.perf_counter() - t0
        if times:
            emit(who, "snapshot_fill", times, created=len(times), per_s=len(times) / wall)
    elif cmd == "snaplist":
        runs = int(args[2])
        times, count = [], 0
        for _ in range(runs):
            dt, reply = call(sock, "/VolumeDriver.Snapshot.List", method="GET")
            times.append(dt)
            count = len(reply["Snapshots"])
        emit(who, "snapshot_list", times, entries=count)
    elif cmd == "restore":
        vol, runs = args[2], int(args[3])
        _, reply = call(sock, f"/VolumeDriver.Snapshot.List/{vol}", method="GET")
        first = sorted(reply["Snapshots"])[0]
        times = [call(sock, "/VolumeDriver.Snapshot.Restore", {"Name": first})[0] for _ in range(runs)]
        emit(who, "restore", times)
    elif cmd == "clone":
        vol, runs = args[2], int(args[3])
        times = [call(sock, "/VolumeDriver.Clone", {"Name": vol, "Target": f"clone-{i:03d}"})[0]
                 for i in range(runs)]
        emit(who, "clone", times)
    elif cmd == "rss":
        p = args[2]
        status = dict(l.split(":", 1) for l in open(f"/proc/{p}/status") if ":" in l)
        kib = lambda k: int(status[k].split()[0])
        print(json.dumps({"daemon": who, "metric": "rss", "VmRSS_kib": kib("VmRSS"),
                          "VmHWM_kib": kib("VmHWM")}))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
PY

# Renders the JSON lines as the markdown table.
cat >"$work/table.py" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["daemon"], r["metric"])] = r
def get(who, metric, key):
    r = rows.get((who, metric))
    return None if r is None else r.get(key)
def fmt(v, unit):
    if v is None: return "n/a"
    if unit == "ms": return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "s": return f"{v:.1f} s"
    if unit == "MiB": return f"{v / 1024:.1f} MiB"
    if unit == "/s": return f"{v:.0f}/s"
    return str(v)
n = lambda m, k: get("ours", m, k)
lines = [
    ("Create p50 (%s volumes, one by one)" % n("create", "n"), "create", "p50", "ms", ""),
    ("Create p95", "create", "p95", "ms", ""),
    ("Create p50 of the last 20 (%d..%d existing)" % (n("create", "n") - 20, n("create", "n") - 1), "create_last20", "p50", "ms", ""),
    ("Create, all %s volumes" % n("create", "n"), "create", "total_s", "s", ""),
    ("List p50 (%s volumes)" % n("list", "entries"), "list", "p50", "ms", ""),
    ("Get p50", "get", "p50", "ms", ""),
    ("Snapshot p50 (%s snapshots)" % n("snapshot", "n"), "snapshot", "p50", "ms", "ours >= 3x faster"),
    ("Snapshot p95", "snapshot", "p95", "ms", ""),
    ("Snapshot rate filling SNAPSHOTS_PATH (tight loop)", "snapshot_fill", "per_s", "/s", ""),
    ("Snapshot.List p50 (%s entries)" % n("snapshot_list", "entries"), "snapshot_list", "p50", "ms", "ours < 20 ms"),
    ("Snapshot.List p95", "snapshot_list", "p95", "ms", ""),
    ("Restore p50 (%s restores of a named snapshot)" % n("restore", "n"), "restore", "p50", "ms", ""),
    ("Clone p50 (%s clones)" % n("clone", "n"), "clone", "p50", "ms", ""),
    ("Daemon RSS after the run (VmRSS)", "rss", "VmRSS_kib", "MiB", ""),
    ("Daemon peak RSS (VmHWM)", "rss", "VmHWM_kib", "MiB", ""),
]
print("| measurement | ours | reference 3.13 | reference / ours | target |")
print("|---|---:|---:|---:|---|")
for label, metric, key, unit, target in lines:
    o, r = get("ours", metric, key), get("ref", metric, key)
    ratio = "n/a"
    if o and r:
        ratio = f"{(o / r if unit == '/s' else r / o):.1f}x"
    print(f"| {label} | {fmt(o, unit)} | {fmt(r, unit)} | {ratio} | {target} |")
PY

results=$work/results.jsonl
: >"$results"
bench() { python3 "$work/bvbench.py" "$@" | tee -a "$results" >&2; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "our binary: $ours; reference: $reference; work dir: $work"

# All phases for one daemon, alone on the filesystem.
run_daemon() {
    local who=$1 binary=$2 sock=$work/$1/bv.sock v i
    start_daemon "$who" "$binary"
    log "$who: create $VOLUMES volumes"
    bench create "$who" "$sock" "$VOLUMES"
    log "$who: list x$LIST_RUNS, get x$GET_RUNS"
    bench list "$who" "$sock" "$LIST_RUNS"
    bench get "$who" "$sock" "$GET_RUNS" "$VOLUMES"
    # Some content in the volume that gets snapshotted, restored and cloned.
    v=$work/$who/volumes/bench-0000
    mkdir -p "$v/dir"
    for i in $(seq 1 50); do echo "file $i" >"$v/dir/f$i"; done
    head -c 4M /dev/urandom >"$v/blob"
    sync
    log "$who: $SNAPSHOTS snapshots"
    bench snapshot "$who" "$sock" bench-0000 "$SNAPSHOTS"
    log "$who: filling SNAPSHOTS_PATH to $SNAPSHOT_LIST_TOTAL entries (Snapshot API, tight loop)"
    bench fill "$who" "$sock" bench-0001 "$SNAPSHOT_LIST_TOTAL"
    log "$who: Snapshot.List x$LIST_RUNS"
    bench snaplist "$who" "$sock" "$LIST_RUNS"
    log "$who: restore x$RESTORE_RUNS, clone x$RESTORE_RUNS"
    bench restore "$who" "$sock" bench-0000 "$RESTORE_RUNS"
    bench clone "$who" "$sock" bench-0000 "$RESTORE_RUNS"
    bench rss "$who" "$sock" "${pid[$who]}"
    stop_daemon "$who"
    log "$who: deleting its subvolumes, waiting for btrfs to clean them up"
    delete_tree "$work/$who"
    timeout 600 btrfs subvolume sync "$mnt" >/dev/null || log "btrfs subvolume sync timed out"
    sync
}

run_daemon ours "$ours"
run_daemon ref "$reference"

{
    echo "Run $(date -u '+%F %T UTC'), $(nproc) cores, kernel $(uname -r), btrfs on $(findmnt -n -o SOURCE "$mnt") ($mnt)"
    echo "ours: $ours_built (built $(date -u -r "$ours_built" '+%F %T UTC'), sha256 $(sha256sum "$ours" | cut -c1-12); repo at $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' with uncommitted changes in src/'))"
    echo "reference: $reference"
    echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
    echo
    python3 "$work/table.py" "$results"
} | tee "$work/bench-volumes.md"
if [[ -n $keep_results ]]; then
    mkdir -p "$keep_results"
    cp "$work/bench-volumes.md" "$results" "$keep_results/"
fi
