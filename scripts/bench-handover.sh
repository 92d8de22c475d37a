#!/usr/bin/env bash
# bench-handover.sh - the three figures of issue 13 in one run, on
# throw-away nodes made with tests/nodes/nodes.sh (network + mount
# namespace, loop btrfs, sshd on :1122 per node; see tests/nodes/README.md):
#
#   1. handover: `buttervolume handover <volume> <host>` moving a DATA_MIB
#      volume (replicated once) to the other node, ours vs the same move as
#      buttervolume 3.13 users script it with the reference CLI;
#   2. follow, mount-time pull: the first Mount on a node whose peer holds a
#      newer state (CHANGE_MIB written there and not pushed): ask, pull the
#      delta, restore, answer;
#   3. follow, unmount-time push: the last Unmount after the app wrote
#      CHANGE_MIB: snapshot and send the delta.
#
#   pair bho1 -> bho2   our daemon on both, paired both ways with our forced
#                       command `<binary> ssh-command`
#   pair bhr1 -> bhr2   the reference daemon on both, plain keys
#                       (`nodes.sh pair ... none`)
#
# The app is simulated on the node through the daemon's socket (no dockerd:
# what is measured is the daemon's answer): a Mount while it "runs", `dd`
# of CHANGE_MIB MiB from /dev/urandom into its DATA_MIB MiB file at a new
# offset (conv=notrunc, no sync: the app stops with its writes in the page
# cache), an Unmount when it "stops".
#
# 1. Handover, one volume `vol` (no replicate line: follow off), DATA_MIB
#    of random data on node 1, replicated once to node 2 (ours
#    /VolumeDriver.Replicate; reference snapshot + send). Each repetition
#    moves the app node 1 -> node 2:
#      ours: Mount (app runs), dd CHANGE_MIB (written since the last
#        replication), `/VolumeDriver.Handover` (presync: the app still
#        runs), dd CHANGE_MIB more (written since the presync), Unmount
#        (app stopped), `/VolumeDriver.Handover` again (final: its
#        CriticalSeconds and Bytes, and the call's own time), then
#        `/VolumeDriver.Snapshot.Restore <final snapshot>` on node 2 (what
#        the app's first Mount there, or the operator, does; the backup it
#        makes of node 2's previous copy is then deleted, not timed: left
#        there, it is a state made on node 2 that node 1 never saw, and the
#        next send would be refused as to a peer that moved on);
#      reference: the same writes; `buttervolume snapshot vol` + `send`
#        while it runs; after the stop `snapshot` + `send` + `restore
#        <snapshot>` on node 2 (the reference CLI from /opt/bv-ref, run here
#        against the node's daemon socket) = its downtime-critical phase.
#    Bytes: the replies' Bytes (ours) and node 1's eth0 tx during the calls
#    (both).
# 2./3. Follow, volume `fol` on both nodes of our pair with the line
#    `replicate:<peer>=cron:0 0 1 1 *` (active, never runs during the
#    bench), DATA_MIB on node 1 replicated once to node 2. Each repetition:
#      node 1: dd CHANGE_MIB into fol, `/VolumeDriver.Snapshot` (a state
#        node 2 does not have: as when node 1's final push did not get
#        through);
#      node 2: Mount = the pull: ask node 1, pull the delta, restore
#        (checked: the log says pulled=true); timed, node 1's tx counted;
#      node 2: dd CHANGE_MIB, Unmount = the push: snapshot + send; timed,
#        node 2's tx counted;
#      node 1: Mount (restores what node 2 pushed) and Unmount (not timed),
#        so node 1's next state is built on node 2's.
#    One warm-up repetition first (not counted) for each of 1. and 2./3.
#
# Times are the requests' own (measured inside the HTTP client around the
# request, no process start-up), the reference's are its CLI calls (its
# users' cost, Python start-up included).
#
# Usage: scripts/bench-handover.sh [--keep-results DIR]
# Environment: BV_BINARY (default target/release/buttervolume, built with
# `flock /tmp/cargo.lock cargo build --release`), BV_REFERENCE (default
# /opt/bv-ref/bin/buttervolume, scripts/reference-venv.sh), REPS=3,
# DATA_MIB=1024, CHANGE_MIB=10, IMAGE_SIZE=5G (preallocated, nodiscard),
# KEEP_BASHRC=1 (do not mask the host's /root/.bashrc in the nodes).
# Needs root, the tools of tests/nodes/README.md, python3.
# Network: only the nodes' own 10.X.0.k addresses (inside their namespaces)
# and unix sockets. The host's dockerd, /var/lib/buttervolume and
# /run/docker/plugins are never touched.
# Cleans up on exit, even on error: `nodes.sh down` for both tags, the work
# dir /var/tmp/bench-handover.<pid>.
# shellcheck disable=SC2016  # single-quoted sh -c scripts expand in the child
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
reference=${BV_REFERENCE:-/opt/bv-ref/bin/buttervolume}
REPS=${REPS:-3}
DATA_MIB=${DATA_MIB:-1024}
CHANGE_MIB=${CHANGE_MIB:-10}
IMAGE_SIZE=${IMAGE_SIZE:-5G}
keep_results=

