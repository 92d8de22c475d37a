#!/usr/bin/env bash
# Checks that the test suite leaves a user's Docker, plugin and data alone,
# the way a user meets it: the plugin runs (README's setup command), then the
# README's test command runs on the same machine.
#
# Usage: scripts/check-host-untouched.sh [--managed] [-- <test command...>]
#   --managed   also install the managed plugin anybox/buttervolume:latest on
#               the host (scripts/install-plugin.sh) and check it too
#   the test command defaults to scripts/test.sh
#
# Steps: scripts/setup-and-run.sh (host dockerd + legacy plugin `btrfs`); a
# user volume with data and a running container using it (and the same with
# the managed plugin); records the host dockerd's pid, `docker volume ls`,
# `docker plugin ls`, `docker ps`, /var/lib/buttervolume/{volumes,snapshots},
# /etc/buttervolume, the sockets in /run/docker/plugins, the mount table,
# loop devices and network namespaces; runs the test command; then asserts:
# it passed; same dockerd pid; `docker volume ls` answers within 1 s and
# lists the same volumes; same plugins and containers (the user's container
# still runs, not restarted); the user's plugins still serve Create/Mount (a
# new volume used by a container, the old data still there); no new entries
# in the user's data dirs but that new volume; every socket in
# /run/docker/plugins answers and none appeared or vanished; mount table,
# loop devices and network namespaces as before. Removes what it created
# itself (its volumes and container) at the end; the plugin stays running.
# Run as root. Prints the services' logs when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

managed=false
if [ "${1:-}" = --managed ]; then managed=true; shift; fi
if [ "${1:-}" = -- ]; then shift; fi
[ $# -gt 0 ] || set -- scripts/test.sh
MANAGED=anybox/buttervolume:latest
tag=bvcheck$$
out=$(mktemp -d /tmp/check-host.XXXXXX)
failures=0

say() { echo "check-host-untouched: $*"; }
fail() { echo "check-host-untouched: FAIL: $*" >&2; failures=$((failures + 1)); }

logs() {
    echo "=== host dockerd log (tail) ===" >&2
    tail -n 60 /var/log/buttervolume-dockerd.log >&2 2>/dev/null || true
    echo "=== user's buttervolume log (tail) ===" >&2
    tail -n 40 /var/log/buttervolume.log >&2 2>/dev/null || true
}

# ------------------------------------------------------------ the user's side
say "setting up as a user would: scripts/setup-and-run.sh"
scripts/setup-and-run.sh >"$out/setup.log" 2>&1 || { tail -n 40 "$out/setup.log" >&2; logs; exit 1; }
drivers=(btrfs)
if $managed; then
    if ! docker plugin inspect "$MANAGED" >/dev/null 2>&1; then
        say "installing the managed plugin $MANAGED on the host"
        BV_BINARY=$PWD/target/release/buttervolume scripts/install-plugin.sh "$MANAGED" >"$out/install.log" 2>&1 ||
            { tail -n 40 "$out/install.log" >&2; logs; exit 1; }
    fi
    drivers+=("$MANAGED")
fi

vol() { echo "$tag-$1-$(tr '/:' '__' <<<"$2")"; } # <phase> <driver>
for d in "${drivers[@]}"; do
    docker volume create -d "$d" "$(vol before "$d")" >/dev/null
    docker run --rm -v "$(vol before "$d"):/data" bv-busybox sh -c 'echo user-data > /data/f'
done
# A long-running user container on the user's volume.
docker run -d --name "$tag-app" -v "$(vol before btrfs):/data" bv-busybox sleep 86400 >/dev/null

snapshot_state() { # <file prefix>
    local p=$1
    tr -dc 0-9 </run/docker.pid >"$p.pid"
    docker volume ls --format '{{.Driver}} {{.Name}}' | sort >"$p.volumes"
    docker plugin ls --format '{{.Name}} {{.Enabled}}' | sort >"$p.plugins"
    docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.State}}' | sort >"$p.ps"
    docker inspect -f '{{.State.StartedAt}}' "$tag-app" >"$p.app-started"
    ls -A /var/lib/buttervolume/volumes | sort >"$p.bv-volumes"
    ls -A /var/lib/buttervolume/snapshots | sort >"$p.bv-snapshots"
    { [ -d /etc/buttervolume ] && find /etc/buttervolume | sort; } >"$p.etc" || true
    { [ -d /run/docker/plugins ] && find /run/docker/plugins -type s | sort; } >"$p.sockets" || true
    findmnt -rn -o TARGET,SOURCE,FSTYPE | sort >"$p.mounts"
    losetup -a -n -O NAME,BACK-FILE | sort >"$p.loops"
    ip netns list | sort >"$p.netns"
}
volume_ls_ms() {
    local start
    start=$(date +%s%N)
    docker volume ls >/dev/null
    echo $((($(date +%s%N) - start) / 1000000))
}
ms=$(volume_ls_ms)
if [ "$ms" -ge 1000 ]; then
    echo "check-host-untouched: docker volume ls already takes $ms ms before the tests" >&2
    echo "(stale legacy plugin registrations in the host's dockerd?); not a fair start" >&2
    exit 1
