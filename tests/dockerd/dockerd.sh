#!/usr/bin/env bash
# dockerd.sh - a private Docker daemon for the tests, isolated from the
# host's Docker (and from any production buttervolume on this machine).
#
#   dockerd.sh start <dir> [--data <btrfs dir>] [--plugins <dir>] [--new-netns]
#                          [--hide <dir>]...
#   dockerd.sh stop <dir> [--keep]    stop it; without --keep also remove <dir>
#   dockerd.sh restart <dir>          stop and start again with the same options
#   dockerd.sh exec <dir> <cmd...>    run cmd in the daemon's mount and network
#                                     namespaces, where it is "the" Docker
#   dockerd.sh pid <dir>              print the daemon's pid
#
# The daemon runs in its own mount namespace (private propagation: nothing it
# mounts is seen outside, nothing mounted outside later is seen inside), in
# which, on top of the caller's view of the file system:
#
#   /run          is <dir>/run: API socket /run/docker.sock (outside:
#                 <dir>/run/docker.sock, use DOCKER_HOST=unix://...), pid
#                 file, exec-root /run/docker, its own containerd, and the
#                 plugin discovery dir /run/docker/plugins (outside:
#                 <dir>/run/docker/plugins, or the --plugins dir bound there:
#                 a legacy plugin listens on <that dir>/<driver>.sock).
#                 Managed plugins' sockets are there too: Docker hard-codes
#                 /run/docker/plugins/<id>/ for them.
#   /var/lib      is <dir>/varlib: data-root /var/lib/docker, and
#                 /var/lib/buttervolume = the --data dir (a btrfs dir; the
#                 managed plugin's fixed data path), else an empty dir
#   /etc/docker   (when it exists) is <dir>/etc, empty: the host's
#                 daemon.json, key.json and plugin specs are not seen
#   /usr/lib/docker/plugins  (when it exists) an empty read-only tmpfs
#   each --hide dir (when it exists, e.g. /etc/buttervolume) likewise
#
# and the host's own Docker mounts (loop devices, nsfs, overlays, anything
# under /var/lib/docker, /run/docker, /run/containerd, /run/netns) are
# detached, so this namespace pins none of them. With --new-netns the daemon
# also gets a network namespace of its own (only lo), so its bridges, ports
# and plugins' sshd never meet the host's; without it, it uses the caller's
# network namespace (nodes.sh runs it inside a node). Storage driver vfs
# (no overlay mounts), no iptables, cgroups under bvtest-<dir with / as ->.
#
# Needs root, util-linux (unshare, nsenter), dockerd, containerd, curl,
# busybox-static (the test image `bv-busybox`, imported at each start).
# shellcheck disable=SC2016  # single-quoted scripts expand in the child
set -Eeuo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")

die() { echo "dockerd.sh: $*" >&2; exit 1; }

usage() { sed -n '2,11p' "$SELF" | sed 's/^# \{0,1\}//'; }

pid_of() { # <dir>: the running daemon's pid, or nothing
    local pid
    pid=$( (tr -dc 0-9 <"$1/run/docker.pid") 2>/dev/null || true)
    [[ -n $pid && -e /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */dockerd ]] || return 1
    echo "$pid"
}

answers() { # <dir>
    curl -sf --max-time 2 --unix-socket "$1/run/docker.sock" http://localhost/_ping >/dev/null 2>&1
}

cgroup_name() { echo "bvtest$(tr / - <<<"$1")"; } # one per state dir

