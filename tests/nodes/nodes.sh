#!/usr/bin/env bash
# nodes.sh - several buttervolume "nodes" on one machine, for replication tests.
#
# Topology for `nodes.sh up <tag> 3` (X = 100..250, derived from the tag):
#
#   netns <tag>hub:            br0 (bridge, no address)
#                           /   |   \
#                    v<tag>1 v<tag>2 v<tag>3     hub ends of the veth pairs
#                       |       |       |
#   netns <tag>k:     eth0 10.X.0.k/24, lo; sshd on 10.X.0.k:1122 (with an sftp subsystem)
#
# The root network namespace has no interface on 10.X.0.0/24: the nodes only
# reach each other. Each node also has its own mount namespace (persisted as
# /run/bvnodes/<node>/mntns) in which:
#   /var/lib/buttervolume   loop btrfs  /var/tmp/bvnodes/<node>.img
#   /etc/buttervolume       bind of /var/lib/buttervolume/config
#   /root/.ssh              bind of /var/lib/buttervolume/ssh (node's own key)
# exactly like the managed Docker plugin sees its data mount. Everything else
# (/, /run/bvnodes, /tmp, /work, ...) is the host's, so a daemon socket at
# /run/bvnodes/<node>/btrfs.sock is reachable from the root namespace. When
# the host lacks one of those three mount points, the node gets it from an
# overlay of its parent (upper dir in /run/bvnodes/<node>/ovl*): nothing is
# created on the host.
# Optionally (`docker-start`), a node runs its own dockerd
# (tests/dockerd/dockerd.sh) in its network namespace and a child of its mount
# namespace, with /run/bvnodes/<node>/ as plugin dir (so the node's daemon is
# its `btrfs` driver), state in /run/bvnodes/<node>/docker/.
# Per-node state (sshd config, host key, logs, pids): /run/bvnodes/<node>/.
# shellcheck disable=SC2016  # single-quoted sh -c scripts expand in the child
set -Eeuo pipefail
trap 'echo "nodes.sh: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR

RUN=/run/bvnodes          # private mount point; one state dir per node
IMGDIR=/var/tmp/bvnodes   # loop images
PORT=1122
# Same value as SSHD_MALLOC_TUNABLES in src/sshd.rs.
SSHD_MALLOC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=134217728
DATA=/var/lib/buttervolume
MAX_NODES=9
DOCKERD_SH=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../dockerd/dockerd.sh")

usage() {
    cat <<EOF
usage: nodes.sh <command> [args]
  up <tag> <count> [image_size]   create nodes <tag>1..<tag><count> (count 1..$MAX_NODES,
                                  image_size default 3G, sparse; preallocated and
                                  mounted nodiscard with BVNODES_PREALLOCATE=1); idempotent
  down <tag>                      stop and remove everything of <tag> (best effort)
  pair <from> <to> [command]      let <from> ssh to <to> (root@<to-ip>:$PORT) with a
                                  forced command (default: /usr/local/bin/buttervolume ssh-command)
  sftp-account <node> <user> <from>
                                  an sftp-only account <user> on <node> for <from>'s key
                                  (chrooted to $DATA/sftp/<user>, writable dir /data there;
                                  the account exists in the node's mount namespace only)
  exec <node> <cmd...>            run cmd in the node's net+mount namespaces (with
                                  BUTTERVOLUME_SOCKET and SSH_PORT set for that node)
  daemon-start <node> <binary> [KEY=VAL...]
                                  run '<binary> run' in the node, socket
                                  $RUN/<node>/btrfs.sock, log $RUN/<node>/daemon.log
  daemon-stop <node>              SIGTERM the daemon and wait for it
  daemon-kill <node>              SIGKILL the daemon (and its children)
  etcd-start <node> <member>...   an etcd member (clients on <ip>:2379)
  etcd-stop <node>
  docker-start <node>             start the node's own dockerd (driver `btrfs` = the
                                  node's daemon; image bv-busybox imported)
  docker <node> <args...>         the docker CLI against the node's dockerd
  docker-stop <node>              stop the node's dockerd (its containers stop too)
  ip <node>                       print the node's IP
  link <node> down|up             cut or restore the node's network link
tags: [a-z][a-z0-9]{0,5}; nodes are <tag>1..<tag>N, hub namespace <tag>hub.
EOF
}

