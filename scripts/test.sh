#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing,
# starts dockerd, mounts the loop btrfs for tests, installs the reference
# buttervolume for the compatibility tests, then runs format, lint and
# every unit and integration test. Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the tests create btrfs subvolumes, netns and use docker" >&2; exit 1; }

scripts/install-deps.sh
scripts/test-btrfs.sh
scripts/start-dockerd.sh
scripts/reference-venv.sh

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets --no-fail-fast -- --test-threads "${TEST_THREADS:-4}"
