#!/usr/bin/env bash
# Backups to a local restic repository against plain restic, side by side
# in one run, on a private loop btrfs (issue 25's three figures):
#   1. first backup of a FILES x SIZE_MB volume: `buttervolume backup`
#      vs `restic backup <dir>` by hand into another repository;
#   2. second backup after one file rewritten: both, time and bytes added;
#   3. restore: `buttervolume restore-backup` into a new volume vs
#      `restic restore latest --target <dir>`.
# The data is random (incompressible) and was just written, so both read it
# from the page cache alike. Each step runs ROUNDS times on fresh
# repositories; the medians are printed.
# Usage: scripts/bench-backup.sh [FILES] [SIZE_MB] [ROUNDS]   (default 256 4 3)
# Environment: BV_BINARY (default target/release/buttervolume).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
files=${1:-256}
size_mb=${2:-4}
rounds=${3:-3}
bin=${BV_BINARY:-$repo/target/release/buttervolume}
[ -x "$bin" ] || (cd "$repo" && cargo build --release --quiet)
mnt=/var/tmp/bv-bench-backup.$$
img=/var/tmp/bv-bench-backup.$$.img
"$repo/scripts/test-btrfs.sh" "$mnt" 16G "$img" >/dev/null
work=$mnt/w
mkdir -p "$work/targets"
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    rm -rf "$mnt" "$img"
}
trap cleanup EXIT

export BUTTERVOLUME_VOLUMES_PATH=$work/volumes/ BUTTERVOLUME_SNAPSHOTS_PATH=$work/snapshots/ \
    BUTTERVOLUME_STATE_PATH=$work/state BUTTERVOLUME_SCHEDULE=$work/config/schedule.csv \
    BUTTERVOLUME_SOCKET=$work/bv.sock BUTTERVOLUME_DOCKER_SOCKET=$work/no-docker.sock \
    BUTTERVOLUME_BACKUP_TARGETS_PATH=$work/targets BUTTERVOLUME_LOGLEVEL=WARNING
"$bin" run >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$work/bv.sock" ] && break; sleep 0.1; done

printf 'bench\n' >"$work/pw"
chmod 600 "$work/pw"
export RESTIC_PASSWORD_FILE=$work/pw RESTIC_CACHE_DIR=$work/plain-cache

now() { date +%s.%N; }
name() { printf "f%0${#files}d" "$1"; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }

declare -a b1 p1 b2 p2 a2 pa2 r1 pr1
for round in $(seq "$rounds"); do
    vol=v$round
    python3 - "$work/bv.sock" "$vol" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
body = ('{"Name":"%s"}' % sys.argv[2]).encode()
s.sendall(b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
out = b""
while chunk := s.recv(65536):
    out += chunk
assert b'"Err":""' in out, out
PY
    dir=$work/volumes/$vol
    for i in $(seq -w 1 "$files"); do
        head -c $((size_mb << 20)) /dev/urandom >"$dir/f$i"
    done
    printf 'RESTIC_REPOSITORY=%s\nRESTIC_PASSWORD_FILE=%s\n' "$work/repo-bv$round" "$work/pw" \
        >"$work/targets/t$round.env"
    chmod 600 "$work/targets/t$round.env"
    sync

    # Both repositories made beforehand: the figures compare backups.
    restic -r "$work/repo-bv$round" init >/dev/null 2>&1
    restic -r "$work/repo-plain$round" init >/dev/null 2>&1
    t=$(now); "$bin" backup "t$round" "$vol" >/dev/null; b1+=("$(secs "$t" "$(now)")")
    t=$(now); restic -r "$work/repo-plain$round" backup "$dir" >/dev/null; p1+=("$(secs "$t" "$(now)")")

    head -c $((size_mb << 20)) /dev/urandom >"$dir/$(name 7)"
    sync
    t=$(now)
    added=$(python3 - "$work/bv.sock" "t$round" "$vol" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
body = json.dumps({"Target": sys.argv[2], "Name": sys.argv[3]}).encode()
s.sendall(b"POST /VolumeDriver.Backup HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
out = b""
while chunk := s.recv(65536):
    out += chunk
reply = json.loads(out.split(b"\r\n\r\n", 1)[1])
assert reply["Err"] == "", reply
print(reply["BytesAdded"])
PY
)
    b2+=("$(secs "$t" "$(now)")"); a2+=("$added")
    t=$(now)
    padded=$(restic -r "$work/repo-plain$round" backup --json "$dir" | tail -1 \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_added"])')
    p2+=("$(secs "$t" "$(now)")"); pa2+=("$padded")

    t=$(now); "$bin" restore-backup "t$round" "$vol" "r$round" >/dev/null; r1+=("$(secs "$t" "$(now)")")
    t=$(now); restic -r "$work/repo-plain$round" restore latest --target "$work/plain-restore$round" >/dev/null
    pr1+=("$(secs "$t" "$(now)")")
    cmp "$work/volumes/r$round/$(name 7)" "$dir/$(name 7)"
    cmp "$work/plain-restore$round$dir/$(name 7)" "$dir/$(name 7)"
    # Room for the next round.
    rm -rf "$work/plain-restore$round" "$work/repo-plain$round" "$work/repo-bv$round"
done

echo "restic $(restic version | awk '{print $2}'), $files files x $size_mb MiB, $rounds round(s), medians (s):"
echo "first backup:   buttervolume $(median "${b1[@]}")  plain restic $(median "${p1[@]}")   (each: ${b1[*]} / ${p1[*]})"
echo "second backup:  buttervolume $(median "${b2[@]}")  plain restic $(median "${p2[@]}")   (each: ${b2[*]} / ${p2[*]})"
echo "bytes added by the second: buttervolume ${a2[*]}  plain restic ${pa2[*]}  (the change: $((size_mb << 20)))"
echo "restore:        buttervolume $(median "${r1[@]}")  plain restic $(median "${pr1[@]}")   (each: ${r1[*]} / ${pr1[*]})"
