#!/usr/bin/env bash
# bench-replication.sh - Snapshot.Send of our daemon vs the reference
# buttervolume 3.13 (Python), side by side in one run, on throw-away nodes
# made with tests/nodes/nodes.sh (network + mount namespace, loop btrfs,
# sshd on :1122 per node; see tests/nodes/README.md):
#
#   pair A  bvo1 -> bvo2   our daemon on both; bvo2 authorizes bvo1's key
#                          with our forced command `<binary> ssh-command`
#   pair B  bvr1 -> bvr2   reference daemon on both; plain authorized_keys
#                          line (`nodes.sh pair bvr1 bvr2 none`), as
#                          reference nodes are set up
#
# Measured (each REPS times, median reported; phases interleaved ours /
# reference / baselines so both see the same machine state):
#   1. full send: Snapshot.Send of a snapshot of a volume holding DATA_MIB MiB
#      of incompressible data (the same file, from /dev/urandom, on both
#      senders), from the request until the reply (both daemons reply when
#      the peer's receive has finished). Before each repetition the copy on
#      the peer and the sender's marker are deleted and the deletions synced.
#      Baselines on the same nodes, same snapshot:
#        raw local: `btrfs send S | btrfs receive DIR` inside bvo1
#        raw ssh:   `btrfs send S | ssh -p 1122 bvr2 "btrfs receive DIR"`
#                   inside bvr1, with ssh's default cipher and with
#                   aes128-gcm@openssh.com (the cipher our daemon prefers)
#   2. incremental: after the full send, overwrite CHANGE_MIB MiB inside the
#      big file (same random bytes for both), `sync`, then time Snapshot +
#      Snapshot.Send from one python process (request to reply). Bytes on
#      the wire: the sender's eth0 transmitted bytes (/proc/net/dev in the
#      node) before/after; ours also reports
#      the stream size in its reply's Summary.
# Caches are warm (the data was just written; no drop_caches), and every
# measurement starts after a `sync`, so writeback of earlier steps does not
# land in the timed window. The node images are preallocated and mounted
# nodiscard (BVNODES_PREALLOCATE=1): no host block allocation, no hole
# punching after deletions inside the timed windows. Each measurement also
# records the machine's busy CPU seconds and the seconds stolen by the
# hypervisor (/proc/stat), since this VM's neighbours make wall times swing.
#
# Usage: scripts/bench-replication.sh [--keep-results DIR]
# Environment: BV_BINARY (default target/release/buttervolume, built with
# `cargo build --release`), BV_REFERENCE (default /opt/bv-ref/bin/buttervolume),
# REPS=3, DATA_MIB=1024, CHANGE_MIB=10, IMAGE_SIZE=4G (per node, preallocated),
# KEEP_BASHRC=1 (do not mask the host's /root/.bashrc in the nodes, below).
# Needs root, the tools listed in tests/nodes/README.md, python3.
# Cleans up on exit, even on error: `nodes.sh down` for both tags and the
# work dir /var/tmp/bench-replication.<pid>.
# shellcheck disable=SC2016  # single-quoted sh -c scripts expand in the child
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
reference=${BV_REFERENCE:-/opt/bv-ref/bin/buttervolume}
REPS=${REPS:-3}
DATA_MIB=${DATA_MIB:-1024}
CHANGE_MIB=${CHANGE_MIB:-10}
IMAGE_SIZE=${IMAGE_SIZE:-4G}
keep_results=

while [[ $# -gt 0 ]]; do
    case $1 in
        --keep-results) keep_results=$2; shift 2 ;;
        *) echo "usage: $0 [--keep-results DIR]" >&2; exit 2 ;;
    esac
done

