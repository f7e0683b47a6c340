"""corectl against the real kernel: debug a core captured through core_pattern, and
install/uninstall on this machine. Root only; every kernel setting is restored whatever happens.
"""
import os
import pathlib
import resource
import subprocess
import tempfile

import pytest

import pctest

SETTINGS = {
    "kernel.core_pattern": "/proc/sys/kernel/core_pattern",
    "kernel.core_pipe_limit": "/proc/sys/kernel/core_pipe_limit",
    "fs.suid_dumpable": "/proc/sys/fs/suid_dumpable",
}

pytestmark = pytest.mark.skipif(not pctest.can_set_core_pattern(),
                                reason="needs root and a writable core_pattern")


def read(name):
    return pathlib.Path(SETTINGS[name]).read_text().rstrip("\n")


def corectl(*args, check=True):
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), *args], capture_output=True,
                          check=check, env=dict(os.environ, TZ="UTC"))


def unlimited_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def test_debug_shows_the_crashing_function():
    handler = pctest.env_path("PC_HANDLER")
    # A short base path: the whole pattern must fit in the kernel's 127 characters.
    with tempfile.TemporaryDirectory(prefix="pcc", dir="/tmp") as base:
        store = pctest.make_store(base)
        config = pctest.write_config(pathlib.Path(base) / "c", store)
        pattern = f"|{handler} --config {config} -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"
        if len(pattern) > 127:
            pattern = f"|{handler} --config {config} -P%P -u%u -g%g -t%t -c%c -d%d -- %h %s %E"
        with pctest.machine_lock(), pctest.core_pattern(pattern):
            proc = subprocess.run([str(pctest.env_path("PC_CRASHER")), "segv"],
                                  preexec_fn=unlimited_core)
            assert proc.returncode < 0
            found = pctest.wait_for_records(store, 1)
        assert len(found) == 1 and found[0]["core"]["present"], found
        rid = found[0]["id"]
        r = corectl("--config", str(config), "debug", rid[:8],
                    "--debugger", "gdb -nx -batch -ex bt", check=False)
        out = r.stdout.decode(errors="replace")
        assert "pc_crash_null_write" in out, out + r.stderr.decode(errors="replace")
        # The private copy of the core is gone.
        assert not list(pathlib.Path(os.environ.get("TMPDIR", "/var/tmp")).glob("corectl-*/core"))


def test_install_and_uninstall_restore_the_machine(tmp_path):
    handler = str(pctest.env_path("PC_HANDLER"))
    sysctl_dir, state_dir = tmp_path / "sysctl.d", tmp_path / "state"
    args = ["--handler", handler, "--sysctl-dir", str(sysctl_dir), "--state-dir", str(state_dir)]
    with pctest.machine_lock():
        original = {name: read(name) for name in SETTINGS}
        try:
            # core_pattern() restores the pattern even on SIGTERM; the finally below the rest.
            with pctest.core_pattern(original["kernel.core_pattern"]):
                r = corectl("install", *args)
                expected = f"|{handler} -P%P -I%I -u%u -g%g -t%t -c%c -d%d"
                assert read("kernel.core_pattern").startswith(expected), r.stdout
                assert read("kernel.core_pattern").endswith(" -- %h %s %E")
                assert read("kernel.core_pipe_limit") == "0"
                assert read("fs.suid_dumpable") == "2"
                dropin = (sysctl_dir / "50-process-core.conf").read_text()
                assert f"kernel.core_pattern = {read('kernel.core_pattern')}\n" in dropin
                # A second install keeps the values saved by the first.
                r = corectl("install", *args)
                assert b"Keeping" in r.stdout
                corectl("uninstall", *args)
                assert {name: read(name) for name in SETTINGS} == original
                assert not (sysctl_dir / "50-process-core.conf").exists()
        finally:
            for name, value in original.items():
                pathlib.Path(SETTINGS[name]).write_text(value + "\n")
