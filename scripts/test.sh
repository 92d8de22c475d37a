#!/usr/bin/env bash
# The whole test suite, from a fresh machine, as root:
#
#   scripts/test.sh                   format, lint, every unit and integration test
#   scripts/test.sh <filter> [args]   only the unit and integration tests whose
#                                     path contains <filter> (e.g. `swarm`,
#                                     `schedule::`): `cargo test --lib --bins
#                                     --test it -- <filter> [args]`
#   scripts/test.sh --<cargo test args>   only `cargo test <args>`, e.g.
#                                     `--test it replication::` or `--lib purge`
#
# The integration tests are one binary, tests/it/ (one module per area; the
# fixtures are the testkit/ crate), so a test's path is `<area>::<name>`,
# e.g. `schedule::a_job_runs_once`. `--test <area>` (the layout before one
# binary) still works: it runs `--test it <area>::`.
#
# Safe next to a production buttervolume and the host's Docker: the tests
# never use the host's dockerd, /run/docker/plugins, /var/lib/buttervolume or
# /etc/buttervolume. This script installs what is missing (apt packages, the
# reference buttervolume 3.13 in a venv at /opt/bv-ref), then, for this run
# only (removed at the end, also after a failure or Ctrl-C):
#   - a sparse loop btrfs /var/tmp/bvtest-<pid>/btrfs.img mounted on
#     /var/tmp/bvtest-<pid>/btrfs (BUTTERVOLUME_TEST_BTRFS);
#   - a private dockerd (tests/dockerd/dockerd.sh) in its own mount and
#     network namespaces, state in /run/bvtest-<pid>/ (DOCKER_HOST,
#     BUTTERVOLUME_TEST_DOCKERD), whose /var/lib/buttervolume is a directory
#     of that btrfs;
# and the tests themselves create (and remove) network-namespace nodes
# (tests/nodes/nodes.sh: /run/bvnodes, /var/tmp/bvnodes, loop devices).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the tests create btrfs subvolumes, namespaces and a private dockerd" >&2; exit 1; }

scripts/install-deps.sh
scripts/reference-venv.sh

id=$$
state=/run/bvtest-$id   # the private dockerd (short: unix socket paths)
work=/var/tmp/bvtest-$id

# Removes what a run (this one, or an earlier one that was killed) made.
cleanup_run() { # <id> [verbose]
    local state=/run/bvtest-$1 work=/var/tmp/bvtest-$1
    if [ -n "${2:-}" ] && [ -f "$state/dockerd.log" ]; then
        echo "=== private dockerd log (tail) ===" >&2
        tail -n 60 "$state/dockerd.log" >&2
    fi
    # Test nodes of that run, when its test process was killed before
    # tearing them down.
    local owner tag
    for owner in /run/bvnodes/*/owner; do
        [ -f "$owner" ] && [ "$(cat "$owner")" = "$1" ] || continue
        tag=$(cat "$(dirname "$owner")/tag" 2>/dev/null) || continue
        tests/nodes/nodes.sh down "$tag" || true
    done
    tests/dockerd/dockerd.sh stop "$state" || true
    if mountpoint -q "$work/btrfs"; then
        umount "$work/btrfs" 2>/dev/null || umount -l "$work/btrfs" || true
    fi
    rm -rf "$work"
}

# Leftovers of runs that were killed before their own cleanup.
for dir in /run/bvtest-[0-9]* /var/tmp/bvtest-[0-9]* /run/bvnodes/*/owner; do
    [ -e "$dir" ] || continue
    case $dir in
        */owner) old=$(cat "$dir"); [ -n "$old" ] || continue ;;
        *) old=${dir##*-} ;;
    esac
    if [ "$old" != "$id" ] && ! grep -qs test.sh "/proc/$old/cmdline"; then
        echo "removing the leftovers of an earlier run ($dir)"
        cleanup_run "$old"
    fi
done

child=
status=1
finish() {
    trap - EXIT INT TERM
    if [ -n "$child" ]; then kill -TERM -- "-$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
    if [ "$status" = 0 ]; then cleanup_run "$id"; else cleanup_run "$id" verbose; fi
    exit "$status"
}
trap finish EXIT
trap 'status=130; finish' INT
trap 'status=143; finish' TERM

scripts/test-btrfs.sh "$work/btrfs" 8G "$work/btrfs.img"
mkdir -p "$work/btrfs/dockerd-data"
tests/dockerd/dockerd.sh start "$state" --data "$work/btrfs/dockerd-data" --new-netns \
    --hide /etc/buttervolume
echo "private dockerd for the tests: DOCKER_HOST=unix://$state/run/docker.sock"
export BVNODES_OWNER=$id
export BUTTERVOLUME_TEST_BTRFS=$work/btrfs
export BUTTERVOLUME_TEST_DOCKERD=$state
export DOCKER_HOST=unix://$state/run/docker.sock

# In the background, in its own process group, so that a TERM or Ctrl-C
# reaches the trap at once and takes the tests down with it.
run() {
    set -m
    "$@" &
    child=$!
    set +m
    local rc=0
    wait "$child" || rc=$?
    child=
    return "$rc"
}

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    # A filter: the unit tests (lib, bin) and the integration binary.
    run cargo test --lib --bins --test it --no-fail-fast -- "$@"
elif [ "${1:-}" = --test ] && [ -n "${2:-}" ] && [ "$2" != it ]; then
    # The former per-file binaries: `--test <area> [filter] [-- args]`.
    filter=$2::
    shift 2
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then filter=$1; shift; fi
    [ "${1:-}" != -- ] || shift
    echo "the integration tests are one binary: cargo test --test it -- $filter $*" >&2
    run cargo test --test it -- "$filter" "$@"
elif [ $# -gt 0 ]; then
    run cargo test "$@"
else
    run cargo fmt --all -- --check
    run cargo clippy --workspace --all-targets -- -D warnings
    run cargo test --workspace --all-targets --no-fail-fast -- --test-threads "${TEST_THREADS:-4}"
    # The bounded fuzz harness, briefly (BENCHMARKS.md has the long runs).
    run env FUZZ_SECONDS="${FUZZ_SECONDS:-2}" scripts/fuzz.sh
fi
status=0
