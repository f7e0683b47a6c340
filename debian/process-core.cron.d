# Hourly retention of the process-core store (`corectl vacuum`) on hosts where systemd does not
# run. Where systemd is PID 1, process-core-vacuum.timer does it and this line does nothing.
# As the store user, at low priority, with corectl's cache outside the store (as the unit).
SHELL=/bin/sh
PATH=/usr/bin:/bin
17 * * * *	process-core	[ -d /run/systemd/system ] || XDG_CACHE_HOME=/var/cache/process-core nice -n 10 ionice -c 3 corectl vacuum >/dev/null
