"""Storms, hogs and held locks, through the real kernel with the shipped sysctl values.

Every crash must get a record: the kernel never skips a dump (core_pipe_limit = 0, as shipped),
and the handler bounds its own work (capture slots, a lean "busy" path, deadlines). Needs root
and a writable core_pattern; the previous kernel settings are always restored, under the
machine lock.
"""
import contextlib
import fcntl
import os
import pathlib
import pwd
import shutil
import subprocess
import time

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

SYSCTL = pathlib.Path("/proc/sys")


@pytest.fixture
def rig():
    """A handler copy and a store (pctest.KernelRig); each test sets its configuration and
    core_pattern (storm_config(), rig.pattern())."""
    with pctest.kernel_rig("pcs-", install=False) as rig:
        assert (SYSCTL / "kernel/core_pipe_limit").read_text().strip() == "0"
        rig.crasher = rig.work / "crasher"
        shutil.copy2(pctest.env_path("PC_CRASHER"), rig.crasher)
        yield rig


def storm_config(rig, name="c", **keys):
    """rig.config() without the rate limit unless a test sets one."""
    keys.setdefault("rate_limit_burst", 0)
    return rig.config(name, **keys)


allow_cores = pctest.allow_cores


def as_nobody():
    allow_cores()
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setgroups([])
    os.setuid(nobody.pw_uid)


def wait_no_handlers(rig, timeout):
    pctest.wait_until(lambda: not rig.handlers_running(), timeout,
                      what="every handler has exited")


def test_100_simultaneous_crashes_all_recorded(rig):
    # Few slots and 8 MiB processes, so that captures overlap on any machine.
    storm_config(rig, max_captures=4)
    with pctest.core_pattern(rig.pattern()):
        pids = pctest.crash_together([rig.crasher, "segv-on-eof", "--heap", "8"], 100)
        found = pctest.records_for(rig.store, pids, 90)
        wait_no_handlers(rig, 30)
    reasons = [r["core"]["reason"] for r in found.values()]
    # Crashes beyond the free slots took the lean path and say so; a lean record has
    # everything but the core.
    assert reasons.count("stored") >= 1 and reasons.count("busy") >= 1, reasons
    assert set(reasons) <= {"stored", "busy"}, reasons
    busy = [r for r in found.values() if r["core"]["reason"] == "busy"]
    for r in busy:
        assert not r["core"]["present"] and r["core"]["path"] is None
        assert r["signal_name"] == "SEGV" and r["comm"] == "crasher"
        assert "segv-on-eof" in r["cmdline"]
        assert "max_captures" in r["core"]["error"]
    assert len({r["id"] for r in found.values()}) == 100


def test_huge_sparse_cores_do_not_silence_capture(rig):
    """Unprivileged processes with 1 TiB sparse mappings: the kernel streams 1 TiB of zeros each.
    Their handlers stop at the deadline; an ordinary crash afterwards still gets its core."""
    storm_config(rig, capture_timeout=10)
    with pctest.core_pattern(rig.pattern()):
        start = time.time()
        hogs = [subprocess.Popen([str(rig.crasher), "segv", "--sparse", "1024"],
                                 preexec_fn=as_nobody, stderr=subprocess.DEVNULL)
                for _ in range(3)]
        # Their handlers hold capture slots and stream when the ordinary crash comes.
        pctest.wait_until(lambda: len(rig.handlers_running()) >= len(hogs), timeout=30,
                          what="a handler for each hog")
        pid = subprocess.Popen([str(rig.crasher), "segv"], preexec_fn=as_nobody,
                               stderr=subprocess.DEVNULL)
        pid.wait(timeout=60)
        try:
            found = pctest.records_for(rig.store, {h.pid for h in hogs} | {pid.pid},
                                 60 - (time.time() - start))
            wait_no_handlers(rig, 60 - (time.time() - start))
            assert time.time() - start < 60
        finally:
            # The kernel itself still walks the terabyte page by page (after the handler has
            # gone, nothing is written any more); a fatal signal ends that walk.
            for h in hogs:
                h.kill()
                h.wait(timeout=120)
    ordinary = found[pid.pid]["core"]
    assert ordinary["present"] and ordinary["reason"] == "stored", ordinary
    for h in hogs:
        core = found[h.pid]["core"]
        # Cut at the deadline (or at max_core_size, on a very fast machine): a valid prefix.
        assert core["present"] and core["truncated"] and core["reason"] == "truncated", core
        assert core["expected_size"] > 1 << 40 and core["size"] < core["expected_size"]


def test_rate_limit_is_exact_under_concurrency(rig):
    # 50 crashes of one uid: its own slots must not be the limit here.
    storm_config(rig, rate_limit_burst=10, rate_limit_interval=3600, max_captures=64,
                 max_captures_per_user=64)
    with pctest.core_pattern(rig.pattern()):
        pids = pctest.crash_together([rig.crasher, "segv-on-eof"], 50)
        found = pctest.records_for(rig.store, pids, 90)
        wait_no_handlers(rig, 30)
    reasons = sorted(r["core"]["reason"] for r in found.values())
    assert reasons.count("stored") == 10, reasons
    assert reasons.count("rate_limited") == 40, reasons
    assert len(list(rig.store.rglob("*.core.zst"))) == 10
    assert not list(rig.store.rglob(".#*"))