while [[ $# -gt 0 ]]; do
    case $1 in
        --keep-results) keep_results=$2; shift 2 ;;
        *) echo "usage: $0 [--keep-results DIR]" >&2; exit 2 ;;
    esac
done

die() { echo "bench-handover.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root"
[[ -x $reference ]] || die "reference missing ($reference): run scripts/reference-venv.sh"
command -v python3 >/dev/null || die "python3 is needed"
((DATA_MIB > 4 * CHANGE_MIB)) || die "DATA_MIB must exceed 4 * CHANGE_MIB"

if [[ -n ${BV_BINARY:-} ]]; then
    ours=$(realpath "$BV_BINARY")
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    ours=$repo/target/release/buttervolume
fi
[[ -x $ours ]] || die "not an executable: $ours"

work=/var/tmp/bench-handover.$$
data=/var/lib/buttervolume # inside a node
tags=(bho bhr)
all_nodes=(bho1 bho2 bhr1 bhr2)

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ $status != 0 ]]; then
        for node in "${all_nodes[@]}"; do
            [[ -f /run/bvnodes/$node/daemon.log ]] || continue
            echo "--- $node daemon log (tail) ---" >&2
            tail -n 15 "/run/bvnodes/$node/daemon.log" >&2
        done
    fi
    log "cleaning up (nodes.sh down ${tags[*]}, $work)"
    for tag in "${tags[@]}"; do "$nodes" down "$tag" >/dev/null 2>&1 || true; done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work"
# A private copy: a rebuild during the run must not swap the binary (the
# peer's forced command execs it anew for every SSH command).
cp "$ours" "$work/buttervolume"
ours_built=$ours
ours=$work/buttervolume

