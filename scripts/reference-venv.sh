#!/usr/bin/env bash
# Installs the reference implementation, buttervolume 3.13 from PyPI, in a
# venv (idempotent). Used by the compatibility tests and the benchmarks;
# nothing of it is part of this project.
set -euo pipefail
venv=${BUTTERVOLUME_REFERENCE_VENV:-/opt/bv-ref}
if [ ! -x "$venv/bin/buttervolume" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q buttervolume==3.13
fi
echo "reference buttervolume: $("$venv/bin/buttervolume" --version)"
