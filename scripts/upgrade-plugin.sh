#!/usr/bin/env bash
# Replaces an installed buttervolume managed plugin by a fresh build, in
# place, under the same name. Works from an older build of this project or
# from the reference (Python) plugin.
#
# Usage: scripts/upgrade-plugin.sh [--force] [name]
#   name     installed plugin (default anybox/buttervolume:latest)
#   --force  upgrade even while running containers use its volumes
# Environment: BV_BINARY=<path> uses that binary instead of building one.
#
# What survives: volumes, snapshots, schedule, config.ini and ssh keys all
# live on the host under /var/lib/buttervolume, which the plugin only
# bind-mounts. Settings made with `docker plugin set` (SSH_PORT, ...) are read
# from the old plugin and applied to the new one. The old plugin's sshd host
# keys are kept in /var/lib/buttervolume/state/sshd/ when that holds none yet
# (the reference plugin had them inside its rootfs), so peers keep trusting
# this host.
#
# Why `disable -f` / `rm -f`: Docker counts every volume of the driver as a
# use of the plugin, so a plain `docker plugin disable` refuses as soon as one
# volume exists. Forcing only skips that count; the volumes stay in Docker's
# database and on disk. Running containers keep their mounts through the
# switch (their bind mounts do not depend on the plugin process), but a
# container started, stopped or a volume created during the few seconds of
# the switch would fail: hence the check for running users, which --force
# skips.
#
# Safety net: the old plugin's rootfs and config are copied first; if the new
# one cannot be created or enabled, the old one is put back.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=/var/lib/buttervolume
force=false
if [[ ${1:-} == --force ]]; then force=true; shift; fi
name=${1:-anybox/buttervolume:latest}
[[ ${name##*/} == *:* ]] || name=$name:latest

die() { echo "upgrade-plugin.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
docker plugin inspect "$name" >/dev/null 2>&1 ||
    die "no plugin named $name is installed: use scripts/install-plugin.sh $name"

# 1. Build first: nothing is stopped if the build fails.
dir=$repo/plugin/build/$(tr '/:' '__' <<<"$name")
"$repo/plugin/build.sh" --output "$dir" ${BV_BINARY:+--binary "$BV_BINARY"} >/dev/null

# 2. What to carry over.
old_id=$(docker plugin inspect -f '{{.Id}}' "$name")
old_rootfs=$(docker info -f '{{.DockerRootDir}}')/plugins/$old_id/rootfs
mapfile -t old_env < <(docker plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}' "$name" | sed '/^$/d')
echo "current settings: ${old_env[*]:-none}"

# Containers running with a volume of this driver.
users=()
for volume in $(docker volume ls -q -f "driver=$name"); do
    while read -r c; do [[ -n $c ]] && users+=("$c ($volume)"); done \
        < <(docker ps -f "volume=$volume" --format '{{.Names}}')
done
if ((${#users[@]})) && ! $force; then
    echo "Running containers use volumes of $name:" >&2
    printf '  %s\n' "${users[@]}" >&2
    echo "They keep running through the upgrade, but containers started or stopped" >&2
    echo "during it would fail. Stop them first, or run again with --force." >&2
    exit 1
fi

# 3. sshd host keys: keep the ones peers know. `run --sshd` keeps its keys in
# $data/state/sshd/ (the default STATE_PATH); the reference plugin had them
# in its rootfs. Copied only when the new location has none yet.
keys=$data/state/sshd
if [[ ! -e $keys/ssh_host_ed25519_key ]] &&
    compgen -G "$old_rootfs/etc/ssh/ssh_host_*_key" >/dev/null; then
    install -d -m 700 "$keys"
    cp -p "$old_rootfs"/etc/ssh/ssh_host_*_key "$old_rootfs"/etc/ssh/ssh_host_*_key.pub "$keys/"
    echo "kept the old plugin's sshd host keys in $keys/"
fi

# 4. Safety copy of the old plugin (rootfs + manifest) for a rollback.
backup=$(mktemp -d "$repo/plugin/build/.previous.XXXXXX")
trap 'rm -rf "$backup"' EXIT
cp -a "$old_rootfs" "$backup/rootfs"
docker plugin inspect -f '{{json .Config}}' "$name" >"$backup/config.json"

apply_settings() { # <plugin> : re-applies old_env entries that it declares settable
    local plugin=$1 settable kv
    settable=$(docker plugin inspect -f \
        '{{range .Config.Env}}{{$n := .Name}}{{range .Settable}}{{if eq . "value"}}{{println $n}}{{end}}{{end}}{{end}}' "$plugin")
    for kv in "${old_env[@]}"; do
        if grep -qxF -- "${kv%%=*}" <<<"$settable"; then
            docker plugin set "$plugin" "$kv"
        else
            echo "not carried over (not settable in the new plugin): $kv" >&2
        fi
    done
}

rollback() {
    echo "upgrade failed; putting the previous plugin back" >&2
    docker plugin disable -f "$name" >/dev/null 2>&1 || true
    docker plugin rm -f "$name" >/dev/null 2>&1 || true
    docker plugin create "$name" "$backup" >/dev/null
    apply_settings "$name"
    docker plugin enable "$name" >/dev/null
    docker plugin ls >&2
    die "the previous plugin is back; the new build is in $dir"
}

# 5. The switch.
echo "replacing $name ..."
if [[ $(docker plugin inspect -f '{{.Enabled}}' "$name") == true ]]; then
    docker plugin disable -f "$name" >/dev/null
fi
docker plugin rm -f "$name" >/dev/null
docker plugin create "$name" "$dir" >/dev/null || rollback
apply_settings "$name" || rollback
docker plugin enable "$name" >/dev/null || rollback
[[ $(docker plugin inspect -f '{{.Enabled}}' "$name") == true ]] || rollback
docker plugin ls
echo "$name upgraded; volumes: $(docker volume ls -q -f "driver=$name" | wc -l)"
