#!/usr/bin/env bash
# bench-follow.sh - moving an app between the two nodes of a pair: our
# daemon's follow (the volume's state moves with the container, issue 13)
# vs the same move scripted with buttervolume 3.13 (Python), side by side in
# one run, on throw-away nodes made with tests/nodes/nodes.sh (network +
# mount namespace, loop btrfs, sshd on :1122 per node, and each node its own
# dockerd: `nodes.sh docker-start`; see tests/nodes/README.md):
#
#   pair bfo1 <-> bfo2  our daemon on both, paired both ways with our forced
#                       command `<binary> ssh-command`; volume `vol` created
#                       on both by Docker with
#                       `-o replicate:<peer>=cron:0 0 1 1 *` (an active line
#                       that never runs during the bench: follow needs one)
#   pair bfr1 <-> bfr2  the reference daemon on both, plain keys both ways
#                       (`nodes.sh pair ... none`); volume `vol` created on
#                       both by Docker
#
# Both volumes hold one DATA_MIB MiB file of incompressible data (the same
# bytes, from /dev/urandom, copied into the volume directory), replicated
# once to the second node (ours: /VolumeDriver.Replicate; reference:
# snapshot, send, restore), so both nodes share a parent. Then a chain of
# containers runs, alternately on the second and the first node, each
#
#   docker run --rm -v vol:<path> bv-busybox sh -c '<app>'
#
# where the app prints a timestamp as its first command (busybox adjtimex:
# the realtime clock in microseconds, the host's clock: containers have no
# time namespace), prints the sequence number the previous container left in
# <path>/seq (checked: the state followed), sleeps APP_SECONDS, overwrites
# CHANGE_MIB MiB inside the big file at a new offset (dd from /dev/urandom,
# conv=notrunc, no sync: the app stops with its writes in the page cache, as
# apps do), writes its own number to <path>/seq and prints a timestamp as
# its last command. The next container is started as soon as the previous
# `docker run` returned (with --rm the CLI returns once the container is
# removed, its volume unmounted; checked against the log). Container 0 runs
# on node 2 after the initial replication, move 1 (node 2 -> node 1) is a
# warm-up, then REPS round trips node 1 -> node 2 -> node 1. Three chains:
#
#   ours         <path> = /data, a directory of the image (as an image's
#                VOLUME path is): Docker mounts the volume at create (to copy
#                the image's content into it if it were empty), unmounts it,
#                and mounts it again at start
#   ours_nopath  <path> = /srv, which the image lacks: Docker mounts once
#                (continues the same volume's chain: 2 * REPS more moves)
#   ref          <path> = /data, the reference pair, moved by the operator's
#                script between the two containers
#
# Measured per move:
#
#   ours
#     push:    the last `/VolumeDriver.Unmount` on the old node (after the
#              old container's last command), its `micros` in the daemon
#              log: the follow's snapshot + incremental send; and the send's
#              own time from the "followed: sent ..." summary
#     restore: the first `/VolumeDriver.Mount` on the new node: ask the
#              peer, restore the pushed state (pull first if it had not
#              landed: the log line says pulled=true/false)
#     and every Mount/Unmount the new node served before the new
#              container's first command, summed
#   reference (its Mount/Unmount do nothing): after the old container's
#     `docker run` returned, the 3.13 operator's script, timed call by call
#     (the reference CLI, run on this host against the node's daemon
#     socket): `buttervolume snapshot vol` and `buttervolume send <new node>
#     <snapshot>` (old node), `buttervolume restore <snapshot>` (new node);
#     its sum is the downtime-critical phase of that script
#   both
#     downtime: from the old container's last timestamp (its last command)
#              to the new container's first one (its first command), as the
#              operator sees it; split into stop (last command -> old `docker
#              run` returned), between (-> new `docker run` issued: ~5 ms of
#              this script's bookkeeping for ours, the operator's script for
#              the reference) and start (-> first command in the new
#              container)
#     bytes:   the old node's eth0 transmitted bytes (/proc/net/dev of a
#              process in the node) during the old container's run (ours:
#              the push) or during `send` (reference)
#     CPU:     busy (user + nice + system + irq + softirq) and steal seconds
#              of the whole machine in each phase's window, from /proc/stat
#              sampled every 20 ms by a background sampler (linear
#              interpolation between samples; /proc/stat counts in 10 ms
#              jiffies); the daemons' log lines give the Mount and Unmount
#              windows (end time - micros .. end time)
#
# Usage: scripts/bench-follow.sh [--keep-results DIR]
# Environment: BV_BINARY (default target/release/buttervolume, built with
# `flock /tmp/cargo.lock cargo build --release`), BV_REFERENCE (default
# /opt/bv-ref/bin/buttervolume, scripts/reference-venv.sh), REPS=3,
# DATA_MIB=1024, CHANGE_MIB=10, APP_SECONDS=1, IMAGE_SIZE=4G (our nodes),
# REF_IMAGE_SIZE=(REPS + 3) * DATA_MIB + 1024 MiB (reference nodes: each
# reference move lands a whole new copy; images are preallocated and
# mounted nodiscard), KEEP_BASHRC=1 (do not mask the
# host's /root/.bashrc in the nodes, as scripts/bench-replication.sh).
# Needs root, the tools listed in tests/nodes/README.md (docker.io,
# containerd, busybox-static for docker-start), python3.
# Network: only the nodes' own 10.X.0.k addresses (inside their namespaces)
# and unix sockets. The host's dockerd, /var/lib/buttervolume and
# /run/docker/plugins are never touched.
# Cleans up on exit, even on error: the sampler, `nodes.sh down` for both
# tags (which stops the nodes' dockerds first), the work dir
# /var/tmp/bench-follow.<pid>.
# shellcheck disable=SC2016  # single-quoted sh -c scripts expand in the child
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
reference=${BV_REFERENCE:-/opt/bv-ref/bin/buttervolume}
REPS=${REPS:-3}
DATA_MIB=${DATA_MIB:-1024}
CHANGE_MIB=${CHANGE_MIB:-10}
APP_SECONDS=${APP_SECONDS:-1}
IMAGE_SIZE=${IMAGE_SIZE:-4G}
# A reference move sends the whole file (see BENCHMARKS.md), landing a new
# copy on the receiver each time: room for REPS + 2 of them on node 1.
REF_IMAGE_SIZE=${REF_IMAGE_SIZE:-$(((REPS + 3) * DATA_MIB + 1024))M}
keep_results=