fi
snapshot_state "$out/before"
say "host dockerd pid $(cat "$out/before.pid"); $(wc -l <"$out/before.volumes") volumes, $(wc -l <"$out/before.plugins") managed plugins"

# ------------------------------------------------------------ the tests
say "running the test command: $*"
status=0
"$@" || status=$?
[ "$status" = 0 ] || fail "the test command exited with status $status"

# ------------------------------------------------------------ the checks
ms=$(volume_ls_ms)
say "docker volume ls answered in $ms ms"
[ "$ms" -lt 1000 ] || fail "docker volume ls took $ms ms (stale plugin registrations?)"

snapshot_state "$out/after"
same() { # <name> <what>
    if ! diff -u "$out/before.$1" "$out/after.$1" >"$out/diff.$1"; then
        fail "$2 changed:"
        cat "$out/diff.$1" >&2
    fi
}
same pid "the host dockerd's pid"
same volumes "docker volume ls"
same plugins "docker plugin ls"
same ps "the host's containers"
same app-started "the user's container start time (it was restarted)"
same bv-volumes "/var/lib/buttervolume/volumes"
same bv-snapshots "/var/lib/buttervolume/snapshots"
same etc "/etc/buttervolume"
same sockets "the sockets in /run/docker/plugins"
same mounts "the mount table"
same loops "the loop devices"
same netns "the network namespaces"
[ "$(docker inspect -f '{{.State.Running}}' "$tag-app")" = true ] || fail "the user's container stopped"
while read -r sock; do
    [ -n "$sock" ] || continue
    curl -sf --max-time 2 --unix-socket "$sock" -X POST http://localhost/Plugin.Activate >/dev/null ||
        fail "stale socket $sock (nobody answers)"
done <"$out/after.sockets"

# The user's plugins still serve Create and Mount, and kept the data.
for d in "${drivers[@]}"; do
    read=$(docker run --rm -v "$(vol before "$d"):/data" bv-busybox cat /data/f 2>&1) || true
    [ "$read" = user-data ] || fail "$d: the user's volume lost its data: $read"
    if docker volume create -d "$d" "$(vol after "$d")" >/dev/null 2>"$out/err"; then
        read=$(docker run --rm -v "$(vol after "$d"):/data" bv-busybox sh -c 'echo new > /data/f; cat /data/f' 2>&1) || true
        [ "$read" = new ] || fail "$d: a container cannot use a new volume: $read"
        [ -d "/var/lib/buttervolume/volumes/$(vol after "$d")" ] || fail "$d: the new volume is not in /var/lib/buttervolume"
    else
        fail "$d: docker volume create fails: $(cat "$out/err")"
    fi
done

# ------------------------------------------------------------ clean up ours
docker rm -f "$tag-app" >/dev/null || true
for d in "${drivers[@]}"; do
    docker volume rm "$(vol before "$d")" "$(vol after "$d")" >/dev/null 2>&1 || true
done

if [ "$failures" -gt 0 ]; then
    logs
    echo "check-host-untouched: $failures check(s) failed (details in $out)" >&2
    exit 1
fi
rm -rf "$out"
say "OK: the tests left the host's Docker, plugins and data as they were"