cmd_start() {
    [[ $# -ge 1 ]] || die "usage: dockerd.sh start <dir> [--data DIR] [--plugins DIR] [--new-netns]"
    local dir=$1 data= plugins= newnet=false hide=()
    shift
    while [[ $# -gt 0 ]]; do
        case $1 in
            --data) data=$(realpath "$2"); shift 2 ;;
            --plugins) plugins=$(realpath "$2"); shift 2 ;;
            --new-netns) newnet=true; shift ;;
            --hide) hide+=("$2"); shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install docker.io)"
    command -v containerd >/dev/null || die "containerd is not installed (apt-get install containerd)"
    [[ -x /bin/busybox ]] || die "/bin/busybox is missing (apt-get install busybox-static)"
    [[ -z $data || -d $data ]] || die "--data $data is not a directory"
    [[ -z $plugins || -d $plugins ]] || die "--plugins $plugins is not a directory"
    mkdir -p "$dir"
    dir=$(realpath "$dir")
    # Unix socket paths are limited to 107 bytes; keep room for plugin names.
    ((${#dir} <= 60)) || die "state dir path too long for sockets: $dir"
    if pid_of "$dir" >/dev/null; then die "a daemon already runs for $dir (pid $(pid_of "$dir"))"; fi
    local h saved=("$dir")
    [[ -z $data ]] || saved+=(--data "$data")
    [[ -z $plugins ]] || saved+=(--plugins "$plugins")
    ! $newnet || saved+=(--new-netns)
    for h in "${hide[@]}"; do saved+=(--hide "$h"); done
    printf '%q ' "${saved[@]}" >"$dir/args"
    mkdir -p "$dir/run/docker/plugins" "$dir/varlib/docker" "$dir/varlib/buttervolume" "$dir/etc"
    echo '{"deprecated-key-path": "/run/key.json"}' >"$dir/run/daemon.json"
    rm -f "$dir/run/docker.sock" "$dir/run/docker.pid"
    echo "=== $(date '+%F %T') start $(cat "$dir/args")" >>"$dir/dockerd.log"
    local unshare=(unshare --mount --propagation private)
    $newnet && unshare+=(--net)
    # setsid: its own session, so the caller's terminal signals do not reach
    # it; descriptors above 2 closed (a caller's lock must not be inherited).
    setsid "${unshare[@]}" -- "$SELF" _inner "$dir" "$data" "$plugins" "$newnet" "$(cgroup_name "$dir")" "${hide[@]}" \
        </dev/null >>"$dir/dockerd.log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    local launcher=$! i
    for ((i = 0; i < 600; i++)); do
        if answers "$dir"; then break; fi
        if ! kill -0 "$launcher" 2>/dev/null && ! pid_of "$dir" >/dev/null; then
            tail -n 40 "$dir/dockerd.log" >&2
            die "dockerd exited during start-up (log: $dir/dockerd.log)"
        fi
        sleep 0.1
    done
    answers "$dir" || { tail -n 40 "$dir/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
    import_image "$dir"
}

# Inside the new namespace (same process, then exec dockerd).
cmd_inner() {
    local dir=$1 data=$2 plugins=$3 newnet=$4 cgroup=$5 h
    shift 5
    $newnet && ip link set lo up
    detach_host_mounts "$dir" "$data" "$plugins"
    [[ -z $plugins ]] || mount --bind "$plugins" "$dir/run/docker/plugins"
    [[ -z $data ]] || mount --rbind "$data" "$dir/varlib/buttervolume"
    mount --rbind "$dir/varlib" /var/lib
    # The host's daemon.json, key.json and plugin specs stay out of sight.
    [[ ! -d /etc/docker ]] || mount --bind "$dir/etc" /etc/docker
    for h in /usr/lib/docker/plugins "$@"; do
        [[ ! -d $h ]] || mount -t tmpfs -o ro,size=4k tmpfs "$h"
    done
    # Last: <dir> itself may be under /run.
    mount --rbind "$dir/run" /run
    exec dockerd --config-file /run/daemon.json \
        --data-root /var/lib/docker --exec-root /run/docker \
        --pidfile /run/docker.pid --host unix:///run/docker.sock \
        --storage-driver vfs --iptables=false --ip-masq=false --ip-forward=false \
        --userland-proxy=false --cgroup-parent "/$cgroup" --shutdown-timeout 5
}

# Lazily detaches, in this namespace only, the mounts that belong to the
# host's Docker or to other tests (so they are not kept alive by us), except
# the ones the daemon needs (those holding <dir>, the data and plugins dirs).
detach_host_mounts() {
    local keep=("$@") target source fstype k needed
    findmnt -rn -o TARGET,SOURCE,FSTYPE | tac | while read -r target source fstype; do
        target=$(printf '%b' "$target")
        [[ $target != / ]] || continue
        case $fstype:$source:$target in
            nsfs:* | overlay:* | *:/dev/loop*:* | *:*:/var/lib/docker/* | *:*:/run/docker | \
                *:*:/run/docker/* | *:*:/run/containerd* | *:*:/run/netns*) ;;
            *) continue ;;
        esac
        needed=false
        for k in "${keep[@]}"; do
            [[ -n $k ]] || continue
            if [[ $k == "$target" || $k == "$target"/* ]]; then needed=true; fi
        done
        $needed || umount -l "$target" 2>/dev/null || true
    done
}

import_image() { # <dir>: the registry-free test image, into this dockerd
    DOCKER_HOST=unix://$1/run/docker.sock \
        "$(dirname "${BASH_SOURCE[0]}")/../../scripts/import-test-image.sh" >/dev/null
}

cmd_stop() {
    [[ $# -ge 1 ]] || die "usage: dockerd.sh stop <dir> [--keep]"
    local dir=$1 keep=false pid i
    [[ ${2:-} == --keep ]] && keep=true
    [[ -d $dir ]] || return 0
    dir=$(realpath "$dir")
    if pid=$(pid_of "$dir"); then
        local ns
        # Its mount namespace, held open past its exit (compared with `-ef`).
        exec {ns}<"/proc/$pid/ns/mnt" || die "cannot open dockerd's mount namespace (pid $pid)"
        # SIGTERM: dockerd stops its containers and plugins, then containerd.
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            [[ -e /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -e /proc/$pid ]]; then
            echo "dockerd.sh: dockerd (pid $pid) still running after 30 s; killing its namespace" >&2
        fi
        # Whatever still lives in its mount namespace (shims, containers that
        # did not stop) goes too, so that the namespace and its mounts vanish.
        # Checked and killed at once with builtins only: a fork per process
        # (or a list killed later) lets a pid that just exited be reused by
        # another test's process, which would be killed instead.
        local p left
        for ((i = 0; i < 50; i++)); do
            left=
            for p in /proc/[0-9]*; do
                if [[ $p/ns/mnt -ef /dev/fd/$ns ]]; then
                    kill -KILL "${p#/proc/}" 2>/dev/null || true
                    left=1
                fi
            done
            [[ -z $left ]] && break
            sleep 0.1
        done
        [[ -z $left ]] || echo "dockerd.sh: processes left in dockerd's mount namespace" >&2
        exec {ns}<&-
    fi
    rm -f "$dir/run/docker.pid"
    # Empty cgroups it made (cgroup v1 controllers, or v2).
    local cg
    for cg in /sys/fs/cgroup/*/"$(cgroup_name "$dir")" /sys/fs/cgroup/"$(cgroup_name "$dir")"; do
        [[ -d $cg ]] || continue
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    if ! $keep; then
        rm -rf "$dir" 2>/dev/null || { sleep 0.5; rm -rf "$dir"; }
    fi
}

cmd_restart() {
    [[ $# -eq 1 ]] || die "usage: dockerd.sh restart <dir>"
    local dir args
    dir=$(realpath "$1")
    [[ -f $dir/args ]] || die "no daemon was started for $dir"
    args=$(cat "$dir/args")
    cmd_stop "$dir" --keep
    eval "cmd_start $args"
}

cmd_exec() {
    [[ $# -ge 2 ]] || die "usage: dockerd.sh exec <dir> <cmd...>"
    local dir=$1 pid
    shift
    pid=$(pid_of "$dir") || die "no daemon runs for $dir"
    # nsenter leaves the cwd at the namespace's "/": go back to the caller's.
    exec nsenter --mount="/proc/$pid/ns/mnt" --net="/proc/$pid/ns/net" -- \
        env DOCKER_HOST=unix:///run/docker.sock \
        /bin/sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$PWD" "$@"
}

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
cmd=$1
shift
case $cmd in
    start) cmd_start "$@" ;;
    _inner) cmd_inner "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    exec) cmd_exec "$@" ;;
    pid) pid_of "$1" || die "no daemon runs for $1" ;;
    -h | --help | help) usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
esac
