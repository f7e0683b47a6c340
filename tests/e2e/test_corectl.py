"""corectl against the real kernel: debug a core captured through core_pattern, and
install/uninstall on this machine. Root only; every kernel setting is restored whatever happens.
"""
import os
import pathlib
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


unlimited_core = pctest.allow_cores


def test_debug_shows_the_crashing_function():
    handler = pctest.env_path("PC_HANDLER")
    # A short base path: the whole pattern must fit in the kernel's 127 characters.
    with tempfile.TemporaryDirectory(prefix="pcc", dir="/tmp") as base:
        store = pctest.make_store(base)
        config = pctest.write_config(pathlib.Path(base) / "c", store)
        pattern = f"|{handler} --config {config} -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"
        if len(pattern) > 127:
            pattern = f"|{handler} --config {config} -P%P -u%u -g%g -t%t -c%c -d%d -- %h %s %E"
        with pctest.machine_lock(), pctest.core_pattern(pattern), pctest.shipped_kernel_settings():
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


def as_user(uid, argv, **kw):
    """Runs argv as uid (and gid uid), without supplementary groups."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
                          capture_output=True, **kw)


def test_users_see_their_own_crashes_and_nothing_else():
    """A user reads their own crash through the handler's ACLs: list, info, dump and debug
    without sudo. Another user's crash and a setuid-style (dump mode 2) core of the same user
    stay out of reach, quietly."""
    handler = pctest.env_path("PC_HANDLER")
    user, other = 4242, 4343
    with tempfile.TemporaryDirectory(prefix="pcu", dir="/tmp") as base:
        os.chmod(base, 0o755)
        store = pctest.make_store(base)
        config = pctest.write_config(pathlib.Path(base) / "c", store)
        os.chmod(config, 0o644)
        crasher = pathlib.Path(base) / "segvme"  # a copy every user may run
        crasher.write_bytes(pctest.env_path("PC_CRASHER").read_bytes())
        crasher.chmod(0o755)
        pattern = f"|{handler} --config {config} -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"
        if len(pattern) > 127:
            pattern = f"|{handler} --config {config} -P%P -u%u -g%g -t%t -c%c -d%d -- %h %s %E"
        suid_dumpable = pathlib.Path("/proc/sys/fs/suid_dumpable")
        with pctest.machine_lock(), pctest.core_pattern(pattern), pctest.shipped_kernel_settings():
            previous = suid_dumpable.read_text()
            try:
                suid_dumpable.write_text("2\n")
                as_user(user, [str(crasher), "segv"], preexec_fn=unlimited_core)
                as_user(other, [str(crasher), "abort"], preexec_fn=unlimited_core)
                # Real uid `user`, effective root: a privilege-changed process, dump mode 2.
                subprocess.run(["setpriv", f"--ruid={user}", f"--rgid={user}", "--clear-groups",
                                str(crasher), "fpe"], capture_output=True,
                               preexec_fn=unlimited_core)
                found = pctest.wait_for_records(store, 3)
            finally:
                suid_dumpable.write_text(previous)
        assert len(found) == 3, found
        by_signal = {r["signal_name"]: r for r in found}
        mine, theirs, secret = by_signal["SEGV"], by_signal["ABRT"], by_signal["FPE"]
        assert mine["uid"] == user and mine["core"]["access"] == "owner"
        assert secret["uid"] == user and secret["dump_mode"] == 2
        assert secret["core"]["access"] == "root"

        env = {"PATH": os.environ["PATH"], "TZ": "UTC", "CORECTL_CACHE": "0"}

        def corectl_as(uid, *args):
            return as_user(uid, [str(pctest.env_path("PC_CORECTL")), "--config", str(config),
                                 "--no-pager", *args], env=env, timeout=60)

        r = corectl_as(user, "list", "--no-legend")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.decode().splitlines()
        assert len(lines) == 1 and mine["id"][:8] in lines[0], lines
        assert r.stderr == b"", r.stderr  # others' crashes are skipped quietly
        r = corectl_as(user, "info")
        assert r.returncode == 0 and mine["id"].encode() in r.stdout, r.stderr
        r = corectl_as(user, "dump", mine["id"][:10])
        assert r.returncode == 0, r.stderr
        assert r.stdout == pctest.zstd_decompress(store / mine["core"]["path"])
        r = corectl_as(user, "debug", "--debugger", "gdb -nx -batch -ex bt")
        assert b"pc_crash_null_write" in r.stdout, r.stdout + r.stderr
        # Not theirs: another user's crash, and their own privileged one.
        for rid in (theirs["id"], secret["id"]):
            r = corectl_as(user, "info", rid)
            assert r.returncode == 4, r.stderr
            r = corectl_as(user, "dump", rid, "-o", "/dev/null")
            assert r.returncode == 4, r.stderr
        r = corectl_as(other, "list", "--no-legend")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 1 and theirs["id"][:8].encode() in r.stdout
        # A user without any crash may not read the store at all.
        r = corectl_as(4444, "list")
        assert r.returncode == 4, r.stderr
        # Root-only stays root-only in the file system too.
        def acl(path):
            return subprocess.run(["getfacl", "-cn", str(path)], capture_output=True,
                                  check=True).stdout.decode()
        assert f"user:{user}:r--" in acl(store / mine["core"]["path"])
        # The directories all users share gain no entry per user: their view directory does.
        assert f"user:{user}:" not in acl(store)
        assert f"user:{user}:r-x" in acl(store / ".by-user" / str(user))
        assert "group::---" in acl(store / mine["core"]["path"])  # the group gains nothing
        assert f"user:{user}:" not in acl(store / secret["core"]["path"])
        assert f"user:{user}:" not in acl(store / theirs["core"]["path"])