while [[ $# -gt 0 ]]; do
    case $1 in
        --keep-results) keep_results=$2; shift 2 ;;
        *) echo "usage: $0 [--keep-results DIR]" >&2; exit 2 ;;
    esac
done

die() { echo "bench-follow.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root"
[[ -x $reference ]] || die "reference missing ($reference): run scripts/reference-venv.sh"
command -v python3 >/dev/null || die "python3 is needed"
command -v docker >/dev/null || die "the docker CLI is needed (docker.io)"
((DATA_MIB > 2 * CHANGE_MIB)) || die "DATA_MIB must exceed 2 * CHANGE_MIB"

if [[ -n ${BV_BINARY:-} ]]; then
    ours=$(realpath "$BV_BINARY")
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    ours=$repo/target/release/buttervolume
fi
[[ -x $ours ]] || die "not an executable: $ours"

work=/var/tmp/bench-follow.$$
data=/var/lib/buttervolume # inside a node
tags=(bfo bfr)
all_nodes=(bfo1 bfo2 bfr1 bfr2)
sampler_pid=

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $sampler_pid ]]; then
        kill "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
    fi
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
# The node's dockerd, called directly (not through nodes.sh: no extra shell
# between the two moves' CLI calls).
dk() {
    local node=$1
    shift
    DOCKER_HOST=unix:///run/bvnodes/$node/docker/run/docker.sock docker "$@"
}
# The reference CLI, run here against the node's daemon socket (what the
# CLI does: one HTTP request; the daemon does the work in its node).
ref_cli() {
    local node=$1
    shift
    BUTTERVOLUME_SOCKET=$(sock "$node") "$reference" "$@"
}
api() {
    python3 - "$(sock "$1")" "$2" "$3" <<'PY'
import http.client, json, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(3600)
        self.sock.connect(sys.argv[1])
c = C("localhost", timeout=3600)
c.request("POST", sys.argv[2], body=sys.argv[3], headers={"Content-Type": "application/json"})
reply = json.loads(c.getresponse().read())
if reply.get("Err"):
    sys.exit(f"{sys.argv[2]} {sys.argv[3]}: {reply['Err']}")
print(json.dumps(reply))
PY
}
# The node's eth0 transmitted bytes, into REPLY, with builtins only (no
# process between two moves): /proc/<pid>/net/dev of the node's daemon,
# which lives in the node's network namespace (not /sys/class/net: the
# nodes share the host's /sys).
declare -A daemon_pid=()
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
now() { echo "$EPOCHREALTIME"; }

