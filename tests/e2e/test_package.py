"""The Debian package on this machine: install, capture, export, purge — and nothing left over.

Needs root; builds the package from the tested build tree with cpack (the build must be
configured with CMAKE_INSTALL_PREFIX=/usr, as tests/run.sh does). Skipped when process-core is
already installed here: the test never touches a real installation.
"""
import json
import os
import pathlib
import pwd
import grp
import re
import resource
import shlex
import subprocess
import tempfile
import time
import urllib.request

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if subprocess.run(["dpkg", "-s", "process-core"], capture_output=True).returncode == 0:
    pytest.skip("process-core is installed on this machine: not touching it", allow_module_level=True)

SETTINGS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_pipe_limit",
            "/proc/sys/fs/suid_dumpable"]
WATCHED = ["/etc", "/lib/systemd", "/usr/lib/sysctl.d", "/usr/lib/tmpfiles.d",
           "/usr/lib/sysusers.d", "/usr/sbin", "/usr/bin", "/usr/share/process-core",
           "/usr/share/doc/process-core", "/usr/share/man/man1", "/usr/share/man/man8",
           "/var/lib/process-core", "/var/lib/systemd"]
UNIT = "/lib/systemd/system/process-core-exporter.service"


def snapshot():
    files = set()
    for top in WATCHED:
        for root, dirs, names in os.walk(top):
            for n in dirs + names:
                files.add(os.path.join(root, n))
    return {
        "settings": {p: pathlib.Path(p).read_text() for p in SETTINGS},
        "user": [u.pw_name for u in pwd.getpwall() if u.pw_name == "process-core"],
        "group": [g.gr_name for g in grp.getgrall() if g.gr_name == "process-core"],
        "files": files,
    }


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    build = pctest.env_path("PC_BUILD_DIR")
    cache = (build / "CMakeCache.txt").read_text()
    if "CMAKE_INSTALL_PREFIX:PATH=/usr\n" not in cache:
        pytest.skip("build not configured with CMAKE_INSTALL_PREFIX=/usr (see tests/run.sh)")
    out = tmp_path_factory.mktemp("deb")
    subprocess.run(["cpack", "-G", "DEB", "-B", str(out)], cwd=build, check=True,
                   capture_output=True)
    found = list(out.glob("process-core_*.deb"))
    assert len(found) == 1, found
    return found[0]


def test_lintian_finds_no_errors_or_warnings(deb):
    proc = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True,
                          text=True)
    problems = [l for l in proc.stdout.splitlines() if l.startswith(("E:", "W:"))]
    assert not problems, proc.stdout


def allow_cores():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def start_exporter_like_the_unit():
    """Runs ExecStart as the unit's User= (no systemd here); only the port is ours."""
    unit = pathlib.Path(UNIT).read_text()
    user = re.search(r"^User=(\S+)", unit, re.M).group(1)
    argv = shlex.split(re.search(r"^ExecStart=(.+)$", unit, re.M).group(1))
    proc = subprocess.Popen(["runuser", "-u", user, "--", *argv, "--listen", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise AssertionError("the exporter did not start")


def test_install_capture_export_purge(deb):
    with pctest.machine_lock():
        before = snapshot()
        try:
            subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)

            # The kernel now sends every dump to the installed handler.
            pattern = pathlib.Path(SETTINGS[0]).read_text().strip()
            assert pattern.startswith("|/usr/sbin/process-core -P%P"), pattern
            assert pattern.endswith(" -- %h %s %E")
            assert pathlib.Path(SETTINGS[1]).read_text().strip() == "0"
            store = pathlib.Path("/var/lib/process-core")
            st = store.stat()
            assert pwd.getpwuid(st.st_uid).pw_name == "process-core"
            assert st.st_mode & 0o777 == 0o750

            # A real crash, found with the installed corectl.
            crash = subprocess.run([str(pctest.env_path("PC_CRASHER")), "segv"],
                                   preexec_fn=allow_cores, capture_output=True)
            assert crash.returncode < 0
            deadline = time.time() + 30
            record = None
            while time.time() < deadline and record is None:
                out = subprocess.run(["/usr/bin/corectl", "list", "--json"], capture_output=True,
                                     text=True, check=True).stdout
                for line in out.splitlines():
                    r = json.loads(line)
                    if r["executable"] == str(pctest.env_path("PC_CRASHER")):
                        record = r
                time.sleep(0.1)
            assert record is not None, "corectl list does not show the crash"
            assert record["signal_name"] == "SEGV" and record["core"]["present"]
            assert record["crash"]["symbol"]["name"] == "pc_crash_null_write"

            # The exporter as its unit runs it, scraped over HTTP.
            exporter, port = start_exporter_like_the_unit()
            try:
                deadline = time.time() + 10
                metrics = ""
                while time.time() < deadline and 'signal="SEGV"' not in metrics:
                    metrics = urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                    time.sleep(0.2)
                series = [l for l in metrics.splitlines()
                          if l.startswith("coredumps_total{") and 'signal="SEGV"' in l]
                assert series and float(series[0].split()[-1]) >= 1, metrics
            finally:
                exporter.terminate()
                exporter.wait(timeout=10)
        finally:
            subprocess.run(["dpkg", "--purge", "process-core"], capture_output=True)
            after = snapshot()
            # Never leave the machine changed, whatever failed above.
            for path, value in before["settings"].items():
                if pathlib.Path(path).read_text() != value:
                    pathlib.Path(path).write_text(value)
        assert after["settings"] == before["settings"]
        assert after["user"] == before["user"] and after["group"] == before["group"]
        # man-db and ldconfig caches may change on their own; everything else must be as before.
        added = {f for f in after["files"] - before["files"] if "/man/index" not in f}
        removed = before["files"] - after["files"]
        assert not added, sorted(added)
        assert not removed, sorted(removed)
