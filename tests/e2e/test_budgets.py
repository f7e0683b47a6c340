"""Budgets per user through the real kernel: a user who uses up the rate limit of a program
leaves root's crash of the same program its core.

Needs root and a writable /proc/sys/kernel/core_pattern; elsewhere the whole file is skipped.
The previous pattern is always restored (pctest.kernel_rig)."""
import os
import shutil
import signal
import subprocess

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

USER = 1000


def run_crash_as(exe, uid):
    """Runs the crasher as `uid` (real and effective ids: dump mode 1); returns its pid."""

    def become():
        pctest.allow_cores()
        if uid != 0:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    proc = subprocess.Popen([str(exe), "segv"], preexec_fn=become, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=60) == -signal.SIGSEGV
    return proc.pid


def test_a_users_burst_leaves_roots_core():
    with pctest.kernel_rig("pcb-", rate_limit_burst=2) as rig:
        # A program every user may run, in a directory every user may enter.
        exe = rig.work / "crasher"
        shutil.copy2(pctest.env_path("PC_CRASHER"), exe)
        os.chmod(exe, 0o755)
        users = [run_crash_as(exe, USER) for _ in range(3)]
        found = pctest.records_for(rig.store, users)
        assert all(r["uid"] == USER for r in found.values())
        assert sorted(r["core"]["reason"] for r in found.values()) == \
            ["rate_limited", "stored", "stored"]
        root = pctest.record_for(rig.store, run_crash_as(exe, 0))
        assert root["uid"] == 0 and root["executable"] == str(exe)
        assert root["core"]["present"] and root["core"]["reason"] == "stored", root["core"]
        # And the user is still limited.
        again = pctest.record_for(rig.store, run_crash_as(exe, USER))
        assert again["core"]["reason"] == "rate_limited"