results=$work/results.jsonl
: >"$results"
# emit KEY=VALUE...: one JSON object into results.jsonl (builtins only;
# values are numbers or plain words, written as strings unless numeric).
emit() {
    local kv k v line=
    for kv; do
        k=${kv%%=*} v=${kv#*=}
        [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || v="\"$v\""
        line+="${line:+, }\"$k\": $v"
    done
    printf '{%s}\n' "$line" >>"$results"
}

# The app. $1 = APP_SECONDS, $2 = CHANGE_MIB, $3 = offset in MiB, $4 = this
# container's number, $5 = where the volume is mounted. adjtimex (modes 0)
# only reads the clock.
app='ts() { busybox adjtimex | busybox awk "/tv_sec/ { s = \$2 } /tv_usec/ { u = \$2 } END { printf \"%d.%06d\", s, u }"; }
echo "start $(ts)"
echo "seen $(cat "$5/seq")"
sleep "$1"
dd if=/dev/urandom of="$5/big" bs=1M count="$2" seek="$3" conv=notrunc 2>/dev/null
echo "$4" >"$5/seq"
echo "exit $(ts)"'

# run_container <variant> <node> <j> <path>: container number j on node,
# the volume at path; records its
# CLI call times, its timestamps and its node's tx bytes. Builtins only
# around the docker call: what runs between two moves is the docker CLI.
# (The daemons' request lines are matched to containers afterwards, by
# time.)
run_container() {
    local who=$1 node=$2 j=$3 path=$4 tx0 t0 t1 out seek expect line start= exit= seen=
    # A new offset each time, spread over the file.
    seek=$(((j * 97 + 13) % (DATA_MIB - CHANGE_MIB)))
    expect=$((j - 1))
    ((j > 0)) || expect=fill
    tx_bytes "$node"
    tx0=$REPLY
    t0=$EPOCHREALTIME
    out=$(dk "$node" run --rm -v "vol:$path" bv-busybox sh -c "$app" sh "$APP_SECONDS" "$CHANGE_MIB" "$seek" "$j" "$path")
    t1=$EPOCHREALTIME
    tx_bytes "$node"
    while read -r line; do
        case $line in
            "start "*) start=${line#start } ;;
            "exit "*) exit=${line#exit } ;;
            "seen "*) seen=${line#seen } ;;
        esac
    done <<<"$out"
    [[ -n $start && -n $exit ]] || die "$who container $j on $node: no timestamps in its output: $out"
    [[ $seen == "$expect" ]] || die "$who container $j on $node found seq '$seen', not '$expect': the state did not follow"
    emit kind=container variant="$who" group="${who%%_*}" j="$j" node="$node" cli_start="$t0" cli_end="$t1" \
        start="$start" exit="$exit" tx="$((REPLY - tx0))"
}

# ---------------------------------------------------------------- nodes
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
others_start=$(find /run/bvnodes -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null || true)
log "our binary: $ours_built; reference: $reference"
for tag in "${tags[@]}"; do "$nodes" down "$tag" >/dev/null 2>&1 || true; done
export BVNODES_PREALLOCATE=1
"$nodes" up bfo 2 "$IMAGE_SIZE" >/dev/null
"$nodes" up bfr 2 "$REF_IMAGE_SIZE" >/dev/null
for node in bfo1 bfo2; do "$nodes" daemon-start "$node" "$ours"; done
for node in bfr1 bfr2; do "$nodes" daemon-start "$node" "$reference"; done
# The nodes share the host's /root (only /root/.ssh is theirs): sshd runs
# every command through root's bash, which sources the host's ~/.bashrc
# (here: pyenv init, 100+ ms per SSH command). Masked inside the nodes'
# mount namespaces so both daemons are measured, not this machine's shell
# setup. KEEP_BASHRC=1 keeps it.
if [[ -z ${KEEP_BASHRC:-} && -f /root/.bashrc ]]; then
    : >"$work/empty-bashrc"
    for node in "${all_nodes[@]}"; do nx "$node" mount --bind "$work/empty-bashrc" /root/.bashrc; done
fi
"$nodes" pair bfo1 bfo2 "$ours ssh-command"
"$nodes" pair bfo2 bfo1 "$ours ssh-command"
"$nodes" pair bfr1 bfr2 none
"$nodes" pair bfr2 bfr1 none
declare -A ip=()
for node in "${all_nodes[@]}"; do
    ip[$node]=$("$nodes" ip "$node")
    daemon_pid[$node]=$(cat "/run/bvnodes/$node/daemon.pid")
done
log "starting the nodes' dockerds"
for node in "${all_nodes[@]}"; do "$nodes" docker-start "$node"; done
yearly='cron:0 0 1 1 *'
dk bfo1 volume create -d btrfs -o "replicate:${ip[bfo2]}=$yearly" vol >/dev/null
dk bfo2 volume create -d btrfs -o "replicate:${ip[bfo1]}=$yearly" vol >/dev/null
dk bfr1 volume create -d btrfs vol >/dev/null
dk bfr2 volume create -d btrfs vol >/dev/null

log "writing $DATA_MIB MiB of random data into 'vol' on bfo1 and bfr1"
head -c "${DATA_MIB}M" /dev/urandom >"$work/data.bin"
for node in bfo1 bfr1; do
    nx "$node" sh -c 'cp "$1" "$2/big" && echo fill >"$2/seq" && sync' sh "$work/data.bin" "$data/volumes/vol"
done
rm -f "$work/data.bin"

sampler=$work/cpu.samples
python3 -c 'import sys, time
out = open(sys.argv[1], "w")
while True:
    with open("/proc/stat") as f:
        v = f.readline().split()
    out.write(f"{time.time():.6f} {int(v[1]) + int(v[2]) + int(v[3]) + int(v[6]) + int(v[7])} {v[8]}\n")
    out.flush()
    time.sleep(0.02)' "$sampler" &
sampler_pid=$!

log "initial replication (full send of $DATA_MIB MiB), ours: /VolumeDriver.Replicate bfo1 -> bfo2"
t0=$(now)
api bfo1 /VolumeDriver.Replicate "{\"Name\": \"vol\", \"Host\": \"${ip[bfo2]}\"}" >"$work/initial.json"
t1=$(now)
emit kind=initial who=ours start="$t0" end="$t1"
log "initial replication, reference: snapshot + send bfr1 -> bfr2, restore on bfr2"
t0=$(now)
snap=$(ref_cli bfr1 snapshot vol)
ref_cli bfr1 send "${ip[bfr2]}" "$snap" >/dev/null
ref_cli bfr2 restore "$snap" >/dev/null
t1=$(now)
emit kind=initial who=ref start="$t0" end="$t1"

# ---------------------------------------------------------------- moves
# Container j runs on node 2 when j is even, on node 1 when odd; move j goes
# from container j-1's node to container j's. Move 1 (2 -> 1) is the
# warm-up. Variants, one chain each, on the same volume:
#   ours         the container mounts the volume at /data, a directory of
#                the image (as an image's VOLUME path is): Docker then
#                mounts the volume at create (to copy the image's content
#                into an empty volume), unmounts it, and mounts it again
#                at start
#   ours_nopath  the container mounts it at /srv, which the image lacks:
#                one Mount (continues the chain: 2 * REPS more moves)
#   ref          the reference at /data, with the operator's script
last=$((2 * REPS + 1))
chain() { # <variant> <node 1> <node 2> <first j> <last j> <path>
    local variant=$1 n1=$2 n2=$3 first=$4 final=$5 path=$6 j old new snap ta tb tc td te tf tx0
    for ((j = first; j <= final; j++)); do
        if ((j % 2 == 0)); then old=$n1 new=$n2; else old=$n2 new=$n1; fi
        if ((j == 0)); then
            log "$variant: container 0 on $new (after the initial replication)"
        else
            local note=
            ((j != 1)) || note=" (warm-up)"
            log "$variant: move $j, $old -> $new$note"
        fi
        if [[ $variant == ref && $j -gt 0 ]]; then
            # The 3.13 operator's move: snapshot and send on the old node,
            # restore on the new one.
            ta=$EPOCHREALTIME
            snap=$(ref_cli "$old" snapshot vol) || die "reference snapshot failed on $old"
            tb=$EPOCHREALTIME
            tx_bytes "$old"
            tx0=$REPLY
            tc=$EPOCHREALTIME
            ref_cli "$old" send "${ip[$new]}" "$snap" >/dev/null || die "reference send failed $old -> $new"
            td=$EPOCHREALTIME
            tx_bytes "$old"
            te=$EPOCHREALTIME
            ref_cli "$new" restore "$snap" >/dev/null || die "reference restore failed on $new"
            tf=$EPOCHREALTIME
            emit kind=script variant=ref j="$j" snapshot_start="$ta" snapshot_end="$tb" \
                send_start="$tc" send_end="$td" restore_start="$te" restore_end="$tf" \
                send_tx="$((REPLY - tx0))" snapshot="$snap"
        fi
        run_container "$variant" "$new" "$j" "$path"
    done
}
chain ours bfo1 bfo2 0 "$last" /data
chain ours_nopath bfo1 bfo2 "$((last + 1))" "$((last + 2 * REPS))" /srv
chain ref bfr1 bfr2 0 "$last" /data

kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
for node in "${all_nodes[@]}"; do cp "/run/bvnodes/$node/daemon.log" "$work/daemon.$node.log"; done

# CLI start-up cost of the reference (python imports), for the split below.
for i in 1 2 3; do
    t0=$(now)
    ref_cli bfr1 --version >/dev/null
    t1=$(now)
    emit kind=cli_startup start="$t0" end="$t1"
done

# ---------------------------------------------------------------- report
cat >"$work/report.py" <<'PY'
"""Turns results.jsonl, the CPU samples and the daemons' logs into tables."""
import bisect, datetime, json, re, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1])]
samples = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.count(" ") == 2]
reps, change_mib = int(sys.argv[3]), float(sys.argv[4])
work, initial_summary = sys.argv[5], json.load(open(sys.argv[6]))["Summary"]
times = [x[0] for x in samples]


