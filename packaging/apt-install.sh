#!/usr/bin/env bash
# Installs the packages listed in the files given (one or more names per line), as root, without
# questions: the shared apt step of packaging/install.sh and tests/run.sh.
#
# A dpkg run that was killed (a lost session, a power cut, a test stopped mid-upgrade) leaves
# packages unpacked but not configured, and apt then refuses to install anything ("dpkg was
# interrupted, you must manually run 'dpkg --configure -a'"): that run is finished first, as
# apt asks. Both steps wait up to 10 minutes for another dpkg run (another suite installing its
# package) to let go of dpkg's lock.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "apt-install.sh: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

lock_timeout=600
if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || [ -n "$(dpkg --audit 2>/dev/null)" ]; then
  echo "apt-install.sh: an earlier dpkg run did not finish: dpkg --configure -a" >&2
  waited=0
  until out=$(dpkg --force-confold --configure -a 2>&1); do
    # dpkg's own words for its lock held by another run; any other failure is reported at once.
    if ! grep -qE "locked by another process|Another process has locked" <<<"$out" ||
      [ "$waited" -ge "$lock_timeout" ]; then
      printf '%s\n' "$out" >&2
      echo "apt-install.sh: dpkg --configure -a failed" >&2
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
fi

apt-get update -qq
apt-get install -y -qq -o DPkg::Lock::Timeout="$lock_timeout" --no-install-recommends \
  $(cat "$@") >/dev/null
