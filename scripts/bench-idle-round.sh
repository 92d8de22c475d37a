#!/usr/bin/env bash
# bench-idle-round.sh - what a scheduler round costs when nothing changed:
# VOLUMES volumes (default 1000), each with a `replicate:<peer>` line every
# minute, on throw-away nodes made with tests/nodes/nodes.sh (network +
# mount namespace, loop btrfs, sshd on :1122; see tests/nodes/README.md):
#
#   bir1 -> bir2   our daemon on both; bir2 authorizes bir1's key with our
#                  forced command `<binary> ssh-command`
#
# Setup: VOLUMES volumes on bir1, each holding a 4 KiB file, each scheduled
# `replicate:<bir2>` every minute and mounted (/VolumeDriver.Mount, as
# Docker does for a running container); the first round sends every volume
# in full (waited for: every sent marker present). Then two phases of ROUNDS
# rounds each (ROUNDS minutes of wall time, the window aligned on rounds by
# the scheduler's own history):
#
#   in use   every volume still mounted: a round finds each volume
#            unchanged since a snapshot the peer confirmed
#   changed  (one round, between the two) CHANGED volumes (default 100)
#            get 1 MiB more each; the next round sends those incrementally
#            (list + send per volume, on the kept sessions): the round's
#            duration from the daemon log, and the sessions it opened
#   idle     every volume unmounted: each follows its container (FOLLOW is
#            on), so an idle round asks the peer for anything new (one
#            `list-newest` per round, through the kept SSH session) and
#            sends nothing
#
# Measured per phase: bir1's daemon CPU seconds (utime + stime of the
# process and its reaped children, /proc/<pid>/stat) over the window, as %
# of one core; the machine's busy CPU (/proc/stat, steal excluded: includes
# bir2's sshd and forced commands); snapshots created (count of bir1's
# snapshots before/after); SSH sessions opened by bir1 (its metrics page,
# `buttervolume_ssh_sessions_opened_total`); commands the peer ran (lines
# of bir2's forced-command log); ssh processes started for full sends.
#
# Usage: scripts/bench-idle-round.sh
# Environment: BV_BINARY (default: target/release/buttervolume, built),
# VOLUMES=1000, ROUNDS=2, CHANGED=100. Needs root, python3, curl. Cleans up on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
VOLUMES=${VOLUMES:-1000}
ROUNDS=${ROUNDS:-2}
CHANGED=${CHANGED:-100}
tag=bir
a=${tag}1
b=${tag}2
work=/var/tmp/bench-idle-round.$$

die() { echo "bench-idle-round.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
[[ $(id -u) == 0 ]] || die "must run as root"
command -v curl >/dev/null || die "curl is needed"

if [[ -n ${BV_BINARY:-} ]]; then
    ours=$(realpath "$BV_BINARY")
else
    log "building the release binary"
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    ours=$repo/target/release/buttervolume
fi

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ $status != 0 && -f /run/bvnodes/$a/daemon.log ]]; then
        echo "--- $a daemon log (tail) ---" >&2
        tail -n 20 "/run/bvnodes/$a/daemon.log" >&2
    fi
    "$nodes" down "$tag" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work"
cp "$ours" "$work/buttervolume"
ours=$work/buttervolume

log "nodes up"
"$nodes" down "$tag" >/dev/null 2>&1 || true
"$nodes" up "$tag" 2 4G >/dev/null
# sshd runs every command through root's bash, which sources the host's
# ~/.bashrc (see bench-replication.sh): masked in the nodes.
if [[ -f /root/.bashrc ]]; then
    : >"$work/empty-bashrc"
    for node in $a $b; do "$nodes" exec "$node" mount --bind "$work/empty-bashrc" /root/.bashrc; done
fi
"$nodes" pair "$a" "$b" "$ours ssh-command" >/dev/null
b_ip=$("$nodes" ip "$b")
port=9470
"$nodes" daemon-start "$b" "$ours" >/dev/null
"$nodes" daemon-start "$a" "$ours" "BUTTERVOLUME_METRICS_ADDR=127.0.0.1:$port" >/dev/null
sock=/run/bvnodes/$a/btrfs.sock
pid=$(cat /run/bvnodes/$a/daemon.pid)
data=/proc/$pid/root/var/lib/buttervolume
peer_pid=$(cat /run/bvnodes/$b/daemon.pid)
peer_log=/proc/$peer_pid/root/var/lib/buttervolume/state/ssh-command.log

