#!/usr/bin/env bash
# Installs the Debian packages buttervolume needs to build, run and be tested
# (idempotent: does nothing when everything is already there).
set -euo pipefail
packages=(
    btrfs-progs libbtrfsutil-dev libclang-dev pkg-config   # build + btrfs
    openssh-server openssh-client rsync                    # replication
    restic                                                 # backups (issue 25)
    etcd-server etcd-client protobuf-compiler              # cluster mode: etcd in tests; protoc builds the etcd client
    docker.io docker-compose busybox-static                # Docker e2e tests
    iproute2 util-linux curl python3-venv attr             # test harness
    prometheus                                             # metrics tests (a real server scrapes)
    mmdebstrap tini                                        # managed plugin build
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Installed here only for the tests, which run their own server on a
    # private port: on a systemd host the package would also start one on
    # *:9090 at every boot.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    # Likewise etcd: the tests run their own members in network namespaces.
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