def counters_at(t):
    """Busy and steal jiffies at time t, linearly interpolated."""
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return samples[0][1:]
    if i >= len(samples):
        return samples[-1][1:]
    (t0, b0, s0), (t1, b1, s1) = samples[i - 1], samples[i]
    f = (t - t0) / (t1 - t0) if t1 > t0 else 0
    return b0 + f * (b1 - b0), s0 + f * (s1 - s0)


def cpu(t0, t1):
    (b0, s0), (b1, s1) = counters_at(t0), counters_at(t1)
    return (b1 - b0) / 100, (s1 - s0) / 100


def add(*c):
    return (sum(x[0] for x in c), sum(x[1] for x in c))


def log_time(line):
    return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


logs = {}


def seg(c):
    """(time, line) the node's daemon logged while container c's `docker
    run` was running (a request line is written when the request ends)."""
    if c["node"] not in logs:
        logs[c["node"]] = []
        for line in open(f"{work}/daemon.{c['node']}.log"):
            try:
                logs[c["node"]].append((log_time(line), line.strip()))
            except ValueError:
                pass
    return [(t, l) for t, l in logs[c["node"]] if c["cli_start"] <= t <= c["cli_end"]]


REQ = re.compile(r'endpoint="(/VolumeDriver\.[A-Za-z.]+)" volume="vol" outcome="(\w+)".*micros=(\d+)')