die() { echo "bench-replication.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root"
[[ -x $reference ]] || die "reference missing ($reference): run scripts/reference-venv.sh"
command -v python3 >/dev/null || die "python3 is needed"

if [[ -n ${BV_BINARY:-} ]]; then
    ours=$(realpath "$BV_BINARY")
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    ours=$repo/target/release/buttervolume
fi
[[ -x $ours ]] || die "not an executable: $ours"

work=/var/tmp/bench-replication.$$
data=/var/lib/buttervolume   # inside a node
snaps=$data/snapshots
tags=(bvo bvr)

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ $status != 0 ]]; then
        for node in bvo1 bvo2 bvr1 bvr2; do
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

# ---------------------------------------------------------------- client
cat >"$work/client.py" <<'PY'
"""Calls a buttervolume socket and times it (stdlib only)."""
import http.client, json, re, socket, sys, time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=3600)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3600)
        s.connect(self.unix_path)
        self.sock = s


def call(sock, path, body):
    conn = UnixConnection(sock)
    t0 = time.perf_counter()
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    reply = json.loads(conn.getresponse().read())
    dt = time.perf_counter() - t0
    conn.close()
    if reply.get("Err"):
        sys.exit(f"{path} {body}: {reply['Err']}")
    return dt, reply


def summary_mib(reply, wire=False):
    """Stream size from our Summary ("... 10.0 MiB in 0.2 s ..."), or with
    wire=True the compressed size ("..., 3.1 MiB on the wire") if any."""
    pattern = r"([0-9.]+) MiB on the wire" if wire else r"([0-9.]+) MiB in "
    m = re.search(pattern, reply.get("Summary") or "")
    return float(m.group(1)) if m else None


cmd, sock, *args = sys.argv[1:]
if cmd == "call":          # call SOCK PATH JSON: prints the reply
    print(json.dumps(call(sock, args[0], json.loads(args[1]))[1]))
elif cmd == "send":        # send SOCK SNAPSHOT HOST
    dt, reply = call(sock, "/VolumeDriver.Snapshot.Send", {"Name": args[0], "Host": args[1], "Detail": True})
    print(json.dumps({"seconds": dt, "summary": reply.get("Summary"),
                      "summary_mib": summary_mib(reply), "wire_mib": summary_mib(reply, True)}))
elif cmd == "snapsend":    # snapsend SOCK VOLUME HOST: Snapshot, then Send it
    t0 = time.perf_counter()
    ds, reply = call(sock, "/VolumeDriver.Snapshot", {"Name": args[0]})
    dt, sent = call(sock, "/VolumeDriver.Snapshot.Send", {"Name": reply["Snapshot"], "Host": args[1], "Detail": True})
    total = time.perf_counter() - t0
    print(json.dumps({"seconds": total, "snapshot_s": ds, "send_s": dt,
                      "snapshot": reply["Snapshot"], "summary": sent.get("Summary"),
                      "summary_mib": summary_mib(sent), "wire_mib": summary_mib(sent, True)}))
else:
    sys.exit(f"unknown command {cmd}")
PY

cat >"$work/table.py" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
data_mib, change_mib = float(sys.argv[2]), float(sys.argv[3])
def vals(metric, who, key="seconds"):
    return [r[key] for r in rows if r["metric"] == metric and r["who"] == who and r.get(key) is not None]
def med(metric, who, key="seconds"):
    v = vals(metric, who, key)
    return statistics.median(v) if v else None
def spread(metric, who):
    v = vals(metric, who)
    return f"{med(metric, who):.2f} s ({min(v):.2f}..{max(v):.2f})" if v else "n/a"
full = ["ours", "ref", "raw_local", "raw_ssh_default", "raw_ssh_aes128gcm"]
names = {"ours": "ours", "ref": "reference 3.13", "raw_local": "raw local send\\|receive",
         "raw_ssh_default": "raw send\\|ssh receive (ssh default cipher)",
         "raw_ssh_aes128gcm": "raw send\\|ssh -c aes128-gcm receive"}
raw = med("full", "raw_local")
def paired(who):
    """Median over repetitions of raw local time / this time, each pair taken
    minutes apart at most, so both saw about the same machine."""
    raw_by_rep = {r["rep"]: r["seconds"] for r in rows if r["metric"] == "full" and r["who"] == "raw_local"}
    ratios = [raw_by_rep[r["rep"]] / r["seconds"] for r in rows
              if r["metric"] == "full" and r["who"] == who and r["rep"] in raw_by_rep]
    return f"{100 * statistics.median(ratios):.0f}%" if ratios else "-"