# ---------------------------------------------------------------- helpers
nx() { "$nodes" exec "$@"; }
sock() { echo "/run/bvnodes/$1/btrfs.sock"; }
ref_cli() {
    local node=$1
    shift
    BUTTERVOLUME_SOCKET=$(sock "$node") "$reference" "$@"
}
# api <node> <path> <json body>: the reply, with "_seconds": the request's
# own time (connect to reply read), into $reply.
reply=$work/reply.json
api() {
    python3 - "$(sock "$1")" "$2" "$3" >"$reply" <<'PY'
import http.client, json, socket, sys, time
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(3600)
        self.sock.connect(sys.argv[1])
c = C("localhost", timeout=3600)
t0 = time.monotonic()
c.request("POST", sys.argv[2], body=sys.argv[3], headers={"Content-Type": "application/json"})
reply = json.loads(c.getresponse().read())
reply["_seconds"] = time.monotonic() - t0
if reply.get("Err"):
    sys.exit(f"{sys.argv[2]} {sys.argv[3]}: {reply['Err']}")
print(json.dumps(reply))
PY
}
# minus <a> <b>: a - b (seconds).
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }
# field <key>: a field of the last reply.
field() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$reply" "$1"; }
declare -A daemon_pid=()
# The node's eth0 transmitted bytes (/proc/<daemon pid>/net/dev: the
# daemon lives in the node's network namespace).
tx_bytes() {
    local name rest
    local -a f
    REPLY=
    while read -r name rest; do
        if [[ $name == eth0: ]]; then
            read -ra f <<<"$rest"
            REPLY=${f[8]}
        fi
    done <"/proc/${daemon_pid[$1]}/net/dev"
    [[ -n $REPLY ]] || die "$1: no eth0 in /proc/${daemon_pid[$1]}/net/dev"
}
# write <node> <volume> <k>: the app writes CHANGE_MIB at the k-th offset.
write() {
    local seek=$((($3 * 97 + 13) % (DATA_MIB - CHANGE_MIB)))
    nx "$1" dd if=/dev/urandom of="$data/volumes/$2/big" bs=1M count="$CHANGE_MIB" \
        seek="$seek" conv=notrunc status=none
}
results=$work/results.jsonl
: >"$results"
emit() {
    local kv k v line=
    for kv; do
        k=${kv%%=*} v=${kv#*=}
        [[ $v =~ ^-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?$ ]] || v="\"$v\""
        line+="${line:+, }\"$k\": $v"
    done
    printf '{%s}\n' "$line" >>"$results"
}

# ---------------------------------------------------------------- nodes
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
others_start=$(find /run/bvnodes -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null || true)
log "our binary: $ours_built; reference: $reference"
for tag in "${tags[@]}"; do "$nodes" down "$tag" >/dev/null 2>&1 || true; done
export BVNODES_PREALLOCATE=1
"$nodes" up bho 2 "$IMAGE_SIZE" >/dev/null
"$nodes" up bhr 2 "$IMAGE_SIZE" >/dev/null
for node in bho1 bho2; do "$nodes" daemon-start "$node" "$ours"; done
for node in bhr1 bhr2; do "$nodes" daemon-start "$node" "$reference"; done
# The nodes share the host's /root: sshd runs every command through root's
# bash, which sources the host's ~/.bashrc (see scripts/bench-follow.sh).
if [[ -z ${KEEP_BASHRC:-} && -f /root/.bashrc ]]; then
    : >"$work/empty-bashrc"
    for node in "${all_nodes[@]}"; do nx "$node" mount --bind "$work/empty-bashrc" /root/.bashrc; done
fi
"$nodes" pair bho1 bho2 "$ours ssh-command"
"$nodes" pair bho2 bho1 "$ours ssh-command"
"$nodes" pair bhr1 bhr2 none
declare -A ip=()
for node in "${all_nodes[@]}"; do
    ip[$node]=$("$nodes" ip "$node")
    daemon_pid[$node]=$(cat "/run/bvnodes/$node/daemon.pid")
done
yearly='cron:0 0 1 1 *'
api bho1 /VolumeDriver.Create '{"Name": "vol"}'
api bho1 /VolumeDriver.Create "{\"Name\": \"fol\", \"Opts\": {\"replicate:${ip[bho2]}\": \"$yearly\"}}"
api bho2 /VolumeDriver.Create "{\"Name\": \"fol\", \"Opts\": {\"replicate:${ip[bho1]}\": \"$yearly\"}}"
api bhr1 /VolumeDriver.Create '{"Name": "vol"}'

log "writing $DATA_MIB MiB of random data into bho1's vol and fol and bhr1's vol"
head -c "${DATA_MIB}M" /dev/urandom >"$work/data.bin"
for spec in bho1:vol bho1:fol bhr1:vol; do
    nx "${spec%%:*}" sh -c 'cp "$1" "$2/big" && sync' sh "$work/data.bin" "$data/volumes/${spec#*:}"
done
rm -f "$work/data.bin"

log "initial replication (full sends of $DATA_MIB MiB)"
api bho1 /VolumeDriver.Replicate "{\"Name\": \"vol\", \"Host\": \"${ip[bho2]}\"}"
emit kind=initial who=ours volume=vol seconds="$(field _seconds)"
api bho1 /VolumeDriver.Replicate "{\"Name\": \"fol\", \"Host\": \"${ip[bho2]}\"}"
emit kind=initial who=ours volume=fol seconds="$(field _seconds)"
t0=$EPOCHREALTIME
snap=$(ref_cli bhr1 snapshot vol)
ref_cli bhr1 send "${ip[bhr2]}" "$snap" >/dev/null
t1=$EPOCHREALTIME
emit kind=initial who=ref volume=vol seconds="$(minus "$t1" "$t0")"

# ---------------------------------------------------------------- 1. handover
k=0
for ((r = 0; r <= REPS; r++)); do
    log "handover $r$( ((r > 0)) || echo ' (warm-up)'), ours: bho1 -> bho2"
    api bho1 /VolumeDriver.Mount '{"Name": "vol", "ID": "app"}'
    write bho1 vol $((k += 1))
    tx_bytes bho1; tx0=$REPLY
    api bho1 /VolumeDriver.Handover "{\"Name\": \"vol\", \"Host\": \"${ip[bho2]}\"}"
    tx_bytes bho1
    [[ $(field Phase) == presynced ]] || die "the first handover call did not presync: $(cat "$reply")"
    emit kind=presync who=ours r="$r" seconds="$(field _seconds)" bytes="$(field Bytes)" tx="$((REPLY - tx0))" rounds="$(field Rounds)"
    write bho1 vol $((k += 1))
    api bho1 /VolumeDriver.Unmount '{"Name": "vol", "ID": "app"}'
    tx_bytes bho1; tx0=$REPLY
    api bho1 /VolumeDriver.Handover "{\"Name\": \"vol\", \"Host\": \"${ip[bho2]}\"}"
    tx_bytes bho1
    [[ $(field Phase) == handed-over ]] || die "the second handover call did not hand over: $(cat "$reply")"
    final=$(field Snapshot)
    emit kind=final who=ours r="$r" seconds="$(field _seconds)" critical="$(field CriticalSeconds)" \
        bytes="$(field Bytes)" tx="$((REPLY - tx0))"
    api bho2 /VolumeDriver.Snapshot.Restore "{\"Name\": \"$final\"}"
    emit kind=restore who=ours r="$r" seconds="$(field _seconds)"
    # The restore's backup of bho2's previous copy is a snapshot made on
    # bho2: left there, bho1's next send would see a peer that moved on
    # (and refuse). The operator deletes it (not timed).
    backup=$(field VolumeBackup)
    if [[ -n $backup ]]; then
        api bho2 /VolumeDriver.Snapshot.Remove "{\"Name\": \"$backup\"}"
    fi
    # The new node has exactly the state the app stopped with.
    a=$(nx bho1 md5sum "$data/volumes/vol/big" | cut -d' ' -f1)
    b=$(nx bho2 md5sum "$data/volumes/vol/big" | cut -d' ' -f1)
    [[ $a == "$b" ]] || die "ours: bho2 does not hold what the app stopped with on bho1"

    log "handover $r, reference script: bhr1 -> bhr2"
    write bhr1 vol "$k"
    tx_bytes bhr1; tx0=$REPLY
    t0=$EPOCHREALTIME
    snap=$(ref_cli bhr1 snapshot vol)
    t1=$EPOCHREALTIME
    ref_cli bhr1 send "${ip[bhr2]}" "$snap" >/dev/null
    t2=$EPOCHREALTIME
    tx_bytes bhr1
    emit kind=presync who=ref r="$r" seconds="$(minus "$t2" "$t0")" tx="$((REPLY - tx0))"
    write bhr1 vol $((k + 1))
    # (stop: the reference's Unmount does nothing)
    tx_bytes bhr1; tx0=$REPLY
    t0=$EPOCHREALTIME
    snap=$(ref_cli bhr1 snapshot vol)
    t1=$EPOCHREALTIME
    ref_cli bhr1 send "${ip[bhr2]}" "$snap" >/dev/null
    t2=$EPOCHREALTIME
    tx_bytes bhr1
    tx=$((REPLY - tx0))
    ref_cli bhr2 restore "$snap" >/dev/null
    t3=$EPOCHREALTIME
    emit kind=final who=ref r="$r" snapshot="$(minus "$t1" "$t0")" send="$(minus "$t2" "$t1")" \
        restore="$(minus "$t3" "$t2")" seconds="$(minus "$t3" "$t0")" tx="$tx"
    a=$(nx bhr1 md5sum "$data/volumes/vol/big" | cut -d' ' -f1)
    b=$(nx bhr2 md5sum "$data/volumes/vol/big" | cut -d' ' -f1)
    [[ $a == "$b" ]] || die "reference: bhr2 does not hold what the app stopped with on bhr1"
done

# ---------------------------------------------------------------- 2./3. follow
for ((r = 0; r <= REPS; r++)); do
    log "follow $r$( ((r > 0)) || echo ' (warm-up)'): pull at bho2's Mount, push at its Unmount"
    write bho1 fol $((k += 1))
    api bho1 /VolumeDriver.Snapshot '{"Name": "fol"}'
    want=$(nx bho1 md5sum "$data/volumes/fol/big" | cut -d' ' -f1)
    pulls=$(grep -c 'pulled=true' /run/bvnodes/bho2/daemon.log || true)
    tx_bytes bho1; tx0=$REPLY
    api bho2 /VolumeDriver.Mount '{"Name": "fol", "ID": "app"}'
    tx_bytes bho1
    emit kind=pull who=ours r="$r" seconds="$(field _seconds)" tx="$((REPLY - tx0))"
    (($(grep -c 'pulled=true' /run/bvnodes/bho2/daemon.log) == pulls + 1)) || die "bho2's Mount did not pull"
    got=$(nx bho2 md5sum "$data/volumes/fol/big" | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "bho2's Mount did not bring bho1's state"
    write bho2 fol $((k += 1))
    tx_bytes bho2; tx0=$REPLY
    api bho2 /VolumeDriver.Unmount '{"Name": "fol", "ID": "app"}'
    tx_bytes bho2
    emit kind=push who=ours r="$r" seconds="$(field _seconds)" tx="$((REPLY - tx0))"
    want=$(nx bho2 md5sum "$data/volumes/fol/big" | cut -d' ' -f1)
    api bho1 /VolumeDriver.Mount '{"Name": "fol", "ID": "app"}'
    api bho1 /VolumeDriver.Unmount '{"Name": "fol", "ID": "app"}'
    got=$(nx bho1 md5sum "$data/volumes/fol/big" | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "bho1's Mount did not bring bho2's pushed state"
done
for node in "${all_nodes[@]}"; do cp "/run/bvnodes/$node/daemon.log" "$work/daemon.$node.log"; done

# ---------------------------------------------------------------- report
cat >"$work/report.py" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
change = float(sys.argv[2])
def of(kind, who, key):
    return [r[key] for r in rows if r["kind"] == kind and r["who"] == who and r.get("r", 1) > 0 and key in r]
def s(v):
    return f"{v:.2f} s" if v >= 0.0995 else f"{v * 1000:.0f} ms"
def med(kind, who, key, fmt=s):
    v = of(kind, who, key)
    if not v:
        return "-"
    return f"{fmt(statistics.median(v))} ({fmt(min(v))}..{fmt(max(v))})"
mib = lambda v: f"{v / 2**20:.1f} MiB"
n = len(of("final", "ours", "seconds"))
print(f"Median (min..max) of {n} repetitions (a warm-up one before, not counted).\n")
print("| figure | ours | target | reference 3.13 + script |")
print("|---|---:|---|---:|")
print(f"| **handover, downtime-critical phase** (ours: the final call's CriticalSeconds; ref: `snapshot` + `send` + `restore` after the stop) | {med('final', 'ours', 'critical')} | < 0.5 s | {med('final', 'ref', 'seconds')} |")
print(f"| of which: the final `Handover` request (ours) / the `snapshot` + `send` CLI calls (ref) | {med('final', 'ours', 'seconds')} | | {med('final', 'ref', 'snapshot')} + {med('final', 'ref', 'send')} |")
print(f"| restore on the new node (ours: `Snapshot.Restore` request, outside the critical phase: the app's first Mount does it; ref: `restore` CLI call, counted above) | {med('restore', 'ours', 'seconds')} | | {med('final', 'ref', 'restore')} |")
print(f"| bytes moved by the final send (ours: the reply's Bytes / old node's eth0 tx; ref: eth0 tx) | {med('final', 'ours', 'bytes', mib)} / {med('final', 'ours', 'tx', mib)} | {change:.0f} MiB written | {med('final', 'ref', 'tx', mib)} |")
print(f"| presync while the app runs (ours: first `Handover` call; ref: `snapshot` + `send`), not in the downtime | {med('presync', 'ours', 'seconds')}, {med('presync', 'ours', 'tx', mib)} tx | | {med('presync', 'ref', 'seconds')}, {med('presync', 'ref', 'tx', mib)} tx |")
print(f"| **follow, mount-time pull**: first `Mount` on the new node, peer holds {change:.0f} MiB more (ask, pull, restore) | {med('pull', 'ours', 'seconds')} | < 1 s | - |")
print(f"| of which bytes (peer's eth0 tx during the Mount) | {med('pull', 'ours', 'tx', mib)} | | |")
print(f"| **follow, unmount-time push**: last `Unmount` after the app wrote {change:.0f} MiB (snapshot + send) | {med('push', 'ours', 'seconds')} | < 0.5 s | - |")
print(f"| of which bytes (old node's eth0 tx during the Unmount) | {med('push', 'ours', 'tx', mib)} | | |")
print("\nPer repetition (r0 = warm-up):\n")
print("| r | ours critical | ours final request | ours final bytes | ours restore | ref snapshot / send / restore = critical | ref final tx | pull Mount | pull tx | push Unmount | push tx |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in sorted({x["r"] for x in rows if "r" in x}):
    g = lambda kind, who: next(x for x in rows if x["kind"] == kind and x["who"] == who and x.get("r") == r)
    fo, fr, ro, pl, pu = g("final", "ours"), g("final", "ref"), g("restore", "ours"), g("pull", "ours"), g("push", "ours")
    print(f"| {r} | {s(fo['critical'])} | {s(fo['seconds'])} | {mib(fo['bytes'])} | {s(ro['seconds'])} "
          f"| {s(fr['snapshot'])} / {s(fr['send'])} / {s(fr['restore'])} = {s(fr['seconds'])} | {mib(fr['tx'])} "
          f"| {s(pl['seconds'])} | {mib(pl['tx'])} | {s(pu['seconds'])} | {mib(pu['tx'])} |")
for x in rows:
    if x["kind"] == "initial":
        print(f"\nInitial replication ({x['who']}, {x['volume']}): {x['seconds']:.2f} s", end="")
print()
PY

{
    echo "Run $(date -u '+%F %T UTC'), $(nproc) cores, kernel $(uname -r), nodes: loop btrfs preallocated images ($IMAGE_SIZE, nodiscard) in /var/tmp/bvnodes, veth + bridge between netns, no dockerd (the app's Mount/Unmount sent to the daemons' sockets)"
    echo "ours: $ours_built (built $(date -u -r "$ours_built" '+%F %T UTC'), sha256 $(sha256sum "$ours" | cut -c1-12); repo at $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' with uncommitted changes in src/'))"
    echo "reference: $reference ($("$reference" --version 2>&1))"
    echo "REPS=$REPS DATA_MIB=$DATA_MIB CHANGE_MIB=$CHANGE_MIB"
    echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
    echo "other nodes under /run/bvnodes at start (other runs on this machine): ${others_start:-none}"
    echo
    python3 "$work/report.py" "$results" "$CHANGE_MIB"
} | tee "$work/bench-handover.md"
if [[ -n $keep_results ]]; then
    mkdir -p "$keep_results"
    cp "$work/bench-handover.md" "$results" "$work"/daemon.*.log "$work/report.py" "$keep_results/"
fi