def requests(lines):
    out = []
    for t, line in lines:
        m = REQ.search(line)
        if m and m[1] in ("/VolumeDriver.Mount", "/VolumeDriver.Unmount"):
            if m[2] != "ok":
                sys.exit(f"a request failed: {line}")
            out.append({"endpoint": m[1][len("/VolumeDriver."):], "s": int(m[3]) / 1e6, "end": t})
    return out


def window(q):
    return cpu(q["end"] - q["s"], q["end"])


cont = {(r["group"], r["j"]): r for r in rows if r["kind"] == "container"}
script = {r["j"]: r for r in rows if r["kind"] == "script"}
last = 2 * reps + 1
chains = {"ours": range(1, last + 1), "ours_nopath": range(last + 1, last + 2 * reps + 1),
          "ref": range(1, last + 1)}
moves = []
for variant, js in chains.items():
    group = variant.split("_")[0]
    for j in js:
        old, new = cont[(group, j - 1)], cont[(group, j)]
        m = {"variant": variant, "j": j, "dir": f"{old['node']} -> {new['node']}", "warmup": j == 1,
             "downtime": new["start"] - old["exit"], "stop": old["cli_end"] - old["exit"],
             "between": new["cli_start"] - old["cli_end"], "start": new["start"] - new["cli_start"],
             "cpu_downtime": cpu(old["exit"], new["start"]), "cpu_stop": cpu(old["exit"], old["cli_end"]),
             "cpu_start": cpu(new["cli_start"], new["start"])}
        if group == "ours":
            old_lines, new_lines = seg(old), seg(new)
            push = [q for q in requests(old_lines) if q["endpoint"] == "Unmount" and q["end"] >= old["exit"]]
            before = [q for q in requests(new_lines) if q["end"] <= new["start"]]
            if len(push) != 1 or not before or before[0]["endpoint"] != "Mount":
                sys.exit(f"{variant} move {j}: expected one Unmount after the old container's last command "
                         f"and a Mount before the new one's first, got {push} / {before}")
            push, restore = push[0], before[0]
            m["unmount"], m["cpu_unmount"] = push["s"], window(push)
            m["mount"], m["cpu_mount"] = restore["s"], window(restore)
            m["follow_start"] = sum(q["s"] for q in before)
            m["cpu_follow_start"] = add(*(window(q) for q in before))
            m["pattern"] = " ".join(f"{q['endpoint']} {q['s'] * 1000:.0f}" for q in before)
            m["unmount_done_first"] = push["end"] <= old["cli_end"]
            m["sent"] = [l.split("followed: ", 1)[1] for t, l in old_lines
                         if "followed: sent" in l and t <= push["end"]][-1:]
            sent = re.search(r" in ([0-9.]+) s \(", m["sent"][0]) if m["sent"] else None
            m["push_send"] = float(sent[1]) if sent else float("nan")
            m["early_sent"] = [l.split("followed: ", 1)[1] for t, l in new_lines
                               if "followed: sent" in l and t <= new["start"]]
            m["restored"] = [l.split("followed: ", 1)[1] for t, l in new_lines
                             if "followed: restored" in l and t <= restore["end"]]
            m["tx"] = old["tx"]
        else:
            s = script[j]
            m["snapshot"] = s["snapshot_end"] - s["snapshot_start"]
            m["send"] = s["send_end"] - s["send_start"]
            m["restore"] = s["restore_end"] - s["restore_start"]
            m["push"] = m["snapshot"] + m["send"]
            m["script"] = m["push"] + m["restore"]
            m["cpu_snapshot"] = cpu(s["snapshot_start"], s["snapshot_end"])
            m["cpu_send"] = cpu(s["send_start"], s["send_end"])
            m["cpu_push"] = add(m["cpu_snapshot"], m["cpu_send"])
            m["cpu_restore"] = cpu(s["restore_start"], s["restore_end"])
            m["cpu_script"] = add(m["cpu_push"], m["cpu_restore"])
            m["tx"] = s["send_tx"]
        moves.append(m)


