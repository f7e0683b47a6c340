"""The Debian package on this machine: install, capture, export, purge — and nothing left over.

Needs root; builds the package from the tested build tree with cpack (the build must be
configured with CMAKE_INSTALL_PREFIX=/usr, as tests/run.sh does). When process-core is already
installed here (packaging/install.sh, then tests/run.sh), that installation is set aside first —
repacked with dpkg-repack, its store and /etc/process-core kept, then purged — and put back
afterwards; the test then checks that it is exactly as it was (package files, settings, store,
configuration, user, exporter). An upgrade from 0.1.0 is tested with the built package
relabelled as that version.
"""
import contextlib
import hashlib
import json
import os
import pathlib
import pwd
import grp
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

SETTINGS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_pipe_limit",
            "/proc/sys/fs/suid_dumpable"]
WATCHED = ["/etc", "/lib/systemd", "/usr/lib/sysctl.d", "/usr/lib/tmpfiles.d",
           "/usr/lib/sysusers.d", "/usr/sbin", "/usr/bin", "/usr/share/process-core",
           "/usr/share/doc/process-core", "/usr/share/man/man1", "/usr/share/man/man8",
           "/var/lib/process-core", "/var/lib/systemd"]
UNIT = "/lib/systemd/system/process-core-exporter.service"
STORE = "/var/lib/process-core"
ETC = "/etc/process-core"
DROPIN = "/etc/sysctl.d/50-process-core.conf"


def installed():
    return subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "process-core"],
                          capture_output=True, text=True).stdout == "install ok installed"


def tree(top):
    """Every entry under `top` (and `top` itself): type, mode, owner, mtime, content hash."""
    out = {}
    if not os.path.lexists(top):
        return out
    for root, dirs, names in os.walk(top):
        for n in [""] + dirs + names:
            path = os.path.join(root, n) if n else root
            if n == "" and root != top:
                continue
            st = os.lstat(path)
            entry = (st.st_mode, st.st_uid, st.st_gid)
            if os.path.islink(path):
                entry += (os.readlink(path), st.st_mtime_ns)
            elif os.path.isfile(path):
                entry += (st.st_mtime_ns, hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest())
            out[path] = entry
    return out


def unit_state(verb):
    if not os.path.isdir("/run/systemd/system"):
        return None
    return subprocess.run(["systemctl", verb, "process-core-exporter.service"],
                          capture_output=True, text=True).stdout.strip()


def installation():
    """What an installation is made of, for an exact before/after comparison."""
    owned = subprocess.run(["dpkg-query", "-L", "process-core"], capture_output=True,
                           text=True).stdout.split()
    files = {p: hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
             for p in owned if os.path.isfile(p) and not os.path.islink(p)}
    return {
        "version": subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "process-core"],
                                  capture_output=True, text=True).stdout,
        "package files": files,
        "settings": {p: pathlib.Path(p).read_text() for p in SETTINGS},
        "etc": tree(ETC),
        "sysctl drop-in": tree(DROPIN),
        "store": tree(STORE),
        "user": [tuple(u) for u in pwd.getpwall() if u.pw_name == "process-core"],
        "group": [tuple(g) for g in grp.getgrall() if g.gr_name == "process-core"],
        "exporter": (unit_state("is-active"), unit_state("is-enabled")),
        "wants": {p: e for p, e in tree("/etc/systemd/system").items() if "process-core" in p},
    }


