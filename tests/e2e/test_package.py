"""The Debian package on this machine: install, capture, export, purge — and nothing left over;
upgrades that keep what the administrator changed, an upgrade from 0.1.0, and the init script and
cron entry that run the exporter and retention where systemd does not.

Needs root; builds the package with dpkg-buildpackage from a copy of the source tree
(pctest.build_deb). When process-core is already installed here (packaging/install.sh, then
tests/run.sh), that installation is set aside first — repacked with dpkg-repack, its store and
/etc/process-core kept, then purged — and put back afterwards; the test then checks that it is
exactly as it was (package files, settings, store, configuration, user, exporter). A run killed
in between is put back by the next (tests/lib/machine_journal.py). An upgrade from before 0.2.0
keeps the old default port (the built package relabelled as 0.1.0).
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
import time
import urllib.request

import pytest

import host_installation
import machine_journal
import pctest
from host_installation import SETTINGS, STORE, ETC, DROPIN, installed, unit_state, \
    init_script_status

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

WATCHED = ["/etc", "/lib/systemd", "/usr/lib/sysctl.d", "/usr/lib/tmpfiles.d",
           "/usr/lib/sysusers.d", "/usr/sbin", "/usr/bin", "/usr/share/process-core",
           "/usr/share/doc/process-core", "/usr/share/man/man1", "/usr/share/man/man8",
           "/var/lib/process-core", "/var/lib/systemd"]
UNIT = "/lib/systemd/system/process-core-exporter.service"


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
        "account lines": host_installation.account_lines(),
        "exporter": (unit_state("is-active"), unit_state("is-enabled")),
        "init script": init_script_status(),
        "wants": {p: e for p, e in tree("/etc/systemd/system").items() if "process-core" in p},
    }


@contextlib.contextmanager
def installation_set_aside():
    """Lets the test install and purge its own package on a host where process-core is installed
    (host_installation.set_aside), then checks that the installation is exactly as it was."""
    if not installed():
        yield
        return
    before = installation()
    with host_installation.set_aside():
        yield
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


def test_lintian_pedantic_is_clean(deb):
    """Errors, warnings, info and pedantic tags alike: each is fixed or overridden with a reason
    (debian/process-core.lintian-overrides)."""
    changes = next(deb.parent.glob("process-core_*.changes"))
    proc = subprocess.run(["lintian", "--pedantic", "--display-info", "--tag-display-limit", "0",
                           str(changes)], capture_output=True, text=True)
    problems = [l for l in proc.stdout.splitlines() if l.startswith(("E:", "W:", "I:", "P:"))]
    assert not problems, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_package_fields_and_debug_symbols(deb):
    fields = {f: subprocess.run(["dpkg-deb", "--field", str(deb), f], capture_output=True,
                                text=True, check=True).stdout.strip()
              for f in ("Provides", "Conflicts", "Replaces", "Maintainer", "Version")}
    # One core dump handler at a time, as systemd-coredump, minicoredumper and corekeeper say.
    for f in ("Provides", "Conflicts", "Replaces"):
        assert fields[f] == "core-dump-handler", fields
    assert re.fullmatch(r"[^<>]+ <[^@<>\s]+@[^@<>\s]+>", fields["Maintainer"]), fields
    dbgsym = list(deb.parent.glob("process-core-dbgsym_*.deb"))
    assert len(dbgsym) == 1, list(deb.parent.iterdir())
    listing = subprocess.run(["dpkg-deb", "--contents", str(dbgsym[0])], capture_output=True,
                             text=True, check=True).stdout
    assert len(re.findall(r"/usr/lib/debug/\.build-id/../\S+\.debug", listing)) >= 3, listing
    scripts = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True,
                             check=True).stdout
    assert scripts  # maintainer scripts, conffiles and md5sums are in the control archive


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


def scrape_until(port, text, timeout=10):
    """/metrics once it contains `text`."""
    def scrape():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=5).read().decode()
        except OSError:
            return ""
    pctest.wait_until(lambda: text in scrape(), timeout=timeout, what=f"/metrics shows {text}")
    return scrape()


def dpkg(*args):
    """Runs dpkg, failing with its output; returns what it printed (the maintainer scripts' too)."""
    proc = subprocess.run(["dpkg", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def stop_init_script_exporter():
    """Stops an exporter the init script started, whatever state a failed test left."""
    pid_file = pathlib.Path("/run/process-core-exporter.pid")
    if pid_file.exists() and os.path.exists("/etc/init.d/process-core-exporter"):
        subprocess.run(["/etc/init.d/process-core-exporter", "stop"], capture_output=True)
    # The host's own installation is set aside: an installed exporter still running is ours.
    machine_journal.kill_programs([host_installation.EXPORTER])


@contextlib.contextmanager
def fresh_host(tmp_path):
    """The machine without process-core for the duration (an installation is set aside); at the
    end the package is purged and the host must be exactly as before, settings restored
    whatever failed."""
    with pctest.machine_lock(), installation_set_aside(), machine_journal.kept_values(SETTINGS):
        before = snapshot()
        # Whatever process-core is installed from here on is the test's: a killed run's is purged.
        ours = machine_journal.add("package", name="process-core",
                                   programs=[host_installation.EXPORTER])
        try:
            yield
        finally:
            stop_init_script_exporter()
            subprocess.run(["dpkg", "--purge", "process-core"], capture_output=True)
            machine_journal.forget(ours)
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
        assert not os.path.exists("/var/log/process-core-exporter.log")


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


def listen_lines(path=None):
    text = pathlib.Path(path or pathlib.Path(ETC, "process-core.conf")).read_text()
    return re.findall(r"^[ \t]*listen[ \t]*=[ \t]*(.*?)[ \t]*$", text, re.M)


KEEP_PORT = pathlib.Path(ETC, "process-core.conf.d", "50-listen-before-0.2.0.conf")


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
    configuration never set `listen`, through a drop-in of the package's (the conffile is not
    touched: Debian Policy 10.7.3), once however often it is configured; an address the admin
    set is left alone, and a fresh install takes the new default, 19464."""
    old = old_package(deb, tmp_path)
    dpkg = ["dpkg", "--force-confold", "-i"]
    conf = pathlib.Path(ETC, "process-core.conf")
    with fresh_host(tmp_path):
        # Upgraded without an address of its own: the old one is kept, in a drop-in.
        subprocess.run([*dpkg, str(old)], check=True, capture_output=True)
        shipped = conf.read_text()
        assert listen_lines() == []
        out = subprocess.run([*dpkg, str(deb)], check=True, capture_output=True, text=True)
        assert "keeps listening on 127.0.0.1:9464" in out.stderr, out.stderr
        assert conf.read_text() == shipped.replace("#listen = 127.0.0.1:9464",
                                                   "#listen = 127.0.0.1:19464")
        assert listen_lines(KEEP_PORT) == ["127.0.0.1:9464"]
        assert "upgrade from process-core 0.1.0" in KEEP_PORT.read_text()
        st = KEEP_PORT.stat()
        assert st.st_mode & 0o777 == 0o644 and st.st_uid == 0
        assert exporter_address() == "127.0.0.1:9464"
        # Configured again (a reinstall): the same drop-in, nothing added.
        kept = KEEP_PORT.read_text()
        subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
        assert KEEP_PORT.read_text() == kept and len(list(KEEP_PORT.parent.iterdir())) == 1
        subprocess.run(["dpkg", "--purge", "process-core"], check=True, capture_output=True)
        assert not KEEP_PORT.parent.exists()

        # Upgraded with an address the admin chose: kept as it is, no drop-in.
        subprocess.run([*dpkg, str(old)], check=True, capture_output=True)
        with conf.open("a") as f:
            f.write("listen = 127.0.0.1:9999\n")
        chosen = conf.read_text()
        subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
        assert conf.read_text() == chosen and not KEEP_PORT.exists()
        subprocess.run(["dpkg", "--purge", "process-core"], check=True, capture_output=True)

        # A fresh install listens on the new default.
        subprocess.run([*dpkg, str(deb)], check=True, capture_output=True)
        assert listen_lines() == [] and not KEEP_PORT.exists()
        assert exporter_address() == "127.0.0.1:19464"


def policy_forbids_starting():
    """policy-rc.d says no (101) to starting services, as in containers and image builds."""
    return os.access("/usr/sbin/policy-rc.d", os.X_OK) and subprocess.run(
        ["/usr/sbin/policy-rc.d", "process-core-exporter", "start"],
        capture_output=True).returncode == 101


def test_install_capture_export_purge(deb, tmp_path):
    with fresh_host(tmp_path):
        output = dpkg("-i", str(deb))
        if policy_forbids_starting():
            assert "process-core-exporter was not started" in output, output
            assert not os.path.exists("/run/process-core-exporter.pid")
        if not os.path.isdir("/run/systemd/system") and not shutil.which("cron"):
            assert "nothing runs 'corectl vacuum' hourly" in output, output

        # The kernel now sends every dump to the installed handler.
        pattern = pathlib.Path(SETTINGS[0]).read_text().strip()
        assert pattern.startswith("|/usr/sbin/process-core -P%P"), pattern
        assert pattern.endswith(" -- %h %s %E")
        assert pathlib.Path(SETTINGS[1]).read_text().strip() == "0"
        # Retention runs by itself: the timer is installed and enabled.
        assert pathlib.Path("/lib/systemd/system/process-core-vacuum.timer").exists()
        assert pathlib.Path("/lib/systemd/system/process-core-vacuum.service").exists()
        assert os.path.islink("/etc/systemd/system/timers.target.wants/process-core-vacuum.timer")
        # Users' corectl remove: the removal socket is installed and enabled, its service too.
        assert pathlib.Path("/lib/systemd/system/process-core-remove@.service").exists()
        assert os.path.islink("/etc/systemd/system/sockets.target.wants/process-core-remove.socket")
        assert pathlib.Path("/usr/libexec/process-core/process-core-remove").exists()
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
            metrics = scrape_until(port, 'signal="SEGV"')
            series = [l for l in metrics.splitlines()
                      if l.startswith("processcore_coredumps_total{") and 'signal="SEGV"' in l]
            assert series and float(series[0].split()[-1]) >= 1, metrics
        finally:
            exporter.terminate()
            exporter.wait(timeout=10)


CONF = pathlib.Path(ETC) / "process-core.conf"
INIT = "/etc/init.d/process-core-exporter"
PID_FILE = pathlib.Path("/run/process-core-exporter.pid")
CRON = pathlib.Path("/etc/cron.d/process-core")
CLAIMED = pathlib.Path(ETC) / ".sysctl-dropin.sha256"
PREVIOUS = pctest.env_path("PC_SOURCE_DIR") / "tests" / "e2e" / "package-0.1.0"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def handler_record(n):
    """`n` records from the installed handler, fed a core on stdin as the kernel would."""
    for _ in range(n):
        subprocess.run(["/usr/sbin/process-core", "--", "h", "11", "!usr!bin!x"],
                       input=b"\x7fELF" + b"\0" * 64, check=True)


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"),
                    reason="systemd runs this host: the units run the exporter and retention")
def test_init_script_and_cron_entry_without_systemd(deb, tmp_path):
    with fresh_host(tmp_path):
        dpkg("-i", str(deb))
        port = free_port()
        with CONF.open("a") as conf:  # the administrator's settings
            conf.write(f"listen = 127.0.0.1:{port}\nmax_records = 1\n")

        r = subprocess.run([INIT, "start"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        pid = int(PID_FILE.read_text())
        # The unit's command line, as its user, with CAP_SYSLOG only and no new privileges.
        unit = pathlib.Path(UNIT).read_text()
        argv = shlex.split(re.search(r"^ExecStart=(.+)$", unit, re.M).group(1))
        assert pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == \
            [a.encode() for a in argv]
        assert os.readlink(f"/proc/{pid}/exe") == "/usr/sbin/process-core-exporter"
        status = dict(l.split(":\t", 1) for l in
                      pathlib.Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in l)
        uid = pwd.getpwnam("process-core").pw_uid
        assert status["Uid"].split() == [str(uid)] * 4, status["Uid"]
        assert int(status["CapEff"], 16) == 1 << 34 == int(status["CapBnd"], 16)  # CAP_SYSLOG
        assert status["NoNewPrivs"].strip() == "1"
        scrape_until(port, "processcore_coredumps_total")
        assert subprocess.run([INIT, "status"], capture_output=True).returncode == 0
        # A second start finds it running and starts no other.
        assert subprocess.run([INIT, "start"], capture_output=True).returncode == 0
        assert int(PID_FILE.read_text()) == pid
        assert pathlib.Path("/var/log/process-core-exporter.log").stat().st_mode & 0o777 == 0o640

        # The cron entry's command, as cron runs it: its user, its SHELL and PATH, no other
        # environment. max_records = 1: it removes all but the newest record.
        handler_record(2)
        assert len(pctest.records(STORE)) == 2
        text = CRON.read_text()
        env = dict(re.findall(r"^([A-Z]+)=(.*)$", text, re.M))
        (line,) = [l for l in text.splitlines() if l and not l.startswith("#") and "=" not in
                   l.split()[0]]
        fields = line.split(None, 6)
        assert fields[:5] == ["17", "*", "*", "*", "*"], line  # hourly
        user, command = fields[5], fields[6]
        assert user == "process-core" and command.startswith("[ -d /run/systemd/system ] ||")
        r = subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in
                            env.items()), env["SHELL"], "-c", command],
                           capture_output=True, text=True, cwd="/")
        assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
        assert len(pctest.records(STORE)) == 1

        # Stopped through its PID file: the process is gone, and so is the file.
        r = subprocess.run([INIT, "stop"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        pctest.wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10,
                          what="the exporter exits")
        assert not PID_FILE.exists()
        assert subprocess.run([INIT, "status"], capture_output=True).returncode == 3


def repack(deb, out, version, scripts=None, drop=()):
    """`deb` with another version; with `scripts`, that directory's maintainer scripts and
    conffiles instead of its own and without the files under `drop` (an older package)."""
    tree = out.with_suffix("")
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    text = re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M)
    if scripts:
        text = re.sub(r"^(Provides|Conflicts|Replaces): .*\n", "", text, flags=re.M)
        for name in ("postinst", "prerm", "postrm", "conffiles"):
            shutil.copy(scripts / name, tree / "DEBIAN" / name)
        for top in drop:
            shutil.rmtree(tree / top)
        sums = tree / "DEBIAN" / "md5sums"
        sums.write_text("".join(l for l in sums.read_text().splitlines(keepends=True)
                                if not any(l.split()[1].startswith(d + "/") for d in drop)))
    control.write_text(text)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                   capture_output=True)
    return out


def ours():
    return pathlib.Path(SETTINGS[0]).read_text().startswith("|/usr/sbin/process-core ")


def test_upgrade_keeps_what_the_administrator_changed(deb, tmp_path):
    version = subprocess.run(["dpkg-deb", "--field", str(deb), "Version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    newer = [repack(deb, tmp_path / f"newer{i}.deb", f"{version}+upgrade{i}") for i in (1, 2, 3)]
    with fresh_host(tmp_path):
        dpkg("-i", str(deb))
        assert ours() and CLAIMED.exists()
        dropin = pathlib.Path(DROPIN).read_text()
        # The administrator's answer in the configuration: a conffile change is kept.
        with CONF.open("a") as conf:
            conf.write("max_records = 500\n")

        # Nothing else changed: the upgrade claims the settings again, quietly.
        output = dpkg("-i", str(newer[0]))
        assert "changed by someone else" not in output, output
        assert ours() and pathlib.Path(DROPIN).read_text() == dropin

        # Another handler in core_pattern: the upgrade leaves it, and the drop-in, alone.
        with pctest.core_pattern("|/bin/true %p"):
            output = dpkg("-i", str(newer[1]))
            assert "kernel.core_pattern or /etc/sysctl.d/50-process-core.conf was changed" in output
            assert pathlib.Path(SETTINGS[0]).read_text() == "|/bin/true %p\n"
            assert pathlib.Path(DROPIN).read_text() == dropin

        # The drop-in edited (the pattern still ours): kept as the administrator left it.
        edited = dropin.replace("fs.suid_dumpable = 2", "fs.suid_dumpable = 0")
        assert edited != dropin
        pathlib.Path(DROPIN).write_text(edited)
        output = dpkg("-i", str(newer[2]))
        assert "was changed by someone else" in output, output
        assert pathlib.Path(DROPIN).read_text() == edited

        assert "max_records = 500\n" in CONF.read_text()
        assert subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "process-core"],
                              capture_output=True, text=True).stdout == f"{version}+upgrade3"


def test_a_failed_claim_is_tried_again_on_upgrade(deb, tmp_path):
    """Where `corectl install` fails (here: a directory in the drop-in's place; in a container:
    read-only kernel settings), nothing is claimed, and the next upgrade claims as a first
    install would."""
    version = subprocess.run(["dpkg-deb", "--field", str(deb), "Version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    newer = repack(deb, tmp_path / "newer.deb", f"{version}+upgrade1")
    with fresh_host(tmp_path):
        before = pathlib.Path(SETTINGS[0]).read_text()
        os.mkdir(DROPIN)
        try:
            output = dpkg("-i", str(deb))
        finally:
            os.rmdir(DROPIN)
        assert "could not set kernel.core_pattern" in output, output
        assert pathlib.Path(SETTINGS[0]).read_text() == before
        assert not (pathlib.Path(ETC) / ".previous-sysctl.json").exists() and not CLAIMED.exists()

        output = dpkg("-i", str(newer))
        assert "changed by someone else" not in output, output
        assert ours() and CLAIMED.exists()


def test_upgrade_from_0_1_0(deb, tmp_path):
    """0.1.0 was built with CPack; its maintainer scripts are in tests/e2e/package-0.1.0."""
    old = repack(deb, tmp_path / "old.deb", "0.1.0", scripts=PREVIOUS,
                 drop=("etc/init.d", "etc/cron.d", "etc/logrotate.d"))
    with fresh_host(tmp_path):
        dpkg("-i", str(old))
        assert ours() and not CLAIMED.exists()
        saved = (pathlib.Path(ETC) / ".previous-sysctl.json").read_text()
        with CONF.open("a") as conf:
            conf.write("max_records = 500\n")
        handler_record(1)

        output = dpkg("-i", str(deb))
        # 0.1.0 wrote the drop-in as corectl install does: still ours, claimed again.
        assert "changed by someone else" not in output, output
        assert ours() and CLAIMED.exists()
        assert subprocess.run(["sha256sum", "--status", "--check", str(CLAIMED)]).returncode == 0
        assert (pathlib.Path(ETC) / ".previous-sysctl.json").read_text() == saved
        assert "max_records = 500\n" in CONF.read_text()
        assert len(pctest.records(STORE)) == 1
        assert os.access(INIT, os.X_OK) and CRON.exists()
        assert os.path.islink("/etc/systemd/system/timers.target.wants/process-core-vacuum.timer")
        # fresh_host purges and checks that the host is as it was before 0.1.0.
