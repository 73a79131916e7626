#!/usr/bin/env bash
# Every test, C++ and Python, from a fresh machine:
#   1. C++ engine tests and both-language tutorial checks (CTest, build/cpp)
#   2. the lock-free stress tests and the engine tests under ThreadSanitizer (CTest, build/tsan)
#   3. the same under AddressSanitizer + UndefinedBehaviorSanitizer, leaks included (CTest, build/asan)
#   4. the Python tests (pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

scripts/setup.sh --cpp

printf '\n== C++ tests and tutorials\n'
ctest --test-dir build/cpp --output-on-failure

printf '\n== C++ stress and engine tests under ThreadSanitizer\n'
cmake -S . -B build/tsan -G Ninja -DRINGFLOW_TSAN=ON -DPython3_EXECUTABLE="$(command -v "$PYTHON")"
cmake --build build/tsan
# ResNet-50 is too slow under TSAN to be worth it; its threading is the same as tiny-mlp's.
ctest --test-dir build/tsan --output-on-failure -E engine.resnet50

printf '\n== C++ stress and engine tests under AddressSanitizer + UndefinedBehaviorSanitizer\n'
cmake -S . -B build/asan -G Ninja -DRINGFLOW_ASAN=ON -DPython3_EXECUTABLE="$(command -v "$PYTHON")"
cmake --build build/asan
# Every test, ResNet-50 included: ORT itself is not instrumented, so it takes about 2 s here.
ctest --test-dir build/asan --output-on-failure

printf '\n== Python tests\n'
"$PYTHON" -m pytest -q tests/python