@contextlib.contextmanager
def installation_set_aside(tmp):
    """Lets the test install and purge its own package on a host where process-core is installed.

    The installed package is repacked, its store moved aside (a rename keeps every inode, owner
    and time), /etc/process-core copied, then it is purged. Afterwards the user and group are
    recreated with their old ids (the store's files are owned by them), the repacked package is
    installed again, and the store, configuration and kernel settings are put back exactly."""
    if not installed():
        yield
        return
    before = installation()
    subprocess.run(["dpkg-repack", "process-core"], cwd=tmp, check=True, capture_output=True)
    repacked = next(pathlib.Path(tmp).glob("process-core_*.deb"))
    exporter_active = before["exporter"][0] == "active"
    if exporter_active:
        subprocess.run(["systemctl", "stop", "process-core-exporter.service"], check=True)
    aside = pathlib.Path(tempfile.mkdtemp(prefix=".process-core-tests-", dir="/var/lib"))
    etc_copy = pathlib.Path(tmp) / "etc-process-core"
    dropin_copy = pathlib.Path(tmp) / "dropin"
    if os.path.lexists(STORE):
        os.rename(STORE, aside / "store")
    shutil.copytree(ETC, etc_copy, symlinks=True)
    if os.path.lexists(DROPIN):
        shutil.copy2(DROPIN, dropin_copy)
    subprocess.run(["dpkg", "--purge", "process-core"], check=True, capture_output=True)
    try:
        yield
    finally:
        (user,), (group,) = before["user"], before["group"]
        if not any(g.gr_name == "process-core" for g in grp.getgrall()):
            subprocess.run(["groupadd", "--system", "--gid", str(group[2]), "process-core"],
                           check=True)
        if not any(u.pw_name == "process-core" for u in pwd.getpwall()):
            subprocess.run(["useradd", "--system", "--uid", str(user[2]), "--gid", str(user[3]),
                            "--comment", user[4], "--home-dir", user[5], "--no-create-home",
                            "--shell", user[6], "process-core"], check=True)
        subprocess.run(["dpkg", "-i", str(repacked)], check=True, capture_output=True)
        if unit_state("is-active") == "active":
            subprocess.run(["systemctl", "stop", "process-core-exporter.service"], check=True)
        if (aside / "store").exists():
            shutil.rmtree(STORE, ignore_errors=True)
            os.rename(aside / "store", STORE)
        aside.rmdir()
        shutil.rmtree(ETC)
        shutil.copytree(etc_copy, ETC, symlinks=True)
        shutil.copystat(etc_copy, ETC)
        if dropin_copy.exists():  # corectl install (postinst) rewrote it: same text, new time
            shutil.copy2(dropin_copy, DROPIN)
        # deb-systemd-helper made the enablement links anew: give them their old times back.
        for path, entry in before["wants"].items():
            if os.path.islink(path):
                os.utime(path, ns=(entry[-1], entry[-1]), follow_symlinks=False)
        for path, value in before["settings"].items():
            pathlib.Path(path).write_text(value)
        if exporter_active:
            subprocess.run(["systemctl", "start", "process-core-exporter.service"], check=True)
    after = installation()
    for key in before:
        assert after[key] == before[key], key


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
    return pctest.build_deb(tmp_path_factory.mktemp("deb"))


def test_lintian_finds_no_errors_or_warnings(deb):
    proc = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True,
                          text=True)
    problems = [l for l in proc.stdout.splitlines() if l.startswith(("E:", "W:"))]
    assert not problems, proc.stdout


allow_cores = pctest.allow_cores


def start_exporter_like_the_unit():
    """Runs ExecStart as the unit's User= (no systemd here); only the port is ours."""
    unit = pathlib.Path(UNIT).read_text()
    user = re.search(r"^User=(\S+)", unit, re.M).group(1)
    argv = shlex.split(re.search(r"^ExecStart=(.+)$", unit, re.M).group(1))
    proc = subprocess.Popen(["runuser", "-u", user, "--", *argv, "--web.listen-address", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise AssertionError("the exporter did not start")


def test_install_capture_export_purge(deb, tmp_path):
    with pctest.machine_lock(), installation_set_aside(tmp_path):
        before = snapshot()
        try:
            subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)

            # The kernel now sends every dump to the installed handler.
            pattern = pathlib.Path(SETTINGS[0]).read_text().strip()
            assert pattern.startswith("|/usr/sbin/process-core -P%P"), pattern
            assert pattern.endswith(" -- %h %s %E")
            assert pathlib.Path(SETTINGS[1]).read_text().strip() == "0"
            # Retention runs by itself: the timer is installed and enabled.
            assert pathlib.Path("/lib/systemd/system/process-core-vacuum.timer").exists()
            assert pathlib.Path("/lib/systemd/system/process-core-vacuum.service").exists()
            assert os.path.islink("/etc/systemd/system/timers.target.wants/process-core-vacuum.timer")
            store = pathlib.Path("/var/lib/process-core")
            st = store.stat()
            assert pwd.getpwuid(st.st_uid).pw_name == "process-core"
            assert st.st_mode & 0o777 == 0o751  # others pass through to their own view

            # A real crash, found with the installed corectl.
            crash = subprocess.run([str(pctest.env_path("PC_CRASHER")), "segv"],
                                   preexec_fn=allow_cores, capture_output=True)
            assert crash.returncode < 0

            def listed():
                # Exit status 1 while nothing is there yet (nothing matched).
                listing = subprocess.run(["/usr/bin/corectl", "list", "--json"],
                                         capture_output=True, text=True)
                assert listing.returncode in (0, 1), listing.stderr
                return next((r for r in map(json.loads, listing.stdout.splitlines())
                             if r["executable"] == str(pctest.env_path("PC_CRASHER"))), None)

            record = pctest.wait_until(listed, timeout=30, what="corectl list shows the crash")
            assert record["signal_name"] == "SEGV" and record["core"]["present"]
            assert record["crash"]["symbol"]["name"] == "pc_crash_null_write"

            # The exporter as its unit runs it, scraped over HTTP.
            exporter, port = start_exporter_like_the_unit()
            try:

                def scrape():
                    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                  timeout=5).read().decode()

                pctest.wait_until(lambda: 'signal="SEGV"' in scrape(), timeout=10)
                metrics = scrape()
                series = [l for l in metrics.splitlines()
                          if l.startswith("processcore_coredumps_total{") and 'signal="SEGV"' in l]
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


