#!/usr/bin/env bash
# Bounded fuzzing of the parsers that face untrusted input, on stable Rust
# (cargo fuzz needs nightly): runs examples/fuzz.rs for each target for a
# bounded time and prints, per target, iterations, accepted inputs and
# crashes (panics + property violations). Exit status 1 if any crashed;
# failing inputs are saved under target/fuzz-findings/.
#
# Usage: scripts/fuzz.sh [target...]
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_SEED      PRNG seed (default: the harness's fixed seed)
#   FUZZ_PROFILE   cargo profile (default dev: overflow checks on)
#   CARGO_LOCK     if set, cargo runs under `flock $CARGO_LOCK`
# Targets: forced-command schedule-csv purge names stream-rename
# stream-confine (all by default); stream-confine feeds every command after
# the first through stream::copy_checked and the receive confinement,
# checked against an independent model of the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
profile=${FUZZ_PROFILE:-dev}
lock=()
[ -n "${CARGO_LOCK:-}" ] && lock=(flock "$CARGO_LOCK")
"${lock[@]}" cargo build --quiet --profile "$profile" --example fuzz
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
args=(--seconds "$seconds")
[ -n "${FUZZ_SEED:-}" ] && args+=(--seed "$FUZZ_SEED")
echo "fuzz: ${seconds} s per target, profile $profile, $(rustc --version)"
exec "target/$dir/examples/fuzz" "${args[@]}" "$@"
