#!/usr/bin/env bash
# Sets up this host (Debian 12, as root): installs the build dependencies, builds the Debian
# package and installs it. The package's maintainer scripts create the process-core user and
# the store, point kernel.core_pattern at the handler (keeping the previous settings) and start
# the exporter when systemd runs. `apt purge process-core` undoes all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root " >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $(cat packaging/build-deps.txt) dpkg-dev file >/dev/null

build=${BUILD_DIR:-build-deb}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DPC_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(realpath "$(ls -t "$build"/process-core_*.deb | head -1)")
apt-get install -y -qq "$deb" >/dev/null

echo
echo "process-core is installed: kernel.core_pattern = $(cat /proc/sys/kernel/core_pattern)"
echo "Captured crashes:   corectl list          (details: corectl info ID, gdb: corectl debug ID)"
echo "Metrics:            curl -s http://127.0.0.1:19464/metrics | grep processcore_coredumps_total"
echo "Remove everything:  apt purge process-core"
