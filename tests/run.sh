#!/usr/bin/env bash
# Runs the whole test suite on the CPU; 8 fake devices so the sharding tests see a mesh.
set -euo pipefail
export JAX_PLATFORMS=cpu
export TF_CPP_MIN_LOG_LEVEL=3
python -m pytest -q -n 2 --dist loadfile tests "$@"
