#!/usr/bin/env bash
# One command from a fresh Debian machine to a running plugin (legacy mode):
# installs the packages, builds the release binary, installs it as
# /usr/local/bin/buttervolume, prepares /var/lib/buttervolume (a loop-backed
# btrfs image when it is not btrfs already), starts dockerd if needed and
# starts the daemon on /run/docker/plugins/btrfs.sock (driver name `btrfs`).
# Run as root. Re-running it restarts the daemon with the new binary.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

scripts/install-deps.sh
cargo build --release
install -m 0755 target/release/buttervolume /usr/local/bin/buttervolume
buttervolume init --loop-size "${LOOP_SIZE:-20G}"
scripts/start-dockerd.sh

log=/var/log/buttervolume.log
if [ -f /run/buttervolume.pid ] && kill -0 "$(cat /run/buttervolume.pid)" 2>/dev/null; then
    echo "stopping the previous daemon"
    kill "$(cat /run/buttervolume.pid)"
    while kill -0 "$(cat /run/buttervolume.pid)" 2>/dev/null; do sleep 0.1; done
fi
nohup buttervolume run >>"$log" 2>&1 &
echo $! > /run/buttervolume.pid
for _ in $(seq 1 50); do
    [ -S /run/docker/plugins/btrfs.sock ] && break
    sleep 0.1
done
if [ ! -S /run/docker/plugins/btrfs.sock ]; then
    echo "the daemon did not start; its log:" >&2
    tail -n 30 "$log" >&2
    exit 1
fi
echo "buttervolume is running (pid $(cat /run/buttervolume.pid), log $log)."
echo "Try: docker volume create -d btrfs myvol && buttervolume snapshot myvol"
