"""Programs that catch their own crash: the interrupted stack and the original fault.

Through the real kernel and the real handler (machine lock held, shipped kernel settings,
previous core_pattern restored): a SIGSEGV handler on a sigaltstack that re-raises (SA_NODEFER)
or aborts, in the main thread and in another one; Debian's python3.11 with faulthandler; a
seccomp filter that kills the process. The record must unwind through the signal frame into the
interrupted stack as gdb does on the same core, carry the fault the handler caught, group with
the same crash without a handler, and name the system call seccomp blocked. Skipped without
root or a writable core_pattern.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if shutil.which("gdb") is None:
    pytest.skip("needs gdb", allow_module_level=True)

PYTHON = "/usr/bin/python3.11"


@pytest.fixture(scope="module")
def kernel():
    with pctest.kernel_rig("pcs-", syslog=True, rate_limit_burst=0) as rig:
        yield rig


def crash(store, argv, env=None):
    """Runs argv until it dies of a signal; returns (returncode, record, decompressed core)."""
    proc = subprocess.Popen([str(a) for a in argv], preexec_fn=pctest.allow_cores, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}"
    record = pctest.record_for(store, proc.pid)
    core_zst = pathlib.Path(record["_path"]).parent / f"{record['id']}.core.zst"
    core = pathlib.Path(store).parent / f"{record['id']}.core"
    core.write_bytes(pctest.zstd_decompress(core_zst))
    return proc.returncode, record, core


def corectl_info(rig, record):
    out = subprocess.run([pctest.env_path("PC_CORECTL"), "--config", str(rig.work / "c"), "info",
                          record["id"]], env=dict(os.environ, NO_COLOR="1"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


# thread-early: the alternate stack above the thread's stack, so the interrupted stack streams
# past before the signal frame that locates it.
CASES = [("nodefer", None, -signal.SIGSEGV), ("abort", None, -signal.SIGABRT),
         ("nodefer", "thread", -signal.SIGSEGV), ("abort", "thread", -signal.SIGABRT),
         ("nodefer", "thread-early", -signal.SIGSEGV)]


@pytest.mark.parametrize("mode,where,rc", CASES, ids=[f"{m}-{w or 'main'}" for m, w, _ in CASES])
def test_alternate_stack_handler(kernel, mode, where, rc):
    exe = pctest.env_path("PC_SIGFRAME")
    got_rc, record, core = crash(kernel.store, [exe, mode] + ([where] if where else []))
    assert got_rc == rc
    c = record["crash"]
    ours = pctest.frame_names(c["stacks"][0]["frames"])
    gdb = pctest.gdb_threads(exe, core)[0][1]
    # Through the signal frame into the interrupted stack, frame for frame as gdb.
    assert "<signal>" in gdb and gdb[gdb.index("<signal>") + 1:][:3] == ["crash_here", "middle",
                                                                         "outer"], gdb
    # gdb and the symbol tables may call one function by two aliases (clone3 / __clone3).
    bare = [n.lstrip("_") for n in gdb]
    assert [n.lstrip("_") for n in ours[:len(gdb)]] == bare, f"record {ours} != gdb {gdb}"
    assert ours[ours.index("<signal>") - 1] == "on_segv"
    # The delivered signal is what the kernel reported; the original fault is the handler's.
    assert c["si_signo"] == -rc and c["si_code_name"] == "SI_TKILL"
    o = c["original_fault"]
    assert o["si_signo"] == signal.SIGSEGV and o["signal_name"] == "SEGV"
    assert o["si_code_name"] == "SEGV_MAPERR" and o["fault_address"] == "0x10"
    assert o["symbol"]["name"] == "crash_here"
    # The signature is the bug's: the interrupted frames and the fault's signal.
    assert c["signature_chain"] == "crash_here ← middle ← outer"
    sig = "SIG" + signal.Signals(-rc).name[3:]
    cause = f"{sig} raised by the program's crash handler after SIGSEGV (SEGV_MAPERR) at 0x10 " \
            "in crash_here"
    assert f"Cause: {cause}" in " ".join(corectl_info(kernel, record).split())
    if kernel.log.active:
        assert kernel.log.wait_for(lambda l: f"crashed with {cause}" in l and
                                   record["id"] in l), kernel.log.lines[-3:]


def test_signature_is_the_bug_not_the_handler(kernel):
    exe = pctest.env_path("PC_SIGFRAME")
    sigs = {}
    for argv in (["plain"], ["nodefer"], ["abort"], ["plain", "thread"], ["nodefer", "thread"],
                 ["abort", "thread-early"]):
        _, record, core = crash(kernel.store, [exe] + argv)
        core.unlink()
        sigs[" ".join(argv)] = (record["crash"]["signature"], record["crash"]["signature_chain"])
    assert len(set(sigs.values())) == 1, sigs
    assert sigs["plain"][1] == "crash_here ← middle ← outer"


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="needs Debian's python3.11")
def test_python_faulthandler(kernel):
    _, record, core = crash(kernel.store,
                            [PYTHON, "-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)"])
    c = record["crash"]
    ours = pctest.frame_names(c["stacks"][0]["frames"])
    gdb = pctest.gdb_threads(PYTHON, core)[0][1]
    assert "<signal>" in gdb and len(gdb) >= 14, gdb
    below = gdb.index("<signal>") + 1
    # The interpreter's frames below the signal frame, as far as gdb goes (or our frame limit).
    n = min(len(gdb), 40)
    assert ours[:n] == gdb[:n], f"record {ours} != gdb {gdb}"
    assert len(ours) > below + 8
    o = c["original_fault"]
    assert o["si_signo"] == signal.SIGSEGV and o["si_code_name"] == "SEGV_MAPERR"
    assert o["fault_address"] == "0x0" and o["symbol"] is not None


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="needs Debian's python3.11")
def test_python_signature_is_the_same_with_or_without_faulthandler(kernel):
    """faulthandler on by -X faulthandler or by PYTHONFAULTHANDLER (as under pytest) changes
    neither the signature nor its chain: its handler and the trampoline are crash machinery."""
    code = "import ctypes\ndef parse():\n    ctypes.string_at(0)\nparse()\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    runs = {"plain": ([PYTHON, "-c", code], env),
            "-X faulthandler": ([PYTHON, "-X", "faulthandler", "-c", code], env),
            "PYTHONFAULTHANDLER": ([PYTHON, "-c", code], dict(env, PYTHONFAULTHANDLER="1"))}
    sigs = {}
    for name, (argv, run_env) in runs.items():
        _, record, core = crash(kernel.store, argv, env=run_env)
        core.unlink()
        c = record["crash"]
        sigs[name] = (c["signature"], c["signature_chain"], c["signature_version"])
        if name != "plain":
            assert c["original_fault"]["si_signo"] == signal.SIGSEGV, name
    assert len(set(sigs.values())) == 1, sigs
    assert "faulthandler" not in sigs["plain"][1] and "__restore_rt" not in sigs["plain"][1]


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="needs Debian's python3.11")
def test_a_crash_under_pytest_is_the_tests_not_faulthandlers(kernel, tmp_path):
    """pytest enables faulthandler for the run: a test that crashes in native code is recorded
    below the handler's frames, with the test function as its Python caller."""
    (tmp_path / "test_native.py").write_text(
        "import ctypes\n\n\ndef test_parses():\n    ctypes.string_at(0)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    _, record, core = crash(kernel.store, [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                           str(tmp_path / "test_native.py")], env=env)
    core.unlink()
    c = record["crash"]
    assert c["original_fault"]["si_signo"] == signal.SIGSEGV, c["original_fault"]
    chain = c["signature_chain"]
    assert "faulthandler" not in chain and "__restore_rt" not in chain, chain
    assert c["signature_version"] == 3, c["signature_version"]
    assert "test_parses" in json.dumps(record["python"]), record.get("python")


def test_seccomp_names_the_blocked_system_call(kernel):
    exe = pctest.env_path("PC_SIGFRAME")
    rc, record, core = crash(kernel.store, [exe, "seccomp"])
    assert rc == -signal.SIGSYS
    c = record["crash"]
    assert c["si_code_name"] == "SYS_SECCOMP"
    assert c["blocked_syscall"] == {"number": 92, "name": "chown", "arch": "x86_64"}
    assert c["original_fault"] is None
    cause = "SIGSYS (seccomp blocked chown (92) on x86_64)"
    assert f"Cause: {cause}" in " ".join(corectl_info(kernel, record).split())
    if kernel.log.active:
        assert kernel.log.wait_for(lambda l: f"crashed with {cause}" in l and record["id"] in l)
