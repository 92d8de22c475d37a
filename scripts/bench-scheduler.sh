#!/usr/bin/env bash
# Scheduler benchmark: 1,000 volumes x 3 jobs all due, ours and the
# reference's side by side. Not part of CI; needs no root, no btrfs, no
# daemon: both schedulers run with fake jobs that only record when they
# start (and optionally sleep to simulate work).
#
#   ours:      cargo bench --bench scheduler (benches/scheduler.rs)
#   reference: buttervolume 3.13's cli.runjobs() (one scheduler tick) from
#              its venv, with cli.snapshot/send/purge replaced by the same
#              fakes, BUTTERVOLUME_* pointing at a temp dir.
#
# Usage: scripts/bench-scheduler.sh [--volumes N] [--ours-only|--reference-only]
# Environment: BUTTERVOLUME_REFERENCE_VENV (default /opt/bv-ref).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
volumes=1000
do_ours=true
do_ref=true
while [[ $# -gt 0 ]]; do
    case $1 in
        --volumes) volumes=$2; shift 2 ;;
        --ours-only) do_ref=false; shift ;;
        --reference-only) do_ours=false; shift ;;
        *) echo "usage: $0 [--volumes N] [--ours-only|--reference-only]" >&2; exit 2 ;;
    esac
done
venv=${BUTTERVOLUME_REFERENCE_VENV:-/opt/bv-ref}

if $do_ours; then
    (cd "$repo" && cargo bench --quiet --bench scheduler -- --volumes "$volumes")
fi

if $do_ref; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/config"
    echo
    echo "## Reference (buttervolume 3.13 runjobs()), same jobs and fakes"
    echo
    # Its logging goes to stderr at INFO: discarded, as ours goes to a sink.
    BUTTERVOLUME_SCHEDULE="$tmp/config/schedule.csv" \
    BUTTERVOLUME_SOCKET="$tmp/none.sock" \
    BUTTERVOLUME_VOLUMES_PATH="$tmp/volumes/" \
    BUTTERVOLUME_SNAPSHOTS_PATH="$tmp/snapshots/" \
    "$venv/bin/python" - "$volumes" "$tmp/config/schedule.csv" 2>/dev/null <<'EOF'
import statistics, sys, time
import buttervolume.cli as cli

volumes, path = int(sys.argv[1]), sys.argv[2]
jobs = [("snapshot", 60), ("replicate:peer", 60), ("purge:1h:1d:1w:4w:1y", 1440)]
with open(path, "w") as f:
    for v in range(volumes):
        for action, minutes in jobs:
            f.write(f"vol{v:04},{action},{minutes},True\r\n")
n = volumes * len(jobs)
starts = []
work = {"snapshot": 0.0, "send": 0.0, "purge": 0.0}

def pause(s):
    if s:
        time.sleep(s)

def snapshot(args, test=False):
    starts.append(time.time()); pause(work["snapshot"]); return f"{args.name[0]}@now"
def send(args, test=False):
    pause(work["send"]); return True
def purge(args, test=False):
    starts.append(time.time()); pause(work["purge"]); return True
cli.snapshot, cli.send, cli.purge = snapshot, send, purge

def ms(s):
    return f"{s * 1000:.2f} ms"

def tick(label):
    starts.clear()
    t0 = time.time()
    cli.runjobs(config=path)
    total = time.time() - t0
    lags = sorted(s - t0 for s in starts)
    assert len(lags) == n, (len(lags), n)
    p99 = lags[round((len(lags) - 1) * 0.99)]
    print(f"| {label} | {ms(total)} | {ms(statistics.median(lags))} / {ms(p99)} / {ms(lags[-1])} |",
          flush=True)

print(f"{volumes} volumes x 3 jobs = {n} jobs. runjobs() runs the due jobs itself, one after the")
print("other, so its tick lasts as long as all of them together.\n")
print("| simulated work | runjobs() duration (the tick) | start lag median / p99 / max |")
print("|---|---|---|")
tick("none")
tick("none, again (every job runs at every tick)")
work.update(snapshot=0.001, send=0.005, purge=0.001)
tick("snapshot 1 ms, send 5 ms, purge 1 ms")
EOF
fi