cat >"$work/api.py" <<'PY'
"""Drives the daemon's socket: setup and phase changes, many calls, one process."""
import http.client, json, os, socket, sys

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=600)
        self.path_ = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)

def call(sock, path, body):
    c = Unix(sock)
    c.request("POST", path, json.dumps(body))
    r = json.loads(c.getresponse().read() or b"{}")
    c.close()
    if r.get("Err"):
        sys.exit(f"{path} {body}: {r['Err']}")
    return r

cmd, sock, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [f"v{i:04d}" for i in range(n)]
if cmd == "setup":
    data, peer = sys.argv[4], sys.argv[5]
    for v in names:
        call(sock, "/VolumeDriver.Create", {"Name": v})
        with open(f"{data}/volumes/{v}/f", "wb") as f:
            f.write(os.urandom(4096))
    for v in names:
        call(sock, "/VolumeDriver.Schedule", {"Name": v, "Action": f"replicate:{peer}", "Timer": 1})
elif cmd == "change":       # change SOCK N DATA: 1 MiB more in each of the first N
    data = sys.argv[4]
    for v in names:
        with open(f"{data}/volumes/{v}/change", "ab") as f:
            f.write(os.urandom(1 << 20))
elif cmd in ("mount", "unmount"):
    path = "/VolumeDriver.Mount" if cmd == "mount" else "/VolumeDriver.Unmount"
    for v in names:
        call(sock, path, {"Name": v, "ID": "bench"})
PY

metric() {
    "$nodes" exec "$a" curl -s "http://127.0.0.1:$port/metrics" |
        awk -v m="$1" '$1 ~ "^"m"(\\{|$)" {s += $2} END {print s + 0}'
}
count_snapshots() { find "$data/snapshots" -mindepth 1 -maxdepth 1 -name 'v*' ! -name '*@*@*' | wc -l; }
count_markers() { find "$data/snapshots" -mindepth 1 -maxdepth 1 -name "*@$b_ip" | wc -l; }
daemon_cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat"; }
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
peer_commands() { wc -l <"$peer_log" 2>/dev/null || echo 0; }
log "setup: $VOLUMES volumes, replicate:$b_ip every minute"
python3 "$work/api.py" setup "$sock" "$VOLUMES" "$data" "$b_ip"
# In use from the start: a volume nobody uses follows its container, and
# its rounds pull instead of pushing.
python3 "$work/api.py" mount "$sock" "$VOLUMES"
log "waiting for the first round to send every volume"
for ((i = 0; i < 600; i++)); do
    [[ $(count_markers) -ge $VOLUMES ]] && break
    sleep 1
done
[[ $(count_markers) -ge $VOLUMES ]] || die "the first round did not send every volume"
log "first round done ($(count_markers) markers)"

tick=$(getconf CLK_TCK)
results=$work/results
: >"$results"
phase() {
    local name=$1 cpu0 busy0 snaps0 sessions0 cmds0 t0 cpu1 busy1 snaps1 sessions1 cmds1 t1
    # Start right after a minute boundary has passed and the round it
    # started is over, so the window holds ROUNDS whole rounds.
    sleep $((60 - $(date +%-S) + 20))
    cpu0=$(daemon_cpu); busy0=$(busy); snaps0=$(count_snapshots)
    sessions0=$(metric buttervolume_ssh_sessions_opened_total); cmds0=$(peer_commands); t0=$(date +%s.%N)
    sleep $((ROUNDS * 60))
    cpu1=$(daemon_cpu); busy1=$(busy); snaps1=$(count_snapshots)
    sessions1=$(metric buttervolume_ssh_sessions_opened_total); cmds1=$(peer_commands); t1=$(date +%s.%N)
    python3 - "$name" "$tick" "$t0" "$t1" "$cpu0" "$cpu1" "$busy0" "$busy1" \
        "$snaps0" "$snaps1" "$sessions0" "$sessions1" "$cmds0" "$cmds1" "$ROUNDS" "$VOLUMES" >>"$results" <<'PY'
import sys
name, tick = sys.argv[1], float(sys.argv[2])
t0, t1, c0, c1, b0, b1, s0, s1, ss0, ss1, k0, k1, rounds, vols = map(float, sys.argv[3:])
wall = t1 - t0
print(f"| {name} | {vols:.0f} | {rounds:.0f} | {100 * (c1 - c0) / tick / wall:.2f} % | "
      f"{100 * (b1 - b0) / tick / wall:.1f} % | {s1 - s0:.0f} | {ss1 - ss0:.0f} | {k1 - k0:.0f} |")
PY
    log "phase $name: $(tail -n 1 "$results")"
}