def counted(variant):
    return [m for m in moves if m["variant"] == variant and not m["warmup"]]


def fmt_s(v):
    return f"{v:.2f} s" if v >= 0.0995 else f"{v * 1000:.0f} ms"


def spread(variant, key):
    v = [m[key] for m in counted(variant) if key in m]
    if not v:
        return "-"
    return f"{fmt_s(statistics.median(v))} ({fmt_s(min(v))}..{fmt_s(max(v))})"


def cpu_med(variant, key):
    v = [m[key] for m in counted(variant) if key in m]
    if not v:
        return "-"
    return f"{statistics.median(x[0] for x in v):.2f} / {statistics.median(x[1] for x in v):.2f}"


def row(label, keys):
    """keys: per variant, the metric key (or None)."""
    cells = []
    for variant in ("ours", "ours_nopath", "ref"):
        k = keys.get(variant)
        cells += [spread(variant, k), cpu_med(variant, "cpu_" + k)] if k else ["-", "-"]
    print(f"| {label} | " + " | ".join(cells) + " |")


n = {v: len(counted(v)) for v in chains}
print(f"Moves counted: {n['ours']} ours at /data, {n['ours_nopath']} ours at /srv, {n['ref']} reference "
      f"({reps} round trips node 1 -> node 2 -> node 1 each; the warm-up move 1, node 2 -> node 1, is in the "
      f"per-move tables only). Median (min..max) of the moves; CPU = busy / steal seconds of the whole "
      f"machine (both nodes, their dockerds, everything else running) in the phase's window, median.\n")
