"""A test run killed outright (SIGKILL: no `finally`, no signal handler) leaves the machine
changed; the next run that takes the machine lock puts it back from the machine journal
(tests/lib/machine_journal.py): the kernel settings and core_pattern it set, the /dev/log socket
it bound, and a package it was installing when dpkg itself was killed mid-configure (which makes
apt refuse to run until `dpkg --configure -a`). What cannot be put back is kept for the next run.

Needs root and a writable core_pattern (else skipped, exit code 77).
"""
import os
import pathlib
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

import machine_journal
import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

PACKAGE = "pc-test-killed-dpkg"
PIPE_LIMIT = "/proc/sys/kernel/core_pipe_limit"


def killed_holder(body):
    """Runs `body` (Python, with pctest imported) under the machine lock in a child that then
    dies of SIGKILL; returns what it printed."""
    script = "import contextlib, os, signal, subprocess, pctest, machine_journal\n" \
             "with pctest.machine_lock():\n" + textwrap.indent(textwrap.dedent(body), "    ") + \
             "    os.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=os.environ, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    return proc.stdout


def test_settings_and_socket_left_by_a_killed_run_are_put_back():
    pattern, limit = (pathlib.Path(p).read_text() for p in (pctest.CORE_PATTERN, PIPE_LIMIT))
    bind_log = not os.path.lexists("/dev/log")
    try:
        killed_holder(f"""
            stack = contextlib.ExitStack()  # never closed: the child dies inside
            stack.enter_context(pctest.shipped_kernel_settings())
            stack.enter_context(pctest.sysctl({PIPE_LIMIT!r}, 7))
            stack.enter_context(pctest.core_pattern("|/bin/false killed-run"))
            if {bind_log}:
                stack.enter_context(pctest.SyslogCapture())
            """)
        # Nothing ran when it died: the machine is still changed, and the journal says how.
        assert pathlib.Path(pctest.CORE_PATTERN).read_text() == "|/bin/false killed-run\n"
        assert pathlib.Path(PIPE_LIMIT).read_text() == "7\n"
        if bind_log:
            assert stat.S_ISSOCK(os.lstat("/dev/log").st_mode)
        assert len(list(machine_journal.JOURNAL.glob("*.json"))) == 3 + bind_log
        with pctest.machine_lock():
            assert pathlib.Path(pctest.CORE_PATTERN).read_text() == pattern
            assert pathlib.Path(PIPE_LIMIT).read_text() == limit
            if bind_log:
                assert not os.path.lexists("/dev/log")
            assert not machine_journal.JOURNAL.exists()
    finally:
        pathlib.Path(pctest.CORE_PATTERN).write_text(pattern)
        pathlib.Path(PIPE_LIMIT).write_text(limit)


def test_an_entry_that_cannot_be_put_back_is_kept_for_the_next_run(capfd):
    """What could not be put back is still changed: its entry stays (the machine state check
    then fails the run) and the next run tries again; the entries beside it are undone."""
    limit = pathlib.Path(PIPE_LIMIT).read_text()
    with pctest.machine_lock():
        pass  # whatever an earlier run left is undone before this test adds its own
    missing = "/proc/sys/kernel/pc-tests-no-such-setting"
    stuck = machine_journal.add("values", values={missing: "1\n"})
    pathlib.Path(PIPE_LIMIT).write_text("9\n")
    machine_journal.add("values", values={PIPE_LIMIT: limit})
    try:
        for _ in range(2):
            with pctest.machine_lock():
                assert pathlib.Path(PIPE_LIMIT).read_text() == limit
                assert list(machine_journal.JOURNAL.glob("*.json")) == [stuck]
            err = capfd.readouterr().err
            assert f"could not undo {stuck.name}, kept for the next run" in err, err
    finally:
        machine_journal.forget(stuck)
        pathlib.Path(PIPE_LIMIT).write_text(limit)
    assert not machine_journal.JOURNAL.exists()


def build_deb(tmp_path):
    """A package whose first configure kills dpkg (as a lost session would), later ones pass."""
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share" / PACKAGE).mkdir(parents=True)
    (root / "usr/share" / PACKAGE / "file").write_text("x\n")
    (root / "DEBIAN/control").write_text(textwrap.dedent(f"""\
        Package: {PACKAGE}
        Version: 1.0
        Architecture: all
        Maintainer: process-core tests <tests@example.invalid>
        Description: killed while dpkg configures it
        """))
    marker = tmp_path / "configured-once"
    postinst = root / "DEBIAN/postinst"
    postinst.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ ! -e {marker} ]; then
          touch {marker}
          kill -KILL $PPID
          sleep 10
        fi
        exit 0
        """))
    postinst.chmod(0o755)
    deb = tmp_path / f"{PACKAGE}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def status():
    return subprocess.run(["dpkg-query", "-W", "-f", "${Status}", PACKAGE], capture_output=True,
                          text=True).stdout


def test_a_package_left_half_configured_by_a_killed_dpkg_is_purged(tmp_path):
    if status() or machine_journal.dpkg_interrupted():
        pytest.skip(f"{PACKAGE} is known to dpkg here, or dpkg is mid-run")
    deb = build_deb(tmp_path)
    try:
        killed_holder(f"""
            machine_journal.add("package", name={PACKAGE!r})
            subprocess.run(["dpkg", "-i", {str(deb)!r}], capture_output=True)
            """)
        # As CI once found the machine: apt would refuse to install anything now.
        assert status() == "install ok half-configured"
        assert machine_journal.dpkg_interrupted()
        with pctest.machine_lock():
            assert status() == ""
            assert not machine_journal.dpkg_interrupted()
            assert subprocess.run(["dpkg", "--audit"], capture_output=True,
                                  text=True).stdout == ""
            assert not os.path.exists(f"/usr/share/{PACKAGE}")
    finally:
        machine_journal.finish_dpkg()
        subprocess.run(["dpkg", "--purge", PACKAGE], capture_output=True)
