#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine: installs what the build and the tests
# need, builds with warnings as errors, and runs everything through CTest (whose summary line
# ends the output). Root is needed for the apt step and for the kernel end-to-end tests; as
# another user those tests report "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  bash packaging/apt-install.sh packaging/build-deps.txt packaging/test-deps.txt
fi

build=${BUILD_DIR:-build-tests}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPC_WERROR=ON -DPC_FUZZ=ON -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
exec ctest --output-on-failure -j"$(nproc)" --timeout 900