print("| phase | ours, volume at /data (in the image) | CPU busy / steal s | ours, volume at /srv (not in the image) "
      "| CPU busy / steal s | reference 3.13 + script | CPU busy / steal s |")
print("|---|---:|---:|---:|---:|---:|---:|")
row("push: ours the last `Unmount` (snapshot + send); ref `snapshot` + `send` CLI calls",
    {"ours": "unmount", "ours_nopath": "unmount", "ref": "push"})
row("of which the send (ours: the time in its summary)", {"ours": "push_send", "ours_nopath": "push_send"})
row("restore: ours the first `Mount` on the new node (ask the peer, restore); ref `restore` CLI call",
    {"ours": "mount", "ours_nopath": "mount", "ref": "restore"})
row("ours: every Mount/Unmount on the new node before the app's first command; ref: the script (snapshot + send + restore)",
    {"ours": "follow_start", "ours_nopath": "follow_start", "ref": "script"})
row("**downtime**: old container's last command -> new container's first", {v: "downtime" for v in chains})
row("of which stop: -> old `docker run --rm` returned", {v: "stop" for v in chains})
print("| of which between: -> new `docker run` issued (ref: the script) | "
      + " | ".join(f"{spread(v, 'between')} | " for v in chains) + " |")
row("of which start: -> new container's first command", {v: "start" for v in chains})
tx = {v: statistics.median(m["tx"] for m in counted(v)) / 2**20 for v in chains}
print("| old node's eth0 tx (ours: during the old container's run; ref: during `send`) | "
      + " | ".join(f"{tx[v]:.1f} MiB ({tx[v] / change_mib:.2f}x the change) | " for v in chains) + " |")

for variant, title in (("ours", "ours, volume at /data"), ("ours_nopath", "ours, volume at /srv")):
    print(f"\nPer move ({title}; the requests' `micros` as logged; CPU as busy, steal s):\n")
    print("| move | direction | push (last Unmount) | of which the send (its summary) | restore (first Mount) "
          "| follow requests before the app's first command, ms | "
          "downtime | stop / between / start | CPU push / restore / downtime | old node tx |")
    print("|---|---|---:|---:|---:|---|---:|---:|---|---:|")
    for m in moves:
        if m["variant"] != variant:
            continue
        c = lambda k: f"{m[k][0]:.2f}, {m[k][1]:.2f}"
        print(f"| {m['j']}{' (warm-up)' if m['warmup'] else ''} | {m['dir']} | {fmt_s(m['unmount'])} "
              f"| {fmt_s(m['push_send'])} | {fmt_s(m['mount'])} | {m['pattern']} = {fmt_s(m['follow_start'])} | {fmt_s(m['downtime'])} "
              f"| {fmt_s(m['stop'])} / {fmt_s(m['between'])} / {fmt_s(m['start'])} "
              f"| {c('cpu_unmount')} / {c('cpu_mount')} / {c('cpu_downtime')} | {m['tx'] / 2**20:.1f} MiB |")