print(f"Full send, {data_mib:.0f} MiB of random data (median of {len(vals('full', 'ours'))}, min..max):\n")
print("| | time | MiB/s | % of raw local throughput (medians) | % of raw local (median of per-repetition ratios) | CPU-s used, steal excluded | sender tx bytes |")
print("|---|---:|---:|---:|---:|---:|---:|")
for who in full:
    t = med("full", who)
    if t is None:
        continue
    tx = med("full", who, "tx_bytes")
    txs = f"{tx / 2**20:.0f} MiB" if tx else "-"
    cpu = med("full", who, "cpu_s")
    print(f"| {names[who]} | {spread('full', who)} | {data_mib / t:.0f} | {100 * raw / t:.0f}% | {paired(who)} "
          f"| {cpu:.1f} | {txs} |")
steal = sum(r.get("steal_s") or 0 for r in rows)
busy = sum((r.get("cpu_s") or 0) + (r.get("steal_s") or 0) for r in rows)
print(f"\nCPU time stolen by the hypervisor during the measured windows: {steal:.1f} s"
      f" of {busy:.1f} s busy ({100 * steal / busy if busy else 0:.0f}%).")
print(f"\nIncremental: {change_mib:.0f} MiB overwritten in the big file, then Snapshot + Snapshot.Send"
      f" (median of {len(vals('incr', 'ours'))}, min..max):\n")
print("| | ours | reference 3.13 | reference / ours |")
print("|---|---:|---:|---:|")
def line(label, key, fmt, ratio=True):
    o, r = med("incr", "ours", key), med("incr", "ref", key)
    fo = fmt(o) if o is not None else "n/a"
    fr = fmt(r) if r is not None else "n/a"
    q = f"{r / o:.1f}x" if ratio and o and r else ""
    print(f"| {label} | {fo} | {fr} | {q} |")
print(f"| Snapshot + Send until landed | {spread('incr', 'ours')} | {spread('incr', 'ref')} | "
      f"{med('incr', 'ref') / med('incr', 'ours'):.1f}x |")
line("of which Snapshot", "snapshot_s", lambda v: f"{v * 1000:.1f} ms")
line("of which Send", "send_s", lambda v: f"{v:.3f} s")
line("sender eth0 tx bytes", "tx_bytes", lambda v: f"{v / 2**20:.2f} MiB", ratio=False)
line(f"tx bytes / {change_mib:.0f} MiB changed", "tx_bytes", lambda v: f"{v / (change_mib * 2**20):.2f}x", ratio=False)
line("stream size in the reply's Summary", "summary_mib", lambda v: f"{v:.1f} MiB", ratio=False)
if vals("incr", "ours", "wire_mib"):
    line("on-the-wire size in the reply's Summary", "wire_mib", lambda v: f"{v:.1f} MiB", ratio=False)
PY

results=$work/results.jsonl
: >"$results"
# Busy and stolen CPU jiffies of the whole machine (/proc/stat, USER_HZ=100):
# busy = user + nice + system + irq + softirq; steal = taken by the
# hypervisor (other tenants), which slows a run without being its work.
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
cpu_mark() { read -r cpu0 steal0 < <(cpu_jiffies); }
# record <metric> <who> <rep> <json from client.py or {"seconds": x}> [tx_bytes]
# Adds the CPU seconds used and stolen since the last cpu_mark.
record() {
    local cpu1 steal1
    read -r cpu1 steal1 < <(cpu_jiffies)
    CPU_S=$(((cpu1 - cpu0))) STEAL_S=$(((steal1 - steal0))) python3 -c 'import json,os,sys
r = json.loads(sys.argv[4]); r.update(metric=sys.argv[1], who=sys.argv[2], rep=int(sys.argv[3]))
if len(sys.argv) > 5: r["tx_bytes"] = int(sys.argv[5])
r["cpu_s"] = int(os.environ["CPU_S"]) / 100
r["steal_s"] = int(os.environ["STEAL_S"]) / 100
print(json.dumps(r))' "$@" | tee -a "$results" >&2
}

