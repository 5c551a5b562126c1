#!/usr/bin/env bash
# Every GPU check in one command (benchmarks/gpu_check.py): run from the repository root on a
# machine with a GPU after `pip install -e .`; installs nothing. Extra arguments pass through
# (--dry-run checks the script on a CPU). Exits non-zero on any failure or mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/gpu_check.py "$@"
