#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): pytest -m gpu, generator parity CUDA vs CPU, a few paper-256 training steps
# of every stage, the bench's generator and invert rows on CUDA with the rosinality peer; one JSON plus a log.
#
#   bash scripts/gpu_check.sh --out DIR [--peer-rosinality CHECKOUT]   # a CUDA machine, after `make setup`
#   bash scripts/gpu_check.sh --out DIR --cpu                          # dry run on the CPU at tiny sizes
#
# Uses the repository's virtualenv (.venv, or $PYTHON); every other option is scripts/gpu_check.py's (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
exec "$PY" scripts/gpu_check.py "$@"