nx() { "$nodes" exec "$@"; }
sock() { echo "/run/bvnodes/$1/btrfs.sock"; }
api() { python3 "$work/client.py" call "$(sock "$1")" "$2" "$3"; }
# /proc/net/dev, not /sys/class/net: the node shares the host's /sys, whose
# net entries are the root namespace's; /proc/net follows the reader's netns.
tx_bytes() { nx "$1" cat /proc/net/dev | sed -n 's/^ *eth0: *//p' | awk '{ print $9 }'; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
# Deletes subvolumes in a node (read-only ones included) and waits until
# btrfs has cleaned them up, then flushes everything.
node_delete() {
    local node=$1; shift
    nx "$node" sh -c 'for s; do [ -e "$s" ] && btrfs subvolume delete "$s" >/dev/null; done
        btrfs subvolume sync /var/lib/buttervolume >/dev/null; sync' sh "$@"
}

# ---------------------------------------------------------------- nodes
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "our binary: $ours; reference: $reference"
for tag in "${tags[@]}"; do "$nodes" down "$tag" >/dev/null 2>&1 || true; done
export BVNODES_PREALLOCATE=1
"$nodes" up bvo 2 "$IMAGE_SIZE" >/dev/null
"$nodes" up bvr 2 "$IMAGE_SIZE" >/dev/null
"$nodes" daemon-start bvo1 "$ours"
"$nodes" daemon-start bvo2 "$ours"
"$nodes" daemon-start bvr1 "$reference"
"$nodes" daemon-start bvr2 "$reference"
# The nodes share the host's /root (only /root/.ssh is theirs): sshd runs
# every command through root's bash, which sources the host's ~/.bashrc (on
# a developer box that can be pyenv/conda init, 100+ ms per SSH command).
# Mask it inside the nodes' mount namespaces so both daemons are measured,
# not this machine's shell setup. KEEP_BASHRC=1 keeps it.
if [[ -z ${KEEP_BASHRC:-} && -f /root/.bashrc ]]; then
    : >"$work/empty-bashrc"
    for node in bvo1 bvo2 bvr1 bvr2; do nx "$node" mount --bind "$work/empty-bashrc" /root/.bashrc; done
fi
"$nodes" pair bvo1 bvo2 "$ours ssh-command"
"$nodes" pair bvr1 bvr2 none
declare -A sender=([ours]=bvo1 [ref]=bvr1) receiver=([ours]=bvo2 [ref]=bvr2) peer_ip=()
peer_ip[ours]=$("$nodes" ip bvo2)
peer_ip[ref]=$("$nodes" ip bvr2)

log "writing $DATA_MIB MiB of random data into volume 'big' on both senders"
head -c "${DATA_MIB}M" /dev/urandom >"$work/data.bin"
for i in $(seq 1 "$REPS"); do head -c "${CHANGE_MIB}M" /dev/urandom >"$work/change$i.bin"; done
declare -A base=()
for who in ours ref; do
    s=${sender[$who]}
    api "$s" /VolumeDriver.Create '{"Name": "big"}' >/dev/null
    nx "$s" cp "$work/data.bin" "$data/volumes/big/data"
    nx "$s" sync
    base[$who]=$(api "$s" /VolumeDriver.Snapshot '{"Name": "big"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["Snapshot"])')
done
nx bvo1 mkdir -p "$data/rawrecv"
nx bvr2 mkdir -p "$data/rawrecv"

# ---------------------------------------------------------------- full sends
for rep in $(seq 1 "$REPS"); do
    for who in ours ref; do
        s=${sender[$who]} r=${receiver[$who]} snap=${base[$who]} ip=${peer_ip[$who]}
        if ((rep > 1)); then # undo the previous repetition's send
            node_delete "$r" "$snaps/$snap"
            node_delete "$s" "$snaps/$snap@$ip"
        fi
        nx "$s" sync
        log "full send $rep/$REPS: $who"
        tx0=$(tx_bytes "$s")
        cpu_mark
        out=$(python3 "$work/client.py" send "$(sock "$s")" "$snap" "$ip")
        record full "$who" "$rep" "$out" $(($(tx_bytes "$s") - tx0))
        nx "$r" test -d "$snaps/$snap" || die "$who: $snap did not land on $r"
    done

    log "full send $rep/$REPS: raw local btrfs send | btrfs receive (bvo1)"
    nx bvo1 sync
    cpu_mark
    t0=$(now)
    nx bvo1 sh -c 'btrfs -q send "$1" | btrfs -q receive "$2"' sh "$snaps/${base[ours]}" "$data/rawrecv"
    record full raw_local "$rep" "{\"seconds\": $(elapsed "$t0" "$(now)")}"
    node_delete bvo1 "$data/rawrecv/${base[ours]}"

    for cipher in default aes128-gcm@openssh.com; do
        label=raw_ssh_${cipher%%@*}
        label=${label//-/}
        opt=()
        [[ $cipher == default ]] || opt=(-c "$cipher")
        log "full send $rep/$REPS: raw btrfs send | ssh ${opt[*]} btrfs receive (bvr1 -> bvr2)"
        nx bvr1 sync
        tx0=$(tx_bytes bvr1)
        cpu_mark
        t0=$(now)
        nx bvr1 sh -c 'snap=$1 ip=$2 dir=$3; shift 3
            btrfs -q send "$snap" | ssh -p 1122 "$@" "$ip" "btrfs -q receive $dir"' \
            sh "$snaps/${base[ref]}" "${peer_ip[ref]}" "$data/rawrecv" "${opt[@]}"
        record full "$label" "$rep" "{\"seconds\": $(elapsed "$t0" "$(now)")}" $(($(tx_bytes bvr1) - tx0))
        node_delete bvr2 "$data/rawrecv/${base[ref]}"
    done
done

# ---------------------------------------------------------------- incremental
# Each repetition changes CHANGE_MIB MiB at a new offset and sends
# incrementally from the previous snapshot (the full send's, then each one's).
for rep in $(seq 1 "$REPS"); do
    for who in ours ref; do
        s=${sender[$who]} ip=${peer_ip[$who]}
        nx "$s" dd if="$work/change$rep.bin" of="$data/volumes/big/data" bs=1M \
            seek=$((rep * 100)) conv=notrunc status=none
        nx "$s" sync
        log "incremental $rep/$REPS: $who"
        tx0=$(tx_bytes "$s")
        cpu_mark
        out=$(python3 "$work/client.py" snapsend "$(sock "$s")" big "$ip")
        record incr "$who" "$rep" "$out" $(($(tx_bytes "$s") - tx0))
        snap=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["snapshot"])' "$out")
        nx "${receiver[$who]}" test -d "$snaps/$snap" || die "$who: $snap did not land"
    done
done

{
    echo "Run $(date -u '+%F %T UTC'), $(nproc) cores, kernel $(uname -r), nodes: loop btrfs $IMAGE_SIZE preallocated images (nodiscard) in /var/tmp/bvnodes, veth + bridge between netns"
    echo "ours: $ours_built (built $(date -u -r "$ours_built" '+%F %T UTC'), sha256 $(sha256sum "$ours" | cut -c1-12); repo at $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' with uncommitted changes in src/'))"
    echo "reference: $reference"
    echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
    echo
    python3 "$work/table.py" "$results" "$DATA_MIB" "$CHANGE_MIB"
} | tee "$work/bench-replication.md"
if [[ -n $keep_results ]]; then
    mkdir -p "$keep_results"
    cp "$work/bench-replication.md" "$results" "$keep_results/"
fi
