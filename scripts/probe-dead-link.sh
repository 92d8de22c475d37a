#!/usr/bin/env bash
# probe-dead-link.sh - how our libssh2 transport meets a link that dies, on
# two throw-away nodes (tests/nodes/nodes.sh: bdl1 -> bdl2, our forced
# command on bdl2, SSH_TIMEOUT at its default 30 s):
#
#   dead     bdl1 pulls a snapshot from bdl2 (its session is then kept),
#            bdl2's link goes down, bdl1 pulls again: the seconds until that
#            Receive fails, and its error
#   blip     a 400 MB incremental send from bdl1 to bdl2 whose link is down
#            for CUT seconds (default 12, longer than the 10 s keepalive
#            interval the transport once had, shorter than SSH_TIMEOUT)
#            mid-stream: the send's outcome and its duration
#
# Usage: scripts/probe-dead-link.sh
# Environment: BV_BINARY (default target/debug/buttervolume, built), CUT=12.
# Needs root, python3, curl. Cleans up on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=$repo/tests/nodes/nodes.sh
CUT=${CUT:-12}
die() { echo "probe-dead-link.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
if [[ -z ${BV_BINARY:-} ]]; then
    (cd "$repo" && flock /tmp/cargo.lock cargo build --quiet)
    BV_BINARY=$repo/target/debug/buttervolume
fi
bv=$(realpath "$BV_BINARY")
trap '"$nodes" down bdl >/dev/null 2>&1 || true' EXIT

"$nodes" up bdl 2 2G >/dev/null
"$nodes" pair bdl1 bdl2 "$bv ssh-command" >/dev/null
"$nodes" daemon-start bdl1 "$bv" >/dev/null
"$nodes" daemon-start bdl2 "$bv" >/dev/null
ip2=$("$nodes" ip bdl2)
post() { curl -s --unix-socket "/run/bvnodes/$1/btrfs.sock" -X POST -d "$3" "http://x$2"; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# dead: a kept session, then the link down.
post bdl2 /VolumeDriver.Create '{"Name":"db"}' >/dev/null
post bdl2 /VolumeDriver.Snapshot '{"Name":"db"}' >/dev/null
post bdl1 /VolumeDriver.Snapshot.Receive "{\"Name\":\"db\",\"Host\":\"$ip2\"}" >/dev/null
"$nodes" link bdl2 down
t0=$(now)
err=$(post bdl1 /VolumeDriver.Snapshot.Receive "{\"Name\":\"db\",\"Host\":\"$ip2\"}" | field Err)
echo "dead: the Receive failed after $(since "$t0") s: $err"
"$nodes" link bdl2 up

# blip: a cut shorter than SSH_TIMEOUT, mid-stream.
post bdl1 /VolumeDriver.Create '{"Name":"x"}' >/dev/null
s1=$(post bdl1 /VolumeDriver.Snapshot '{"Name":"x"}' | field Snapshot)
post bdl1 /VolumeDriver.Snapshot.Send "{\"Name\":\"$s1\",\"Host\":\"$ip2\"}" >/dev/null
"$nodes" exec bdl1 sh -c 'head -c 400000000 /dev/urandom > /var/lib/buttervolume/volumes/x/big'
s2=$(post bdl1 /VolumeDriver.Snapshot '{"Name":"x"}' | field Snapshot)
t0=$(now)
post bdl1 /VolumeDriver.Snapshot.Send "{\"Name\":\"$s2\",\"Host\":\"$ip2\",\"Detail\":true}" >"/run/bvnodes/bdl1/blip.json" &
sender=$!
# Mid-stream: once bdl2 is landing data.
for ((i = 0; i < 300; i++)); do
    "$nodes" exec bdl2 sh -c 'ls -d /var/lib/buttervolume/snapshots/.recv.* >/dev/null 2>&1' && break
    sleep 0.05
done
"$nodes" link bdl2 down
sleep "$CUT"
"$nodes" link bdl2 up
wait "$sender"
reply=$(cat /run/bvnodes/bdl1/blip.json)
err=$(field Err <<<"$reply")
echo "blip: a ${CUT} s cut mid-stream; the send took $(since "$t0") s; error: ${err:-none}; $(field Summary <<<"$reply" 2>/dev/null || true)"