def test_locks_held_on_the_store_do_not_delay_a_crash(rig):
    """Whoever can open the store's files (the store user, the exporter) may hold locks on all
    of them: a crash's record is not delayed."""
    storm_config(rig, rate_limit_burst=10)
    with pctest.core_pattern(rig.pattern()):
        first = subprocess.Popen([str(rig.crasher), "segv"], preexec_fn=allow_cores,
                                 stderr=subprocess.DEVNULL)
        first.wait(timeout=60)
        pctest.records_for(rig.store, {first.pid}, 30)
        # Its record is written before its handler lets go of the reservation: wait for the
        # handler, so that every file left is the store's, not a step of that crash.
        wait_no_handlers(rig, 30)
        held = []
        try:
            for path in [rig.store, *rig.store.rglob("*")]:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                fcntl.flock(fd, fcntl.LOCK_EX)
                held.append(fd)
            assert any(pathlib.Path(rig.store, ".usage").samefile(f"/proc/self/fd/{fd}")
                       for fd in held if os.path.exists(rig.store / ".usage"))
            start = time.time()
            p = subprocess.Popen([str(rig.crasher), "segv"], preexec_fn=allow_cores,
                                 stderr=subprocess.DEVNULL)
            p.wait(timeout=60)
            r = pctest.records_for(rig.store, {p.pid}, 10)[p.pid]
            assert time.time() - start < 5
            assert r["core"]["present"], r["core"]
        finally:
            for fd in held:
                os.close(fd)


def kernel_helpers(argv):
    """Pids of the processes the kernel started (children of kthreadd) with command line argv."""
    want = ("\0".join(argv) + "\0").encode()
    pids = []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (d / "stat").read_text()
                if (d / "cmdline").read_bytes() == want and stat.rsplit(")", 1)[1].split()[1] == "2":
                    pids.append(int(d.name))
    return pids


def test_a_dump_the_kernel_skips_is_counted(rig):
    """With core_pipe_limit = 1 and one helper held busy, the kernel skips the next dump and
    says so in its log only: the exporter, following /dev/kmsg, counts it."""
    from pcexporter import Exporter, value
    config = storm_config(rig, kernel_log="/dev/kmsg")
    sleep = shutil.which("sleep")
    with Exporter(rig.store, config, rig.work) as ex:
        before = value(ex.scrape(), "processcore_kernel_dumps_lost_total", reason="pipe_limit")
        # A helper that never reads its stdin holds the only slot for 4 s.
        with pctest.sysctl("/proc/sys/kernel/core_pipe_limit", 1), pctest.core_pattern(f"|{sleep} 4"):
            held = subprocess.Popen([str(rig.crasher), "segv"], preexec_fn=allow_cores,
                                    stderr=subprocess.DEVNULL)
            # The kernel runs the helper for the held dump: the only slot is taken.
            pctest.wait_until(lambda: kernel_helpers([sleep, "4"]), timeout=30,
                              what="the kernel's helper for the held dump")
            skipped = subprocess.Popen([str(rig.crasher), "segv"], preexec_fn=allow_cores,
                                       stderr=subprocess.DEVNULL)
            skipped.wait(timeout=30)
            held.wait(timeout=30)
        m, _ = ex.wait_for(lambda m: value(m, "processcore_kernel_dumps_lost_total",
                                           reason="pipe_limit") >= before + 1, timeout=10)
        assert value(m, "processcore_kernel_dumps_lost_total", reason="pipe_failed") == 0


def test_a_crash_with_400_long_mapped_paths_is_counted_and_listed(rig):
    """400 mapped files with ~3.8 KB paths would make a 1.5 MB record: the handler bounds it
    (saying what it cut), the exporter counts it and corectl lists it."""
    from pcexporter import Exporter, crashes
    config = storm_config(rig, kernel_log="")
    deep = rig.work / "m"
    for _ in range(14):
        deep = deep / ("d" * 250)
    deep.mkdir(parents=True)
    dirfd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(400):
            fd = os.open(f"{i:03d}" + "f" * 240, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dirfd)
            os.write(fd, b"x" * 4096)
            os.close(fd)
    finally:
        os.close(dirfd)
    with pctest.core_pattern(rig.pattern()):
        p = subprocess.Popen([str(rig.crasher), "segv", "--map-dir", str(deep)],
                             preexec_fn=allow_cores, stderr=subprocess.DEVNULL)
        p.wait(timeout=60)
        r = pctest.records_for(rig.store, {p.pid}, 30)[p.pid]
    assert pathlib.Path(r["_path"]).stat().st_size <= 256 * 1024
    assert any(c.startswith("mappings: ") for c in r["handler"]["cut"]), r["handler"]
    assert r["core"]["present"]
    with Exporter(rig.store, config, rig.work) as ex:
        counted = crashes(ex.scrape())
    assert counted.get(("%s" % r["hostname"], str(rig.crasher), "SEGV", "true")) == 1, counted
    listed = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), "list"],
                            capture_output=True, text=True,
                            env=dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(rig.work / "cache")))
    # Listed under its (abbreviated) id, with its executable and signal.
    line = [l for l in listed.stdout.splitlines() if r["id"][:8] in l]
    assert listed.returncode == 0 and len(line) == 1, listed
    assert str(rig.crasher) in line[0] and "SEGV" in line[0]