phase "in use (mounted)"
changed_phase() {
    local sessions0 sessions1 t0
    # Just after a round: change CHANGED volumes, then the next round sends
    # them (incrementally) and finds the rest unchanged.
    sleep $((60 - $(date +%-S) + 20))
    sessions0=$(metric buttervolume_ssh_sessions_opened_total)
    t0=$(date -u +%FT%T)
    python3 "$work/api.py" change "$sock" "$CHANGED" "$data"
    python3 - "$data" "$CHANGED" "$b_ip" <<'PY'
import os, sys, time
data, n, ip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 240
start_markers = {m for m in os.listdir(f"{data}/snapshots") if m.endswith(f"@{ip}")}
while time.time() < deadline:
    now = {m for m in os.listdir(f"{data}/snapshots") if m.endswith(f"@{ip}")}
    if len([m for m in now - start_markers if int(m[1:5]) < n]) >= n:
        break
    time.sleep(0.5)
else:
    sys.exit("the changed volumes were not all sent within 4 minutes")
PY
    sessions1=$(metric buttervolume_ssh_sessions_opened_total)
    python3 - "/run/bvnodes/$a/daemon.log" "$t0" "$CHANGED" "$VOLUMES" $((sessions1 - sessions0)) >>"$results.changed" <<'PY'
import re, sys
from datetime import datetime
log, since, changed, volumes, sessions = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
stamp = lambda l: datetime.fromisoformat(l[:26])
lines = [l for l in open(log) if l[:19] >= since and "scheduled job" in l and "replicate:" in l]
starts = [stamp(l) for l in lines if "job started" in l]
dones = [l for l in lines if "job done" in l]
sent = [l for l in dones if "result=sent " in l]
ms = sorted(int(re.search(r" ms=(\d+)", l).group(1)) for l in sent)
round_s = (max(stamp(l) for l in dones) - min(starts)).total_seconds()
print(f"| {volumes} | {changed} | {len(sent)} | {round_s:.1f} s | {ms[len(ms) // 2] if ms else 0} ms | {sessions} |")
PY
    log "changed phase: $(tail -n 1 "$results.changed")"
}

log "phase 'changed': $CHANGED volumes get 1 MiB each"
changed_phase
log "phase 'idle': unmounting every volume"
python3 "$work/api.py" unmount "$sock" "$VOLUMES"
phase "idle followers (unmounted)"

echo
echo "Command: \`scripts/bench-idle-round.sh\` (VOLUMES=$VOLUMES ROUNDS=$ROUNDS), $(date -u +%F), $(nproc) cores"
echo
echo "| phase | volumes | rounds | bir1 daemon CPU (% of one core) | machine busy CPU (both nodes) | snapshots created | SSH sessions opened | commands the peer ran |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
cat "$results"
echo
echo "The first round (not in the table) sent each volume in full, each through its own ssh process."
echo
echo "A round after CHANGED volumes got 1 MiB each (still mounted; the rest unchanged): from its first job's start to its last job's end (daemon log), the median of the sends' job times, and the libssh2 sessions opened in it:"
echo
echo "| volumes | changed | sent | round | median send job | SSH sessions opened |"
echo "|---|---:|---:|---:|---:|---:|"
cat "$results.changed"
