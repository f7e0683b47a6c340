#!/usr/bin/env bash
# Sets up this host (Debian 12, as root): installs the build dependencies, builds the Debian
# package (dpkg-buildpackage, from a copy of this tree) and installs it. The package's maintainer
# scripts create the process-core user and the store, point kernel.core_pattern at the handler
# (keeping the previous settings) and start the exporter. `apt purge process-core` undoes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

bash packaging/apt-install.sh packaging/build-deps.txt
export DEBIAN_FRONTEND=noninteractive

# dpkg-buildpackage writes into debian/ and puts the packages next to the source: build a copy.
build=$(realpath -m "${BUILD_DIR:-build-deb}")
rm -rf "$build/process-core"
mkdir -p "$build/process-core"
# Not the git directory nor build trees (/build*/ and obj-*/ as in .gitignore).
tar --exclude=./.git --exclude='./build*' --exclude='./obj-*' --exclude=./Testing \
  --exclude="./$(basename "$build")" -cf - . | tar -xf - -C "$build/process-core"
rm -f "$build"/process-core_*.deb "$build"/process-core-dbgsym_*.deb
(cd "$build/process-core" && dpkg-buildpackage -us -uc -b -j"$(nproc)" >../build.log 2>&1) || {
  tail -n 30 "$build/build.log" >&2
  echo "install.sh: the package build failed, see $build/build.log" >&2
  exit 1
}
deb=$(ls "$build"/process-core_*.deb)
apt-get install -y -qq "$deb" >/dev/null

echo
echo "process-core is installed: kernel.core_pattern = $(cat /proc/sys/kernel/core_pattern)"
echo "Captured crashes:   corectl list          (details: corectl info ID, gdb: corectl debug ID)"
if [ -d /run/systemd/system ]; then
  echo "Running:            process-core-exporter.service (metrics), process-core-vacuum.timer (hourly retention)"
else
  # No systemd: the init script runs the exporter, cron the retention, when they are allowed to.
  echo "systemd is not running here, so its units do not run:"
  if /etc/init.d/process-core-exporter status >/dev/null 2>&1; then
    echo "  running:          the exporter (/etc/init.d/process-core-exporter)"
  else
    echo "  NOT running:      the exporter; start it: /etc/init.d/process-core-exporter start"
  fi
  if command -v cron >/dev/null && [ -e /run/crond.pid ]; then
    echo "  running:          hourly retention (/etc/cron.d/process-core)"
  else
    echo "  NOT running:      hourly retention: cron is not running (/etc/cron.d/process-core needs it);"
    echo "                    run 'corectl vacuum' yourself or install cron"
  fi
fi
echo "Metrics:            curl -fsS http://127.0.0.1:19464/metrics | grep processcore_coredumps_total"
echo "Remove everything:  apt purge process-core"