die() { echo "nodes.sh: $*" >&2; exit 1; }
warn() { echo "nodes.sh: warning: $*" >&2; }

# ---------------------------------------------------------------- helpers

check_tag() {
    [[ $1 =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "bad tag '$1' (want [a-z][a-z0-9]{0,5})"
}

# Second octet of the tag's subnet: a small hash of the tag, 100..250.
# (Tags live on separate bridges anyway, so a collision would be harmless.)
subnet_octet() {
    local sum
    sum=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
    echo $((sum % 151 + 100))
}

mntns_mounted() { findmnt -n --mountpoint "$RUN/$1/mntns" >/dev/null 2>&1; }
netns_exists() { [[ -e /run/netns/$1 ]]; }

require_node() {
    local node=$1
    [[ $node =~ ^[a-z][a-z0-9]{0,6}$ ]] || die "bad node name '$node'"
    if ! [[ -f $RUN/$node/ready ]] || ! mntns_mounted "$node" || ! netns_exists "$node"; then
        die "node '$node' is not up (see: nodes.sh up)"
    fi
}

node_ip() { cat "$RUN/$1/ip"; }

# Run a command in the node's mount namespace only.
in_mnt() {
    local node=$1; shift
    nsenter --mount="$RUN/$node/mntns" -- "$@"
}

# Is pid alive (not gone, not a zombie)?
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# SIGKILLs the live members of process group $1 whose leader is gone.
# `kill -- -pgid` is not used once the leader exited: with no member left,
# the number is free, and a new group leader with that pid (another test's
# container, say) would be killed. A member found alive keeps the number
# taken, so killing it by pid right after the check hits that member.
kill_group_members() {
    local pgid=$1 p stat fields
    for p in /proc/[0-9]*; do
        { read -r stat <"$p/stat"; } 2>/dev/null || continue
        read -r -a fields <<<"${stat##*) }" # state ppid pgrp ...
        [[ ${fields[2]} == "$pgid" ]] && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    return 0
}

# Wait up to $2 seconds (tenths resolution) for all given pids to die.
wait_dead() {
    local secs=$1; shift
    local i pid any
    for ((i = 0; i < secs * 10; i++)); do
        any=
        for pid in "$@"; do alive "$pid" && any=1; done
        [[ -z $any ]] && return 0
        sleep 0.1
    done
    return 1
}

# Wait up to $1 seconds for all given pids to leave /proc (zombies included).
wait_gone() {
    local secs=$1; shift
    local i pid left
    for ((i = 0; i < secs * 10; i++)); do
        left=
        for pid in "$@"; do [[ -e /proc/$pid ]] && left=1; done
        [[ -z $left ]] && return 0
        sleep 0.1
    done
    return 1
}

pid_from() { [[ -s $1 ]] && head -n1 "$1" | tr -dc 0-9; }

# SIGKILLs every process living in the node's network or mount namespace;
# prints their pids. Each one is checked and killed at once, with shell
# builtins only (`-ef`: same namespace inode): a list made first and
# killed later, or a fork per process checked, gives the kernel time to
# hand a pid that just exited to another test's process (pid_max is
# 32768 here and a whole test run forks fast), which would then be
# killed instead.
kill_node_procs() {
    local node=$1 p pid net=/run/netns/$1 mnt=
    mntns_mounted "$node" && mnt=$RUN/$node/mntns
    netns_exists "$node" || net=
    [[ -n $net$mnt ]] || return 0
    for p in /proc/[0-9]*; do
        if [[ (-n $net && $p/ns/net -ef $net) || (-n $mnt && $p/ns/mnt -ef $mnt) ]]; then
            pid=${p#/proc/}
            kill -KILL "$pid" 2>/dev/null && echo "$pid"
        fi
    done
    return 0
}

# /run/bvnodes must be a private mount point: a mount namespace can only be
# persisted by a bind mount on a non-shared mount. Made on the first `up`
# (with the given node state dirs, under a lock), removed by the last `down`.
ensure_run_dir() {
    mkdir -p "$IMGDIR"
    flock /run/bvnodes.lock sh -ec '
        run=$1; shift
        mkdir -p "$run"
        mountpoint -q "$run" || mount --bind "$run" "$run"
        mount --make-private "$run"
        for d in "$@"; do mkdir -p "$run/$d"; done' sh "$RUN" "$@"
}

release_run_dir() {
    flock /run/bvnodes.lock sh -c '
        run=$1 imgdir=$2
        [ -d "$run" ] && [ -z "$(ls -A "$run")" ] || exit 0
        if mountpoint -q "$run"; then umount "$run" || exit 0; fi
        rmdir "$run" "$imgdir" 2>/dev/null' sh "$RUN" "$IMGDIR" || true
}

# ---------------------------------------------------------------- up

cmd_up() {
    [[ $# -ge 2 && $# -le 3 ]] || die "usage: nodes.sh up <tag> <count> [image_size]"
    local tag=$1 count=$2 size=${3:-3G}
    check_tag "$tag"
    [[ $count =~ ^[1-9]$ ]] || die "bad count '$count' (1..$MAX_NODES)"
    local hub=${tag}hub x k nodes=()
    x=$(subnet_octet "$tag")
    for ((k = 1; k <= count; k++)); do nodes+=("$tag$k"); done
    ensure_run_dir "${nodes[@]}"

    netns_exists "$hub" || ip netns add "$hub"
    ip -n "$hub" link set lo up
    ip -n "$hub" link show br0 >/dev/null 2>&1 || ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    for ((k = 1; k <= count; k++)); do
        node_up "$tag" "$k" "10.$x.0.$k" "$size"
    done
    for ((k = 1; k <= count; k++)); do echo "$tag$k $(node_ip "$tag$k")"; done
}

node_up() {
    local tag=$1 k=$2 ip=$3 size=$4
    local node=$tag$k hub=${tag}hub dir=$RUN/$tag$k
    mkdir -p "$dir"
    echo "$ip" >"$dir/ip"
    echo "$tag" >"$dir/tag"
    # Who made it (scripts/test.sh sets BVNODES_OWNER to its run id): a
    # run that is killed has its nodes removed by its cleanup or the next run.
    echo "${BVNODES_OWNER:-}" >"$dir/owner"
    node_net "$node" "$hub" "$ip"
    if ! [[ -f $dir/ready ]] || ! mntns_mounted "$node"; then
        node_mounts "$node" "$size"
    fi
    node_sshd "$node" "$ip"
}

node_net() {
    local node=$1 hub=$2 ip=$3
    netns_exists "$node" || ip netns add "$node"
    ip -n "$node" link set lo up
    if ! ip -n "$node" link show eth0 >/dev/null 2>&1; then
        ip -n "$hub" link del "v$node" >/dev/null 2>&1 || true
        ip -n "$hub" link add "v$node" type veth peer name eth0 netns "$node"
    fi
    ip -n "$hub" link set "v$node" master br0 up
    ip -n "$node" addr replace "$ip/24" dev eth0
    ip -n "$node" link set eth0 up
}

# A fresh mount namespace with the node's loop btrfs and the plugin's binds.
node_mounts() {
    local node=$1 size=$2 dir=$RUN/$1 img=$IMGDIR/$1.img
    rm -f "$dir/ready"
    node_release_mounts "$node" # leftovers of a partial up
    rm -f "$img"
    # noatime: reads must not change a volume (its generation is how
    # "unchanged since its last snapshot" is decided).
    local mount_opts=loop,noatime
    if [[ -n ${BVNODES_PREALLOCATE:-} ]]; then
        # Benchmarks: no host block allocation (image) and no hole punching
        # (btrfs discard) in the measured windows.
        fallocate -l "$size" "$img" || die "$node: cannot allocate $img (size $size)"
        mount_opts=loop,noatime,nodiscard
    else
        truncate -s "$size" "$img" || die "$node: cannot create $img (size $size)"
    fi
    mkfs.btrfs -q "$img" >/dev/null || die "$node: mkfs.btrfs failed on $img (size $size)"
    touch "$dir/mntns"
    unshare --mount="$dir/mntns" --propagation private true
    # Drop the copies of the host's loop-device and namespace mounts: they
    # would pin other tests' loop devices and network namespaces for as long
    # as this node lives.
    in_mnt "$node" bash -c '
        findmnt -rn -o TARGET,SOURCE,FSTYPE | tac |
        while read -r target source fstype; do
            [[ $target != / ]] || continue
            [[ $fstype == nsfs || $source == /dev/loop* ]] || continue
            umount -l "$(printf "%b" "$target")" 2>/dev/null || true
        done'
    in_mnt "$node" sh -ec '
        img=$1 data=$2 node=$3 opts=$4 dir=$5
        # Mount points missing on the host: from an overlay of the parent.
        for m in "$data" /etc/buttervolume /root/.ssh; do
            [ -d "$m" ] && continue
            parent=$(dirname "$m")
            ovl=$dir/ovl$(echo "$parent" | tr / _)
            mkdir -p "$ovl/upper" "$ovl/work"
            mount -t overlay overlay -o "lowerdir=$parent,upperdir=$ovl/upper,workdir=$ovl/work" "$parent"
            mkdir -p "$m"
        done
        mount -o "$opts" "$img" "$data"
        mkdir -p "$data/volumes" "$data/snapshots" "$data/received" "$data/config"
        install -d -m 700 "$data/ssh"
        mount --bind "$data/config" /etc/buttervolume
        mount --bind "$data/ssh" /root/.ssh
        ssh-keygen -q -t ed25519 -N "" -C "root@$node" -f /root/.ssh/id_ed25519
    ' sh "$img" "$DATA" "$node" "$mount_opts" "$dir"
    touch "$dir/ready"
}

node_sshd() {
    local node=$1 ip=$2 dir=$RUN/$1 pid i
    pid=$(pid_from "$dir/sshd.pid" || true)
    if [[ -n $pid ]] && alive "$pid"; then return 0; fi
    [[ -f $dir/ssh_host_ed25519_key ]] ||
        ssh-keygen -q -t ed25519 -N "" -C "host@$node" -f "$dir/ssh_host_ed25519_key"
    cat >"$dir/sshd_config" <<EOF
ListenAddress $ip:$PORT
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
StrictModes no
AuthorizedKeysFile /root/.ssh/authorized_keys
UseDNS no
PrintMotd no
ExposeAuthInfo yes
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
    mkdir -p /run/sshd
    rm -f "$dir/sshd.pid"
    # shellcheck disable=SC2094  # early errors and -E logging share the file
    # The malloc settings the plugin's own sshd runs with (src/sshd.rs,
    # SSHD_MALLOC_TUNABLES): without them each session's first ~10 MiB are
    # slowed by page faults.
    nsenter --net="/run/netns/$node" --mount="$dir/mntns" -- \
        env GLIBC_TUNABLES="$SSHD_MALLOC_TUNABLES" \
        /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" \
        </dev/null >>"$dir/sshd.log" 2>&1 ||
        { cat "$dir/sshd.log" >&2; die "$node: sshd failed to start"; }
    for ((i = 0; i < 100; i++)); do
        if nsenter --net="/run/netns/$node" bash -c "exec 3<>/dev/tcp/$ip/$PORT" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    cat "$dir/sshd.log" >&2
    die "$node: sshd does not answer on $ip:$PORT"
}

# ---------------------------------------------------------------- down

cmd_down() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh down <tag>"
    local tag=$1 k node
    check_tag "$tag"
    for ((k = 1; k <= MAX_NODES; k++)); do
        node=$tag$k
        if netns_exists "$node" || [[ -e $RUN/$node || -e $IMGDIR/$node.img ]]; then
            node_down "$node"
        fi
    done
    if netns_exists "${tag}hub"; then
        ip netns del "${tag}hub" 2>/dev/null || warn "cannot delete netns ${tag}hub"
    fi
    release_run_dir
    return 0
}

node_down() {
    local node=$1 dir=$RUN/$1
    # dockerd first: it stops its containers, which live in namespaces of
    # their own (not found by kill_node_procs).
    if [[ -d $dir/docker ]]; then "$DOCKERD_SH" stop "$dir/docker" || warn "$node: dockerd stop failed"; fi
    stop_pidfile "$dir/daemon.pid" 5
    stop_pidfile "$dir/etcd.pid" 5
    stop_pidfile "$dir/sshd.pid" 2
    node_release_mounts "$node"
    if netns_exists "$node"; then
        ip netns del "$node" 2>/dev/null || warn "cannot delete netns $node"
    fi
    rm -f "$IMGDIR/$node.img"
    rm -rf "$dir" 2>/dev/null || warn "cannot remove $dir"
}

# Kill what runs in the node, unmount its mount namespace, free its loop device.
node_release_mounts() {
    local node=$1 dir=$RUN/$1 img=$IMGDIR/$1.img pids m dev
    pids=$(kill_node_procs "$node")
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086
        wait_dead 5 $pids || warn "$node: processes still alive: $pids"
        # shellcheck disable=SC2086
        wait_gone 2 $pids || true # let init reap the orphaned zombies too
    fi
    if mntns_mounted "$node"; then
        for m in /root/.ssh /etc/buttervolume "$DATA"; do
            in_mnt "$node" sh -c 'umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null' sh "$m" || true
        done
        umount "$dir/mntns" 2>/dev/null || umount -l "$dir/mntns" 2>/dev/null ||
            warn "cannot unmount $dir/mntns"
    fi
    if [[ -e $img ]]; then
        for dev in $(losetup -j "$img" -n -O NAME 2>/dev/null); do
            losetup -d "$dev" 2>/dev/null || true
        done
        for ((m = 0; m < 50; m++)); do
            [[ -z $(losetup -j "$img" 2>/dev/null) ]] && break
            sleep 0.1
        done
        [[ -z $(losetup -j "$img" 2>/dev/null) ]] || warn "$node: loop device still attached to $img"
    fi
    return 0
}

# SIGTERM the pid in a pid file, SIGKILL after $2 seconds.
stop_pidfile() {
    local file=$1 secs=$2 pid
    pid=$(pid_from "$file" || true)
    if [[ -n $pid ]] && alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_dead "$secs" "$pid" || kill -KILL -- "-$pid" "$pid" 2>/dev/null || true
        wait_dead 5 "$pid" || true
        wait_gone 2 "$pid" || true
    fi
    rm -f "$file"
}

# ---------------------------------------------------------------- pair

cmd_pair() {
    [[ $# -ge 2 && $# -le 3 ]] || die "usage: nodes.sh pair <from-node> <to-node> [forced-command]"
    local from=$1 to=$2 command=${3:-/usr/local/bin/buttervolume ssh-command}
    require_node "$from"
    require_node "$to"
    local pub blob hostkey to_ip
    pub=$(in_mnt "$from" cat /root/.ssh/id_ed25519.pub)
    blob=$(awk '{print $2}' <<<"$pub")
    command=${command//\\/\\\\}
    command=${command//\"/\\\"}
    to_ip=$(node_ip "$to")
    hostkey=$(cut -d' ' -f1,2 "$RUN/$to/ssh_host_ed25519_key.pub")
    # Replace (never duplicate) the line for this key / this host.
    # "none": a plain key, as on a reference (Python) buttervolume node.
    local line="command=\"$command\",restrict $pub"
    [ "$command" = none ] && line=$pub
    in_mnt "$to" sh -ec "$REPLACE_LINE" sh /root/.ssh/authorized_keys " $blob" "$line"
    in_mnt "$from" sh -ec "$REPLACE_LINE" sh /root/.ssh/known_hosts "[$to_ip]:$PORT " \
        "[$to_ip]:$PORT $hostkey"
}

# sh -c script: in file $1, drop lines containing $2, append line $3.
REPLACE_LINE='f=$1; touch "$f"; chmod 600 "$f"
{ grep -vF -- "$2" "$f" || true; printf "%s\n" "$3"; } >"$f.new"
mv "$f.new" "$f"'

# ---------------------------------------------------------------- sftp-account

# An sftp-only account on a node, for another node's key. The nodes share
# the host's /etc, so the account is made in the node's mount namespace
# only: copies of the host's /etc/passwd and /etc/group with the account
# added are bind-mounted over them there (the host's files are never
# written). sshd (re-read with SIGHUP) forces internal-sftp for it,
# chrooted to $DATA/sftp/<user> (root's, as ChrootDirectory wants), whose
# data/ is the account's; its key is in $RUN/<node>/sftp/<user>.keys.
# Prints the account's uid.
cmd_sftp_account() {
    [[ $# -eq 3 ]] || die "usage: nodes.sh sftp-account <node> <user> <from-node>"
    local node=$1 user=$2 from=$3 dir=$RUN/$1 uid pub hostkey ip pid i
    require_node "$node"
    require_node "$from"
    [[ $user =~ ^[a-z][a-z0-9]{0,15}$ ]] || die "bad user name '$user'"
    ! grep -q "^$user:" /etc/passwd || die "$user is an account of the host already"
    uid=61000 # one no host account or group has
    while cut -d: -f3 /etc/passwd /etc/group | grep -qx "$uid"; do uid=$((uid + 1)); done
    pub=$(in_mnt "$from" cat /root/.ssh/id_ed25519.pub)
    install -d -m 755 "$dir/sftp"
    { cat /etc/passwd; echo "$user:x:$uid:$uid:sftp only:/:/usr/sbin/nologin"; } >"$dir/sftp/passwd"
    { cat /etc/group; echo "$user:x:$uid:"; } >"$dir/sftp/group"
    printf 'restrict %s\n' "$pub" >"$dir/sftp/$user.keys"
    chmod 644 "$dir/sftp/passwd" "$dir/sftp/group" "$dir/sftp/$user.keys"
    in_mnt "$node" sh -ec '
        dir=$1 user=$2 uid=$3 data=$4
        for f in passwd group; do
            if findmnt -n --mountpoint "/etc/$f" >/dev/null; then umount "/etc/$f"; fi
            mount --bind "$dir/sftp/$f" "/etc/$f"
        done
        install -d -m 755 -o root -g root "$data/sftp" "$data/sftp/$user"
        install -d -m 700 -o "$uid" -g "$uid" "$data/sftp/$user/data"
    ' sh "$dir" "$user" "$uid" "$DATA"
    ip=$(node_ip "$node")
    if ! grep -qx "Match User $user" "$dir/sshd_config"; then
        cat >>"$dir/sshd_config" <<EOF
Match User $user
    AuthorizedKeysFile $dir/sftp/$user.keys
    ChrootDirectory $DATA/sftp/$user
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
    PermitTTY no
EOF
        pid=$(pid_from "$dir/sshd.pid")
        [[ -n $pid ]] || die "$node: no sshd pid"
        local listening
        listening=$(grep -c "Server listening on" "$dir/sshd.log" || true)
        kill -HUP "$pid"
        # sshd executes itself again on SIGHUP: wait for the new listener.
        for ((i = 0; i < 100; i++)); do
            (($(grep -c "Server listening on" "$dir/sshd.log" || true) > listening)) && break
            sleep 0.1
        done
        ((i < 100)) || die "$node: sshd did not come back after SIGHUP"
    fi
    hostkey=$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")
    in_mnt "$from" sh -ec "$REPLACE_LINE" sh /root/.ssh/known_hosts "[$ip]:$PORT " \
        "[$ip]:$PORT $hostkey"
    echo "$uid"
}

# ---------------------------------------------------------------- exec, ip, link

cmd_exec() {
    [[ $# -ge 2 ]] || die "usage: nodes.sh exec <node> <cmd...>"
    local node=$1; shift
    require_node "$node"
    export BUTTERVOLUME_SOCKET=$RUN/$node/btrfs.sock SSH_PORT=$PORT
    # nsenter opens both namespace files before switching, and leaves the cwd
    # at the node's "/": go back to the caller's cwd when it exists there.
    exec nsenter --net="/run/netns/$node" --mount="$RUN/$node/mntns" -- \
        /bin/sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$PWD" "$@"
}

cmd_ip() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh ip <node>"
    require_node "$1"
    node_ip "$1"
}

cmd_link() {
    [[ $# -eq 2 && $2 =~ ^(up|down)$ ]] || die "usage: nodes.sh link <node> down|up"
    require_node "$1"
    ip -n "$1" link set eth0 "$2"
}

# ---------------------------------------------------------------- daemon

cmd_daemon_start() {
    [[ $# -ge 2 ]] || die "usage: nodes.sh daemon-start <node> <binary> [KEY=VAL...]"
    local node=$1 binary=$2 kv pid i
    shift 2
    require_node "$node"
    [[ -x $binary && -f $binary ]] || die "not an executable file: $binary"
    binary=$(realpath "$binary")
    for kv in "$@"; do
        [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "bad environment assignment '$kv'"
    done
    local dir=$RUN/$node sock=$RUN/$node/btrfs.sock
    pid=$(pid_from "$dir/daemon.pid" || true)
    if [[ -n $pid ]] && alive "$pid"; then
        die "$node: daemon already running (pid $pid); daemon-stop it first"
    fi
    rm -f "$sock" "$dir/daemon.pid"
    echo "=== $(date '+%F %T') daemon-start $binary $*" >>"$dir/daemon.log"
    # setsid: own process group, so daemon-kill/stop can take its children too.
    # env sets the variables and execs the shell, which writes its own pid
    # and execs the daemon: the pid file holds the daemon's pid.
    setsid nsenter --net="/run/netns/$node" --mount="$dir/mntns" -- \
        env BUTTERVOLUME_SOCKET="$sock" SSH_PORT="$PORT" \
        BUTTERVOLUME_DOCKER_SOCKET="$dir/docker/run/docker.sock" "$@" \
        /bin/sh -c 'echo $$ >"$0"; exec "$@"' "$dir/daemon.pid" "$binary" run \
        </dev/null >>"$dir/daemon.log" 2>&1 &
    for ((i = 0; i < 100; i++)); do
        pid=$(pid_from "$dir/daemon.pid" || true)
        if [[ -n $pid ]] && ! alive "$pid"; then break; fi
        if [[ -S $sock ]] && socket_answers "$sock"; then return 0; fi
        sleep 0.1
    done
    cat "$dir/daemon.log" >&2
    die "$node: daemon did not answer on $sock"
}

socket_answers() {
    if command -v curl >/dev/null; then
        curl -s -o /dev/null --max-time 2 --unix-socket "$1" -X POST http://localhost/Plugin.Activate
    else
        python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1"
    fi
}

cmd_daemon_stop() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh daemon-stop <node>"
    local node=$1 file=$RUN/$1/daemon.pid pid
    require_node "$node"
    pid=$(pid_from "$file" || true)
    if [[ -z $pid ]] || ! alive "$pid"; then
        rm -f "$file"
        echo "$node: daemon not running"
        return 0
    fi
    kill -TERM "$pid"
    if ! wait_dead 20 "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$file"
        die "$node: daemon (pid $pid) ignored SIGTERM for 20 s; killed"
    fi
    # Like a container stop: whatever the daemon left in its group goes too.
    kill_group_members "$pid"
    rm -f "$file"
}

cmd_daemon_kill() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh daemon-kill <node>"
    local node=$1 file=$RUN/$1/daemon.pid pid
    require_node "$node"
    pid=$(pid_from "$file" || true)
    if [[ -n $pid ]] && alive "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait_dead 5 "$pid" || die "$node: daemon (pid $pid) survived SIGKILL"
    else
        echo "$node: daemon not running"
    fi
    rm -f "$file"
}

# ---------------------------------------------------------------- etcd

# A member of an etcd cluster whose members are <member>... (node names,
# this node among them), in the node's network namespace: clients on
# <ip>:2379, peers on <ip>:2380, data in $RUN/<node>/etcd (kept across
# restarts). A partitioned node's member loses quorum, as in production.
cmd_etcd_start() {
    [[ $# -ge 2 ]] || die "usage: nodes.sh etcd-start <node> <member>..."
    local node=$1 dir=$RUN/$1 m cluster="" pid i ip
    shift
    require_node "$node"
    command -v etcd >/dev/null || die "etcd is not installed (Debian: etcd-server)"
    for m in "$@"; do
        require_node "$m"
        cluster+="${cluster:+,}$m=http://$(node_ip "$m"):2380"
    done
    ip=$(node_ip "$node")
    pid=$(pid_from "$dir/etcd.pid" || true)
    if [[ -n $pid ]] && alive "$pid"; then return 0; fi
    mkdir -p "$dir/etcd"
    echo "=== $(date '+%F %T') etcd-start" >>"$dir/etcd.log"
    setsid nsenter --net="/run/netns/$node" -- \
        /bin/sh -c 'echo $$ >"$0"; exec "$@"' "$dir/etcd.pid" etcd \
        --name "$node" --data-dir "$dir/etcd" \
        --listen-client-urls "http://$ip:2379,http://127.0.0.1:2379" \
        --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" \
        --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token "bv-$(printf %s "$cluster" | md5sum | cut -c1-12)" \
        --heartbeat-interval 100 --election-timeout 1000 \
        </dev/null >>"$dir/etcd.log" 2>&1 &
    for ((i = 0; i < 50; i++)); do
        pid=$(pid_from "$dir/etcd.pid" || true)
        if [[ -n $pid ]]; then return 0; fi
        sleep 0.1
    done
    die "$node: etcd did not start (log: $dir/etcd.log)"
}

cmd_etcd_stop() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh etcd-stop <node>"
    require_node "$1"
    stop_pidfile "$RUN/$1/etcd.pid" 5
}

# ---------------------------------------------------------------- docker

cmd_docker_start() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh docker-start <node>"
    local node=$1 dir=$RUN/$1
    require_node "$node"
    nsenter --net="/run/netns/$node" --mount="$dir/mntns" -- \
        "$DOCKERD_SH" start "$dir/docker" --plugins "$dir" --data "$DATA" >/dev/null ||
        die "$node: dockerd did not start (log: $dir/docker/dockerd.log)"
}

cmd_docker() {
    [[ $# -ge 1 ]] || die "usage: nodes.sh docker <node> <args...>"
    local node=$1
    shift
    require_node "$node"
    [[ -S $RUN/$node/docker/run/docker.sock ]] || die "$node: no dockerd (see: nodes.sh docker-start)"
    DOCKER_HOST=unix://$RUN/$node/docker/run/docker.sock exec docker "$@"
}

cmd_docker_stop() {
    [[ $# -eq 1 ]] || die "usage: nodes.sh docker-stop <node>"
    require_node "$1"
    "$DOCKERD_SH" stop "$RUN/$1/docker"
}

# ---------------------------------------------------------------- main

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
cmd=$1; shift
case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    pair) cmd_pair "$@" ;;
    sftp-account) cmd_sftp_account "$@" ;;
    exec) cmd_exec "$@" ;;
    ip) cmd_ip "$@" ;;
    link) cmd_link "$@" ;;
    daemon-start) cmd_daemon_start "$@" ;;
    daemon-stop) cmd_daemon_stop "$@" ;;
    daemon-kill) cmd_daemon_kill "$@" ;;
    etcd-start) cmd_etcd_start "$@" ;;
    etcd-stop) cmd_etcd_stop "$@" ;;
    docker-start) cmd_docker_start "$@" ;;
    docker) cmd_docker "$@" ;;
    docker-stop) cmd_docker_stop "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
esac
