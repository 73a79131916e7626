#!/usr/bin/env bash
# The main job: tutorial 002 (asynchronous push/pull) on the built-in ResNet-50, after setting up
# a fresh machine. Extra arguments go to the tutorial, e.g. --n 16.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${PYTHON:-python3}" tutorials/002_run_inference_async/run_inference_async.py "$@"
