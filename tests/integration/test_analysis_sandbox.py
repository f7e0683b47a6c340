"""The crash analysis runs with nothing: code that a hostile module file makes libdw run reaches
neither the store, nor other processes, nor the network, and leaves nothing behind.

A preloaded hook (tests/programs/analysis_hook.c, built here) wraps dwfl_begin() and tries, from
inside the analysis child, what such code would try: read a store file only the store user may
read, create a file in the store, signal a process of the store user, fork, create an AF_INET
socket and connect to a listener of this test, open a file by path. With PC_HOOK_MODE=exit the
child exits with 100 + one bit per attempt that worked, and handler.analysis shows the status;
without it the analysis goes on and the record must still have its backtraces.

The core comes from the kernel (a file core_pattern for the duration, machine lock held), like
test_analysis_child.py's: only such a core carries the build-ids the unwinder needs.
"""
import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if shutil.which("cc") is None:
    pytest.skip("needs a C compiler for the preloaded hook", allow_module_level=True)

ARGS = ["-P{pid}", "-I{pid}", "-u1000", "-g1001", "-t1700000000",
        "-c18446744073709551615", "-d1", "--", "web01", "11", "!usr!bin!crasher"]
BITS = {1: "read a store file", 2: "create a file in the store", 4: "signal a process",
        8: "fork", 16: "create an AF_INET socket", 32: "open a file by path",
        64: "connect to 127.0.0.1"}
STORE_USER = "nobody"


allow_cores = pctest.allow_cores


@pytest.fixture(scope="module")
def kernel_core(crasher, tmp_path_factory):
    return pctest.kernel_file_core(crasher, tmp_path_factory.mktemp("kcore"), 2)


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    return pctest.build_analysis_hook(tmp_path_factory.mktemp("hook"))


