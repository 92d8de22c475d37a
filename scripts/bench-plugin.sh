#!/usr/bin/env bash
# Measures the managed plugin: rootfs size, `docker plugin create` time,
# `docker plugin enable` time, and the time from the start of `enable` until
# `docker volume create -d <plugin>` succeeds. For this project's plugin and,
# for comparison, for the reference buttervolume 3.13 packaged the same way
# (mmdebstrap Debian rootfs + python3 + `pip install buttervolume==3.13`, the
# reference's manifest with `buttervolume run` as entrypoint).
# Not part of CI: it needs root, dockerd, the Debian mirror and PyPI.
#
# Usage: scripts/bench-plugin.sh [--runs N] [--ours-only|--reference-only]
# Environment: BV_BINARY=<path> benchmarks that binary instead of a fresh
# `cargo build --release`; MIRROR, SECURITY_MIRROR: Debian mirrors for the
# reference rootfs (default deb.debian.org). The reference rootfs is built once and kept in
# /var/tmp/buttervolume-bench/ (outside the repository).
# Installs temporary plugins bvbench/ours:latest and bvbench/reference:latest
# and removes them (and their test volumes) at the end. /var/lib/buttervolume
# must already be btrfs (scripts/install-plugin.sh or `buttervolume init`).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=1
do_ours=true
do_ref=true
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --ours-only) do_ref=false; shift ;;
        --reference-only) do_ours=false; shift ;;
        *) echo "usage: $0 [--runs N] [--ours-only|--reference-only]" >&2; exit 2 ;;
    esac
done
die() { echo "bench-plugin.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
[[ $(stat -f -c %T /var/lib/buttervolume 2>/dev/null) == btrfs ]] ||
    die "/var/lib/buttervolume is not btrfs: run scripts/install-plugin.sh or buttervolume init first"
install -d -m 700 /var/lib/buttervolume/ssh
install -d /var/lib/buttervolume/config

work=$(mktemp -d /var/tmp/bv-bench.XXXXXX)
cache=/var/tmp/buttervolume-bench
mkdir -p "$cache"
plugins=()
cleanup() {
    local p v
    for p in "${plugins[@]}"; do
        for v in $(docker volume ls -q -f "driver=$p" 2>/dev/null); do
            docker volume rm -f "$v" >/dev/null 2>&1 || true
        done
        docker plugin disable -f "$p" >/dev/null 2>&1 || true
        docker plugin rm -f "$p" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
free_port() { # a TCP port nobody listens on, so sshd in the plugins cannot clash
    local p
    for p in $(seq 2300 2399); do
        ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
    echo 2399
}

# The reference packaged like ours: Debian rootfs, python3, pip install.
build_reference() { # <plugin dir>
    local dir=$1 tar=$cache/reference-3.13-rootfs.tar
    if [[ ! -f $tar ]]; then
        echo "building the reference rootfs (mmdebstrap + pip install buttervolume==3.13) ..." >&2
        # Wheels are fetched by the host's pip (its index and CA settings),
        # then installed offline in the rootfs's python3 (3.11 on bookworm).
        export BV_WHEELS=$work/wheels
        python3 -m pip download --quiet --dest "$BV_WHEELS" --only-binary=:all: \
            --python-version 3.11 --platform manylinux2014_x86_64 buttervolume==3.13 ||
            die "pip download buttervolume==3.13 failed"
        # shellcheck disable=SC2016 # the hooks expand $1 (the rootfs) themselves
        SOURCE_DATE_EPOCH=1735689600 mmdebstrap --mode=root --variant=essential --format=tar \
            --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
            --include=python3,python3-pip,btrfs-progs,e2fsprogs,openssh-server,openssh-client,rsync,tini \
            --aptopt='APT::Install-Recommends "false"' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook='cp -r "$BV_WHEELS" "$1/tmp/wheels"' \
            --customize-hook='chroot "$1" python3 -m pip install --quiet --no-cache-dir --break-system-packages --no-index --find-links /tmp/wheels buttervolume==3.13' \
            --customize-hook='rm -rf "$1/tmp/wheels"' \
            --customize-hook='mkdir -p "$1/run/docker/plugins"' \
            bookworm "$tar.tmp" "deb ${MIRROR:-http://deb.debian.org/debian} bookworm main" \
            "deb ${MIRROR:-http://deb.debian.org/debian} bookworm-updates main" \
            "deb ${SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main" \
            </dev/null >"$work/ref-mmdebstrap.log" 2>&1 ||
            { tail -n 30 "$work/ref-mmdebstrap.log" >&2; die "building the reference rootfs failed"; }
        mv "$tar.tmp" "$tar"
    fi
    mkdir -p "$dir/rootfs"
    tar -C "$dir/rootfs" --numeric-owner -xpf "$tar"
    # The reference's manifest is ours minus our settings, with its entrypoint.
    python3 - "$repo/config.json" "$dir/config.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
config["Entrypoint"] = ["/usr/local/bin/buttervolume", "run"]
config.pop("WorkDir", None)
config["Env"] = [e for e in config["Env"] if e["Name"] == "SSH_PORT"]
json.dump(config, open(sys.argv[2], "w"), indent=4)
EOF
}

# One measurement: create, enable, first volume; prints a result line.
measure() { # <label> <plugin name> <plugin dir>
    local label=$1 name=$2 dir=$3 size t0 create enable ready volume
    size=$(du -sb "$dir/rootfs" | cut -f1)
    plugins+=("$name")
    t0=$(now)
    docker plugin create "$name" "$dir" >/dev/null
    create=$(since "$t0")
    docker plugin set "$name" "SSH_PORT=$(free_port)"
    volume=bvbench-$label-$$
    t0=$(now)
    docker plugin enable "$name" >/dev/null
    enable=$(since "$t0")
    for _ in $(seq 1 300); do
        docker volume create -d "$name" "$volume" >/dev/null 2>&1 && break
        sleep 0.05
    done
    ready=$(since "$t0")
    docker volume inspect "$volume" >/dev/null 2>&1 || die "$label: volume create never succeeded"
    printf '%-10s %10s %10s %10s %18s\n' "$label" \
        "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')" "$create" "$enable" "$ready"
    docker volume rm "$volume" >/dev/null
    docker plugin disable -f "$name" >/dev/null
    docker plugin rm -f "$name" >/dev/null
}

if $do_ours; then
    "$repo/plugin/build.sh" --output "$work/ours" ${BV_BINARY:+--binary "$BV_BINARY"} >/dev/null
fi
if $do_ref; then
    build_reference "$work/reference"
fi

printf '%-10s %10s %10s %10s %18s\n' plugin rootfs_MB create_s enable_s enable_to_volume_s
for ((i = 0; i < runs; i++)); do
    if $do_ours; then measure ours bvbench/ours:latest "$work/ours"; fi
    if $do_ref; then measure reference bvbench/reference:latest "$work/reference"; fi
done
