#!/usr/bin/env bash
# Makes a fresh machine ready: system packages, the ringflow Python package (C++ engine included)
# and, with --cpp, the CMake build of the C++ tutorials and tests in build/cpp.
#
# Usage: scripts/setup.sh [--cpp]      Environment: PYTHON (default python3)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
with_cpp=false
[[ "${1:-}" == "--cpp" ]] && with_cpp=true

log() { printf '\n== %s\n' "$*"; }

# OpenCV's C++ image codecs let the C++ tutorials read --image files, as the Python ones do; its
# videoio module lets tutorial 019 read and write its video.
apt_packages=(g++ libopencv-imgcodecs-dev libopencv-videoio-dev)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: missing system packages (${missing[*]}); install them as root" >&2
  fi
fi

log "installing ringflow and its Python dependencies"
# The server extra: tutorial 022's check runs its aiohttp server.
"$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore -q ".[test,server]"

if $with_cpp; then
  log "building the C++ engine, tutorials and tests (build/cpp)"
  "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore -q cmake ninja pybind11
  cmake -S . -B build/cpp -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v "$PYTHON")"
  cmake --build build/cpp
fi
