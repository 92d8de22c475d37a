#!/usr/bin/env bash
# probe-transport.sh - the SSH transports a full send can take, side by
# side in one run on the same two nodes, the same snapshot, the same
# receiving forced command (tests/nodes/nodes.sh nodes bvt1 -> bvt2; bvt2
# authorizes bvt1's key with `<binary> ssh-command`):
#
#   openssh    `btrfs send S | ssh -c aes128-gcm@openssh.com bvt2
#              "buttervolume receive"` inside bvt1: OpenSSH's client fed by
#              the btrfs CLI, the figure btrbk users get (the target)
#   ours       Snapshot.Send with SEND_TRANSPORT=auto (the default): the
#              send ioctl's pipe spliced into OpenSSH's `ssh`
#   libssh2    Snapshot.Send with SEND_TRANSPORT=libssh2: the stream
#              through the in-process libssh2 session (chacha20-poly1305,
#              the fastest cipher libssh2 1.11 has here), as before
#
# REPS repetitions, the candidates alternating inside each (the daemon is
# restarted with the candidate's SEND_TRANSPORT before its run). Before each
# run the copy on bvt2 and the sent marker are deleted and everything is
# synced. Measured per run: wall time from request to reply (the reply
# comes once bvt2's receive has finished), the machine's busy CPU seconds
# with steal excluded (both nodes' work: sender, ssh, sshd, receive) and
# the stolen seconds (/proc/stat). Then an incremental: CHANGE_MIB MiB
# overwritten, Snapshot + Snapshot.Send with the default transport, REPS
# times.
#
# Usage: scripts/probe-transport.sh
# Environment: BV_BINARY (default target/release/buttervolume, built),
# REPS=3, DATA_MIB=1024, CHANGE_MIB=10, IMAGE_SIZE=4G. Needs root, python3.
# shellcheck disable=SC2016  # single-quoted sh -c scripts expand in the child
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
REPS=${REPS:-3}
DATA_MIB=${DATA_MIB:-1024}
CHANGE_MIB=${CHANGE_MIB:-10}
IMAGE_SIZE=${IMAGE_SIZE:-4G}
a=bvt1
b=bvt2
work=/var/tmp/probe-transport.$$
data=/var/lib/buttervolume
snaps=$data/snapshots

die() { echo "probe-transport.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
[[ $(id -u) == 0 ]] || die "must run as root"

if [[ -n ${BV_BINARY:-} ]]; then
    built=$(realpath "$BV_BINARY")
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    built=$repo/target/release/buttervolume
fi

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ $status != 0 && -f /run/bvnodes/$a/daemon.log ]]; then
        echo "--- $a daemon log (tail) ---" >&2
        tail -n 20 "/run/bvnodes/$a/daemon.log" >&2
    fi
    "$nodes" down bvt >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work"
cp "$built" "$work/buttervolume"
ours=$work/buttervolume

nx() { "$nodes" exec "$@"; }
sock=/run/bvnodes/$a/btrfs.sock
call() { # call PATH JSON: prints the reply, fails on Err
    python3 - "$sock" "$1" "$2" <<'PY'
import http.client, json, socket, sys
class U(http.client.HTTPConnection):
    def __init__(s, p): super().__init__("localhost", timeout=3600); s.p = p
    def connect(s): s.sock = socket.socket(socket.AF_UNIX); s.sock.connect(s.p)
c = U(sys.argv[1]); c.request("POST", sys.argv[2], sys.argv[3])
r = json.loads(c.getresponse().read())
if r.get("Err"): sys.exit(f"{sys.argv[2]}: {r['Err']}")
print(json.dumps(r))
PY
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
node_delete() {
    local node=$1; shift
    nx "$node" sh -c 'for s; do [ -e "$s" ] && btrfs subvolume delete "$s" >/dev/null; done
        btrfs subvolume sync /var/lib/buttervolume >/dev/null; sync' sh "$@"
}
restart_with() {
    "$nodes" daemon-stop "$a" >/dev/null
    "$nodes" daemon-start "$a" "$ours" "BUTTERVOLUME_SEND_TRANSPORT=$1" >/dev/null
}

log "nodes up"
"$nodes" down bvt >/dev/null 2>&1 || true
export BVNODES_PREALLOCATE=1
"$nodes" up bvt 2 "$IMAGE_SIZE" >/dev/null
if [[ -f /root/.bashrc ]]; then # see bench-replication.sh: sshd sources it
    : >"$work/empty-bashrc"
    for node in $a $b; do nx "$node" mount --bind "$work/empty-bashrc" /root/.bashrc; done
fi
"$nodes" pair "$a" "$b" "$ours ssh-command" >/dev/null
"$nodes" daemon-start "$b" "$ours" >/dev/null
"$nodes" daemon-start "$a" "$ours" >/dev/null
ip=$("$nodes" ip "$b")

log "writing $DATA_MIB MiB of random data"
call /VolumeDriver.Create '{"Name": "big"}' >/dev/null
head -c "${DATA_MIB}M" /dev/urandom >"$work/data.bin"
nx "$a" cp "$work/data.bin" "$data/volumes/big/data"
nx "$a" sync
snap=$(call /VolumeDriver.Snapshot '{"Name": "big"}' | field Snapshot)
send_body="{\"Name\": \"$snap\", \"Host\": \"$ip\"}"

results=$work/results.jsonl
: >"$results"
run() { # run CANDIDATE REP
    local who=$1 rep=$2 c0 s0 c1 s1 t0 t1
    node_delete "$b" "$snaps/$snap"
    node_delete "$a" "$snaps/$snap@$ip"
    nx "$a" sync
    read -r c0 s0 < <(cpu_jiffies)
    t0=$EPOCHREALTIME
    case $who in
        openssh)
            nx "$a" sh -c 'btrfs -q send "$1" | ssh -F /dev/null -p 1122 -i /root/.ssh/id_ed25519 \
                -o IdentitiesOnly=yes -o BatchMode=yes -c aes128-gcm@openssh.com \
                -o UserKnownHostsFile=/root/.ssh/known_hosts "$2" "buttervolume receive" >/dev/null' \
                sh "$snaps/$snap" "$ip" ;;
        ours | libssh2) call /VolumeDriver.Snapshot.Send "$send_body" >/dev/null ;;
    esac
    t1=$EPOCHREALTIME
    read -r c1 s1 < <(cpu_jiffies)
    nx "$b" test -d "$snaps/$snap" || die "$who: $snap did not land"
    echo "{\"who\": \"$who\", \"rep\": $rep, \"seconds\": $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'), \"cpu_s\": $(((c1 - c0)))e-2, \"steal_s\": $(((s1 - s0)))e-2}" |
        tee -a "$results" >&2
}