def old_package(deb, out, version="0.1.0"):
    """`deb` relabelled as an earlier version whose sample configuration still named 9464: the
    version is what postinst compares, the configuration what dpkg installs as the conffile."""
    tree = pathlib.Path(out) / "old"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    text = re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M)
    control.write_text(text)
    conf = tree / ETC.lstrip("/") / "process-core.conf"
    conf.write_text(conf.read_text().replace("#listen = 127.0.0.1:19464",
                                             "#listen = 127.0.0.1:9464"))
    md5sums = tree / "DEBIAN" / "md5sums"
    if md5sums.exists():  # keep it true for the file changed above
        rel = str(conf.relative_to(tree))
        digest = hashlib.md5(conf.read_bytes()).hexdigest()
        md5sums.write_text(re.sub(rf"^\S+  {re.escape(rel)}$", f"{digest}  {rel}",
                                  md5sums.read_text(), flags=re.M))
    old = pathlib.Path(out) / f"process-core_{version}_old.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(old)], check=True,
                   capture_output=True)
    return old


def listen_lines():
    text = pathlib.Path(ETC, "process-core.conf").read_text()
    return re.findall(r"^[ \t]*listen[ \t]*=[ \t]*(.*?)[ \t]*$", text, re.M)


def exporter_address():
    """The address the installed exporter, run as its unit runs it with nothing but the
    configuration to go on, listens on (or fails to, when something else has that port)."""
    unit = pathlib.Path(UNIT).read_text()
    user = re.search(r"^User=(\S+)", unit, re.M).group(1)
    argv = shlex.split(re.search(r"^ExecStart=(.+)$", unit, re.M).group(1))
    proc = subprocess.Popen(["runuser", "-u", user, "--", *argv], stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            line = proc.stderr.readline()
            if m := re.search(r"(?:listening on |Failed to listen on ')([^\s']+:\d+)", line):
                return m.group(1)
            if not line:
                break
        raise AssertionError("the exporter named no address")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_upgrade_keeps_the_old_default_port(deb, tmp_path):
    """A host upgraded from a version that listened on 9464 by default keeps 9464 when its
    configuration never set `listen`, once however often it is configured; an address the admin
    set is left alone, and a fresh install takes the new default, 19464."""
    old = old_package(deb, tmp_path)
    with pctest.machine_lock(), installation_set_aside(tmp_path):
        before = snapshot()
        dpkg = ["dpkg", "--force-confold", "-i"]
        try:
            # Upgraded without an address of its own: the old one is written down.
            subprocess.run([*dpkg, str(old)], check=True, capture_output=True)
            assert listen_lines() == []
            subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
            assert listen_lines() == ["127.0.0.1:9464"]
            conf = pathlib.Path(ETC, "process-core.conf")
            assert "upgrade from 0.1.0" in conf.read_text()
            assert conf.stat().st_mode & 0o777 == 0o644 and conf.stat().st_uid == 0
            assert exporter_address() == "127.0.0.1:9464"
            # Configured again (a reinstall): nothing added twice.
            subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
            assert listen_lines() == ["127.0.0.1:9464"]
            subprocess.run(["dpkg", "--purge", "process-core"], check=True, capture_output=True)

            # Upgraded with an address the admin chose: kept as it is.
            subprocess.run([*dpkg, str(old)], check=True, capture_output=True)
            with conf.open("a") as f:
                f.write("listen = 127.0.0.1:9999\n")
            chosen = conf.read_text()
            subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
            assert conf.read_text() == chosen
            subprocess.run(["dpkg", "--purge", "process-core"], check=True, capture_output=True)

            # A fresh install listens on the new default.
            subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
            assert listen_lines() == []
            assert exporter_address() == "127.0.0.1:19464"
        finally:
            subprocess.run(["dpkg", "--purge", "process-core"], capture_output=True)
            after = snapshot()
            for path, value in before["settings"].items():
                if pathlib.Path(path).read_text() != value:
                    pathlib.Path(path).write_text(value)
        assert after["settings"] == before["settings"]
        assert after["user"] == before["user"] and after["group"] == before["group"]
        added = {f for f in after["files"] - before["files"] if "/man/index" not in f}
        assert not added, sorted(added)
        assert not before["files"] - after["files"], sorted(before["files"] - after["files"])
