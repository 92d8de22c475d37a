#!/usr/bin/env bash
# Starts dockerd in the background unless one already answers (idempotent),
# waits until it answers, and imports the busybox test image `bv-busybox`.
# On failure it prints the daemon's log.
set -euo pipefail
log=/var/log/buttervolume-dockerd.log

if ! docker version >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null; then
        echo "dockerd is not installed (apt-get install docker.io)" >&2
        exit 1
    fi
    # Close inherited descriptors (e.g. a build lock held by the caller):
    # dockerd lives on and would hold them forever.
    nohup dockerd >"$log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    for _ in $(seq 1 60); do
        docker version >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker version >/dev/null 2>&1; then
        echo "dockerd did not answer within 60 s; its log:" >&2
        tail -n 100 "$log" >&2
        exit 1
    fi
fi
echo "dockerd is up ($(docker version --format '{{.Server.Version}}'))"

"$(dirname "$0")/import-test-image.sh"