for rep in $(seq 1 "$REPS"); do
    log "repetition $rep/$REPS"
    run openssh "$rep"
    restart_with auto
    run ours "$rep"
    restart_with libssh2
    run libssh2 "$rep"
done
restart_with auto

log "incremental: $CHANGE_MIB MiB changed, $REPS times"
head -c "${CHANGE_MIB}M" /dev/urandom >"$work/change.bin"
for rep in $(seq 1 "$REPS"); do
    nx "$a" dd if="$work/change.bin" of="$data/volumes/big/data" bs=1M seek=$((rep * 100)) conv=notrunc status=none
    nx "$a" sync
    t0=$EPOCHREALTIME
    s=$(call /VolumeDriver.Snapshot '{"Name": "big"}' | field Snapshot)
    summary=$(call /VolumeDriver.Snapshot.Send "{\"Name\": \"$s\", \"Host\": \"$ip\", \"Detail\": true}" | field Summary)
    t1=$EPOCHREALTIME
    [[ $summary == *incrementally* ]] || die "not incremental: $summary"
    # The send's own time, from its summary ("... MiB in 0.12 s ...").
    own=$(sed -n 's/.* MiB in \([0-9.]*\) s .*/\1/p' <<<"$summary")
    echo "{\"who\": \"incremental\", \"rep\": $rep, \"seconds\": $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'), \"send_s\": $own}" | tee -a "$results" >&2
done

{
    echo "Run $(date -u '+%F %T UTC'), $(nproc) cores, kernel $(uname -r), $(ssh -V 2>&1), repo at $(cd "$repo" && git rev-parse --short HEAD)"
    echo
    python3 - "$results" "$DATA_MIB" "$CHANGE_MIB" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gib = float(sys.argv[2]) / 1024
def of(who, key="seconds"):
    return [r[key] for r in rows if r["who"] == who]
base = {r["rep"]: r for r in rows if r["who"] == "openssh"}
print(f"Full send of {sys.argv[2]} MiB of random data, {len(base)} alternating repetitions:\n")
print("| candidate | median time | min..max | openssh time / this (median of per-repetition ratios) | openssh median / this median | CPU-s per GiB (median, steal excluded) | CPU vs openssh |")
print("|---|---:|---:|---:|---:|---:|---:|")
o_t, o_c = statistics.median(of("openssh")), statistics.median(of("openssh", "cpu_s"))
for who, label in [("openssh", "OpenSSH `btrfs send \\| ssh -c aes128-gcm`"), ("ours", "ours, SEND_TRANSPORT=auto (spliced into ssh)"), ("libssh2", "ours, SEND_TRANSPORT=libssh2")]:
    t = of(who)
    if not t:
        continue
    ratios = [base[r["rep"]]["seconds"] / r["seconds"] for r in rows if r["who"] == who and r["rep"] in base]
    per_rep = ", ".join(f"{x:.2f}" for x in ratios)
    c = statistics.median(of(who, "cpu_s"))
    print(f"| {label} | {statistics.median(t):.2f} s | {min(t):.2f}..{max(t):.2f} | {statistics.median(ratios):.2f} ({per_rep}) | {o_t / statistics.median(t):.2f} | {c / gib:.2f} | {c / o_c:.2f}x |")
steal = sum(r.get("steal_s", 0) for r in rows)
print(f"\nStolen by the hypervisor during the full sends: {steal:.1f} CPU-s.")
inc = of("incremental")
own = of("incremental", "send_s")
print(f"\nIncremental, {sys.argv[3]} MiB changed (default transport: the kept libssh2 session): the Send's own time (its summary) median {statistics.median(own):.3f} s (min..max {min(own):.3f}..{max(own):.3f}); Snapshot + Send from this script, two python3 start-ups included, median {statistics.median(inc):.3f} s.")
PY
} | tee "$work/probe.md"