@pytest.fixture
def store():
    """A store the store user can reach by path, as an installed one (pytest's directories are
    root's only): what the hook finds there it could only have reached with the user's rights."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="pc-sandbox-"))
    base.chmod(0o755)
    try:
        yield pctest.make_store(base, owner=STORE_USER)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def orphans():
    found = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if (p / "comm").read_text().strip() == "pc-hook-orphan":
                    found.append(int(p.name))
    return found


@pytest.fixture
def attack(tmp_path, store, handler, hook):
    """Runs the handler with the hook preloaded; returns (record, what the test can see)."""
    nobody = pwd.getpwnam(STORE_USER)
    secret = pathlib.Path(store) / "secret.core"
    secret.write_bytes(b"root-only core contents")
    os.chown(secret, nobody.pw_uid, nobody.pw_gid)
    secret.chmod(0o600)
    by_path = pathlib.Path(store).parent / "readable-by-path"
    by_path.write_text("any file\n")
    by_path.chmod(0o644)
    victim = subprocess.Popen(["sleep", "120"], user=nobody.pw_uid, group=nobody.pw_gid)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    before = set(orphans())

    def run(data, pid, mode, args=ARGS, hook_env=None, **config):
        env = {"LD_PRELOAD": str(hook), "PC_HOOK_SECRET": str(secret),
               "PC_HOOK_DIR": str(store), "PC_HOOK_VICTIM": str(victim.pid),
               "PC_HOOK_PATH": str(by_path), "PC_HOOK_PORT": str(listener.getsockname()[1]),
               "PC_HOOK_MODE": mode, **(hook_env or {})}
        conf = pctest.write_config(tmp_path / "pc.conf", store, **config)
        seen = {r["id"] for r in pctest.records(store)}
        # Output to a file, not a pipe: a grandchild the child left would hold a pipe open.
        with open(tmp_path / "stderr", "w+b") as err:
            proc = subprocess.run([str(handler), "--config", str(conf),
                                   *[a.format(pid=pid) for a in args]],
                                  input=data, stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=60, env=env)
            err.seek(0)
            assert proc.returncode == 0, err.read()
        new = [r for r in pctest.records(store) if r["id"] not in seen]
        assert len(new) == 1, new
        connected = False
        with contextlib.suppress(BlockingIOError):
            conn, _ = listener.accept()
            conn.close()
            connected = True
        return new[0], {"planted": (pathlib.Path(store) / "planted-by-hook").exists(),
                        "orphans": sorted(set(orphans()) - before), "connected": connected,
                        "victim_alive": victim.poll() is None, "secret": secret,
                        "store": store}

    try:
        yield run
    finally:
        for pid in set(orphans()) - before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        victim.kill()
        victim.wait()
        listener.close()


def worked(analysis):
    """The attempts the hook reports as successful, from "exited with status 1NN"."""
    prefix = "exited with status "
    assert analysis.startswith(prefix), analysis
    bits = int(analysis[len(prefix):]) - 100
    assert 0 <= bits < 128, analysis
    return [name for bit, name in BITS.items() if bits & bit]


def test_hook_reaches_nothing(attack, kernel_core):
    data, pid = kernel_core
    r, seen = attack(data, pid, "exit")
    assert worked(r["handler"]["analysis"]) == []
    assert not seen["planted"] and not seen["connected"] and seen["victim_alive"]
    # What the child forked (nothing, here) is gone with it.
    assert seen["orphans"] == []
    assert r["core"]["present"]


def test_hooked_analysis_still_has_backtraces(attack, kernel_core):
    data, pid = kernel_core
    r, seen = attack(data, pid, "continue")
    assert r["handler"]["analysis"] == "ok", r["handler"]
    crash = r["crash"]
    assert crash["signature_version"] == 2 and crash["stacks"]
    frames = crash["stacks"][0]["frames"]
    assert any(f["trust"] == "cfi" for f in frames), frames
    assert all(f["symbol"] for f in frames[:2]), frames
    assert not seen["planted"] and not seen["connected"] and seen["orphans"] == []


def with_ids(uid, gid):
    return [a for a in ARGS if not a.startswith(("-u", "-g"))][:-4] + \
        [f"-u{uid}", f"-g{gid}"] + ARGS[-4:]


def can_read_as(path, uid, gid):
    """Whether a process with exactly these ids (no supplementary groups) can read `path`."""
    proc = subprocess.run(["/usr/bin/python3",
                           "-c", "import sys; open(sys.argv[1], 'rb').read(1)", str(path)],
                          user=uid, group=gid, extra_groups=[], capture_output=True, timeout=30)
    return proc.returncode == 0


@pytest.mark.parametrize("crash_uid,crash_gid,uid,gid", [
    (1000, 1001, 1000, 1001),    # an ordinary user's crash: the crasher's own ids
    (0, 0, 65533, 65533),        # root's: the dedicated ids, which own nothing
    (65534, 65534, 65533, 65533),  # the store user's own (nobody here): not the store user
    (999, 100, 65533, 65533),    # a system user's
])
def test_analysis_runs_as_its_own_uid(attack, kernel_core, crash_uid, crash_gid, uid, gid):
    """The analysis child runs as the crasher's uid or the dedicated one, never as the store
    user, with no supplementary groups: and with those ids the store's cores cannot be read,
    path or not, while the store user could read them."""
    data, pid = kernel_core
    store_uid = pwd.getpwnam(STORE_USER).pw_uid
    r, seen = attack(data, pid, "ids", args=with_ids(crash_uid, crash_gid),
                     hook_env={"PC_HOOK_UID": str(uid), "PC_HOOK_GID": str(gid),
                               "PC_HOOK_STORE_UID": str(store_uid)})
    assert r["handler"]["analysis"] == "exited with status 100", r["handler"]
    assert r["core"]["present"]
    nobody = pwd.getpwnam(STORE_USER)
    assert can_read_as(seen["secret"], nobody.pw_uid, nobody.pw_gid)
    assert not can_read_as(seen["secret"], uid, gid)
    # The core just stored, the store user's file like every core: the dedicated ids cannot
    # read it either (a crasher's own uid may be granted its own core, docs/record.md).
    core = pathlib.Path(seen["store"]) / r["core"]["path"]
    assert can_read_as(core, nobody.pw_uid, nobody.pw_gid)
    if uid == 65533:
        assert not can_read_as(core, uid, gid)


@pytest.mark.parametrize("step,reason", [
    ("namespaces", "could not create the analysis namespaces"),
    ("root", "could not give the analysis an empty root"),
    ("credentials", "could not drop the analysis child's privileges"),
    ("seccomp", "could not load the seccomp filter"),
])
def test_sandbox_failure_fails_closed(run_handler_env, kernel_core, step, reason):
    """Where a step of the sandbox is unavailable there is no analysis, and the record says why:
    the crash site from the notes and the v1 signature, no backtraces."""
    data, pid = kernel_core
    r = run_handler_env(data, pid, {"PROCESS_CORE_TEST_SANDBOX_FAULT": step})
    assert r["handler"]["analysis"] == "sandbox unavailable: " + reason
    assert any(w.startswith("crash analysis failed (sandbox unavailable")
               for w in r["handler"]["warnings"])
    crash = r["crash"]
    assert crash["stacks"] == [] and crash["signature_version"] == 1 and crash["pc"]
    assert r["core"]["present"]


@pytest.fixture
def run_handler_env(tmp_path, store, handler):
    def run(data, pid, env):
        conf = pctest.write_config(tmp_path / "pc.conf", store)
        proc = subprocess.run([str(handler), "--config", str(conf),
                               *[a.format(pid=pid) for a in ARGS]],
                              input=data, capture_output=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        recs = pctest.records(store)
        assert len(recs) == 1, recs
        return recs[0]

    return run


def test_modules_come_from_the_crashed_process_not_their_paths(crasher):
    """Through the kernel, with the process alive while the handler runs: the executable's path
    names another file by the time of the crash (unlinked and replaced), so only the handle's
    map_files reference reaches the file that was mapped, and with it the crash site's symbol."""
    with pctest.kernel_rig("pcs-", rate_limit_burst=0) as rig:
        exe = rig.work / "crasher-copy"
        shutil.copy2(crasher, exe)
        proc = subprocess.Popen([str(exe), "segv-on-eof"], preexec_fn=allow_cores,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout.readline() == b"ready\n"
            exe.unlink()
            shutil.copy2("/bin/true", exe)  # another ELF file at the same path
            proc.stdin.close()
            proc.wait(timeout=60)
        finally:
            proc.stdout.close()
        assert proc.returncode < 0
        r = pctest.record_for(rig.store, proc.pid)
    assert r["handler"]["analysis"] == "ok", r["handler"]
    crash = r["crash"]
    assert crash["module"].startswith(str(exe)), crash["module"]
    frames = crash["stacks"][0]["frames"]
    assert frames[0]["module"].startswith(str(exe)) and frames[0]["symbol"], frames[0]
    assert frames[0]["symbol"]["verified"]
    assert crash["symbol"] and crash["symbol"]["name"] == frames[0]["symbol"]["name"]
