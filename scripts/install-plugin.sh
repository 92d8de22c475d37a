#!/usr/bin/env bash
# Builds and installs buttervolume as a Docker managed plugin, in one command.
#
# Usage: scripts/install-plugin.sh [name]
#   name   plugin name (default anybox/buttervolume:latest, the reference's,
#          so compose files with `driver: anybox/buttervolume:latest` keep
#          working). `:latest` is added when no tag is given.
#
# Steps: plugin/build.sh (base rootfs from the Debian mirror, cached, plus the
# release binary); `buttervolume init` with the fresh binary, which makes
# /var/lib/buttervolume a btrfs filesystem when it is not one (sparse loop
# image /var/lib/buttervolume.img, LOOP_SIZE env, default 20G) and creates
# volumes/ snapshots/ received/ config/ ssh/ there; `docker plugin create`;
# `docker plugin enable`; waits until the plugin answers.
# An already installed plugin of that name is left alone: use
# scripts/upgrade-plugin.sh to replace it.
# Environment: BV_BINARY=<path> uses that binary instead of building one with
# cargo; LOOP_SIZE sets the size of a new loop image.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=/var/lib/buttervolume

name=${1:-anybox/buttervolume:latest}
[[ ${name##*/} == *:* ]] || name=$name:latest

die() { echo "install-plugin.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
docker version >/dev/null 2>&1 || die "docker does not answer (is dockerd running?)"

if docker plugin inspect "$name" >/dev/null 2>&1; then
    echo "A plugin named $name is already installed:" >&2
    docker plugin ls >&2
    echo "Nothing changed. To replace it while keeping volumes, snapshots," >&2
    echo "schedule, keys and settings, run: scripts/upgrade-plugin.sh $name" >&2
    exit 1
fi

dir=$repo/plugin/build/$(tr '/:' '__' <<<"$name")
"$repo/plugin/build.sh" --output "$dir" ${BV_BINARY:+--binary "$BV_BINARY"} >/dev/null
binary=${BV_BINARY:-$repo/target/release/buttervolume}

# Data root: btrfs (loop image if needed) with the directories the plugin's
# bind mounts need (Docker refuses to start it when a mount source is missing).
"$binary" init --loop-size "${LOOP_SIZE:-20G}"
install -d -m 700 "$data/ssh"
install -d -m 755 "$data/config"
if [[ $(findmnt -n -o SOURCE --target "$data" 2>/dev/null) == /dev/loop* ]] &&
    ! grep -qs "^[^#]*[[:space:]]${data}[[:space:]]" /etc/fstab; then
    echo "NOTE: $data is a loop-mounted image. So that it is mounted before"
    echo "Docker starts the plugin at boot, add this line to /etc/fstab:"
    echo "    $data.img $data btrfs loop,nofail 0 0"
fi

echo "creating plugin $name from $dir ..."
docker plugin create "$name" "$dir" >/dev/null
echo "enabling $name ..."
if ! docker plugin enable "$name" >/dev/null; then
    echo "enabling failed; the plugin stays installed and disabled." >&2
    echo "Its output is in the Docker daemon's log (journalctl -u docker," >&2
    echo "lines with plugin=<id>). Remove it with: docker plugin rm $name" >&2
    exit 1
fi
# `enable` returns once Docker reached the plugin's socket.
[[ $(docker plugin inspect -f '{{.Enabled}}' "$name") == true ]] || die "$name is not enabled"
docker plugin ls
echo "$name is installed. Use it with: docker volume create -d $name <volume>"
