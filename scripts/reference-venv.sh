#!/usr/bin/env bash
# Installs the reference implementation, buttervolume 3.13 from PyPI, in a
# venv, and the 3.4 client in another (idempotent). Used by the compatibility tests and the benchmarks;
# nothing of it is part of this project.
set -euo pipefail
venv=${BUTTERVOLUME_REFERENCE_VENV:-/opt/bv-ref}
if [ ! -x "$venv/bin/buttervolume" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q buttervolume==3.13
fi
echo "reference buttervolume: $("$venv/bin/buttervolume" --version)"
# The 3.4 CLI, which the cluster's consul image builds and drives the plugin
# with (tests/it/reference_cli.rs checks its requests too).
venv34=${BUTTERVOLUME_REFERENCE34_VENV:-/opt/bv-ref34}
if [ ! -x "$venv34/bin/buttervolume" ]; then
    python3 -m venv "$venv34"
    "$venv34/bin/pip" install -q buttervolume==3.4
fi
echo "buttervolume 3.4 client in $venv34"