print("\nPer move (reference 3.13 + script; CPU as busy, steal s):\n")
print("| move | direction | snapshot | send | restore | sum | downtime | stop / between / start | CPU sum / downtime | send tx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
for m in moves:
    if m["variant"] != "ref":
        continue
    c = lambda k: f"{m[k][0]:.2f}, {m[k][1]:.2f}"
    print(f"| {m['j']}{' (warm-up)' if m['warmup'] else ''} | {m['dir']} | {fmt_s(m['snapshot'])} | {fmt_s(m['send'])} "
          f"| {fmt_s(m['restore'])} | {fmt_s(m['script'])} | {fmt_s(m['downtime'])} "
          f"| {fmt_s(m['stop'])} / {fmt_s(m['between'])} / {fmt_s(m['start'])} "
          f"| {c('cpu_script')} / {c('cpu_downtime')} | {m['tx'] / 2**20:.1f} MiB |")

late = [m for m in moves if m["variant"] != "ref" and not m["unmount_done_first"]]
print(f"\nOurs: the push's Unmount ended before the old `docker run --rm` returned in "
      f"{sum(1 for m in moves if m['variant'] != 'ref') - len(late)} of "
      f"{sum(1 for m in moves if m['variant'] != 'ref')} moves" + (f" (not in: {[m['j'] for m in late]})" if late else "")
      + "; a restore pulled (the push had not landed) in "
      f"{sum(1 for m in moves if m['variant'] != 'ref' and any('pulled=true' in r for r in m['restored']))}.")
startup = [r["end"] - r["start"] for r in rows if r["kind"] == "cli_startup"]
print(f"Reference CLI start-up alone (`buttervolume --version`, 3 runs): median {fmt_s(statistics.median(startup))}; "
      f"the script makes 3 CLI calls.")
for r in rows:
    if r["kind"] == "initial":
        print(f"Initial replication ({r['who']}): {r['end'] - r['start']:.2f} s"
              + (f" (/VolumeDriver.Replicate: {initial_summary})" if r["who"] == "ours"
                 else " (snapshot + send + restore CLI calls, a full send)") + ".")
print("\nWhat ours logged (old node's push; new node's restore; sends before the app's first command):\n")
for m in moves:
    if m["variant"] == "ref":
        continue
    print(f"- {m['variant']} move {m['j']}: push: {'; '.join(m['sent']) or '-'} | restore: "
          f"{'; '.join(m['restored']) or '-'} | early: {'; '.join(m['early_sent']) or '-'}")
PY

{
    echo "Run $(date -u '+%F %T UTC'), $(nproc) cores, kernel $(uname -r), nodes: loop btrfs preallocated images (nodiscard; ours $IMAGE_SIZE, reference $REF_IMAGE_SIZE) in /var/tmp/bvnodes, veth + bridge between netns, one dockerd per node (storage driver vfs)"
    echo "ours: $ours_built (built $(date -u -r "$ours_built" '+%F %T UTC'), sha256 $(sha256sum "$ours" | cut -c1-12); repo at $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' with uncommitted changes in src/'))"
    echo "reference: $reference ($("$reference" --version 2>&1))"
    echo "REPS=$REPS DATA_MIB=$DATA_MIB CHANGE_MIB=$CHANGE_MIB APP_SECONDS=$APP_SECONDS"
    echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
    echo "other nodes under /run/bvnodes at start (other runs on this machine): ${others_start:-none}"
    echo
    python3 "$work/report.py" "$results" "$sampler" "$REPS" "$CHANGE_MIB" "$work" "$work/initial.json"
} | tee "$work/bench-follow.md"
if [[ -n $keep_results ]]; then
    mkdir -p "$keep_results"
    cp "$work/bench-follow.md" "$results" "$sampler" "$work"/daemon.*.log "$work/initial.json" "$work/report.py" "$keep_results/"
fi
