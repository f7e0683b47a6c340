"""Real crashes through the real kernel: core_pattern points at the built handler.

Needs root and a writable /proc/sys/kernel/core_pattern; elsewhere the whole file is skipped
(exit code 77 for CTest). The previous pattern is always restored, and one lock keeps tests
that change machine-wide state from running at the same time.
"""
import os
import pathlib
import resource
import shutil
import signal
import subprocess

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

@pytest.fixture(scope="module")
def kernel():
    """Installs the handler in core_pattern for the module; yields (store, syslog, workdir)."""
    # Enough capture slots that the burst test below (50 crashes of one uid) stores every core.
    with pctest.kernel_rig("pce-", syslog=True, rate_limit_burst=0, max_captures=64,
                           max_captures_per_user=64) as rig:
        yield rig.store, rig.log, rig.work


allow_cores = pctest.allow_cores


def crash(argv, preexec=allow_cores):
    proc = subprocess.run([str(a) for a in argv], preexec_fn=preexec, capture_output=True,
                          timeout=60)
    assert proc.returncode < 0, f"{argv} did not die from a signal: {proc.returncode}"
    return -proc.returncode


def run_crasher(mode, *extra, exe=None):
    """Starts the crasher and returns (pid, signal it died of)."""
    argv = [str(exe or pctest.env_path("PC_CRASHER")), mode, *extra]
    proc = subprocess.Popen(argv, preexec_fn=allow_cores, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}"
    return proc.pid, -proc.returncode


@pytest.mark.parametrize("mode,signo,name", [
    ("segv", signal.SIGSEGV, "SEGV"),
    ("abort", signal.SIGABRT, "ABRT"),
    ("fpe", signal.SIGFPE, "FPE"),
    ("thread", signal.SIGSEGV, "SEGV"),
])
def test_crash_is_captured(kernel, mode, signo, name):
    store, log, _ = kernel
    pid, died = run_crasher(mode)
    assert died == signo
    r = pctest.record_for(store, pid)
    assert (r["signal"], r["signal_name"]) == (int(signo), name)
    assert r["executable"] == str(pctest.env_path("PC_CRASHER"))
    assert r["hostname"] == os.uname().nodename
    assert r["uid"] == os.getuid() and r["dump_mode"] == 1
    assert r["comm"] == "pc_crasher"
    assert "pc_crasher" in r["cmdline"] and mode in r["cmdline"]
    assert r["core"]["present"] and r["core"]["reason"] == "stored", r
    core = pctest.zstd_decompress(pathlib.Path(store) / r["core"]["path"])
    assert core[:4] == b"\x7fELF" and len(core) == r["core"]["size"]
    # fds 1 and 2 were closed by the kernel: nothing the handler logged may land in its files.
    assert b"process-core" not in core[:4096]
    if log.active:
        assert log.wait_for(lambda l: r["id"] in l and f"crashed with SIG{name}" in l)
    check_crash_site(r, mode)


def readelf_build_id(path):
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out.split("Build ID:")[1].split()[0]


# What the scanner must find in the core, per crash mode: (si_code_name, module, symbol).
CRASH_SITES = {
    "segv": ("SEGV_MAPERR", "crasher", "pc_crash_null_write"),
    "thread": ("SEGV_MAPERR", "crasher", "pc_crash_null_write"),
    "fpe": ("FPE_INTDIV", "crasher", "pc_crash_divide"),
    "abort": ("SI_TKILL", "libc", None),
}


def check_crash_site(r, mode):
    crash = r["crash"]
    code_name, module, symbol = CRASH_SITES[mode]
    crasher = str(pctest.env_path("PC_CRASHER"))
    assert crash["si_code_name"] == code_name, crash
    if module == "crasher":
        assert crash["module"] == crasher
        assert crash["build_id"] == readelf_build_id(crasher)
        assert crash["symbol"]["name"] == symbol and crash["symbol"]["verified"]
    else:
        assert "/libc.so" in crash["module"], crash["module"]
        libc = [m for m in r["mappings"] if m["path"] == crash["module"]][0]
        assert libc["build_id"] == readelf_build_id(crash["module"])
    if mode in ("segv", "thread"):
        assert crash["fault_address"] == "0x0"
    if mode == "thread":
        # The crashing thread is not the main thread, and its siblings are counted.
        assert crash["threads"] == 4
        assert crash["tid"] != r["pid"] and r["tid"] == crash["tid"]
        assert any((f["symbol"] or {}).get("name", "").startswith("pc_thread_crash")
                   for f in crash["stacks"][0]["frames"])
    else:
        assert crash["threads"] == 1
    assert len(crash["signature"]) == 16
    assert not r["core"]["truncated"] and r["core"]["expected_size"] == r["core"]["size"]


def test_same_crash_same_signature(kernel):
    """Two runs of the same crash (other pids, other ASLR layouts) group together."""
    store, _, _ = kernel
    pids = [run_crasher("segv")[0] for _ in range(2)]
    first, second = (pctest.record_for(store, p) for p in pids)
    assert first["crash"]["signature"] == second["crash"]["signature"]
    fpe = pctest.record_for(store, run_crasher("fpe")[0])
    assert fpe["crash"]["signature"] != first["crash"]["signature"]


def test_executable_path_with_spaces(kernel):
    store, _, work = kernel
    target = work / "my crashy app"
    shutil.copy2(pctest.env_path("PC_CRASHER"), target)
    pid, _ = run_crasher("segv", exe=target)
    r = pctest.record_for(store, pid)
    assert r["executable"] == str(target)
    assert r["core"]["present"]


def test_ulimit_c_0_records_without_core(kernel):
    store, _, _ = kernel

    def no_cores():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    proc = subprocess.Popen([str(pctest.env_path("PC_CRASHER")), "segv"], preexec_fn=no_cores,
                            stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    r = pctest.record_for(store, proc.pid)
    assert r["rlimit_core"] == 0
    assert not r["core"]["present"] and r["core"]["reason"] == "rlimit"
    assert r["core"]["path"] is None


def test_burst_of_50_simultaneous_crashes(kernel):
    store, _, _ = kernel
    # All 50 start and say they are ready, then crash together.
    pids = pctest.crash_together([pctest.env_path("PC_CRASHER"), "segv-on-eof"], 50, timeout=60)
    found = pctest.records_for(store, pids, timeout=60)
    assert all(r["core"]["present"] for r in found.values())
    assert len({r["id"] for r in found.values()}) == 50


@pytest.mark.parametrize("change", ["deleted", "modified_after_start"])
def test_executable_changed_under_the_process_is_reported(kernel, change):
    """A binary unlinked, or rewritten, while its process runs: the record says so."""
    store, _, work = kernel
    target = work / f"victim-{change}"
    shutil.copy2(pctest.env_path("PC_CRASHER"), target)
    proc = subprocess.Popen([str(target), "segv-on-eof"], preexec_fn=allow_cores,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"  # running, its executable mapped
    if change == "deleted":
        target.unlink()
    else:
        os.utime(target)  # as an in-place rewrite would: mtime after the process started
    proc.stdin.close()  # now crash
    proc.wait(timeout=60)
    proc.stdout.close()
    r = pctest.record_for(store, proc.pid)
    mapping = [m for m in r["mappings"] if m["path"].startswith(str(target))]
    assert mapping, r["mappings"]
    kinds = [f["kind"] if isinstance(f, dict) else f for f in mapping[0]["findings"]]
    assert change in kinds, mapping
    if change == "deleted":
        assert r["executable_deleted"] and r["executable"] == str(target)
    assert any(change in w for w in r["handler"]["warnings"])


def test_minimal_pattern_through_the_kernel(kernel):
    """|process-core %h %s %E: no pid, uid or pidfd from the kernel; the core's notes fill in."""
    store, _, work = kernel
    # Already under the machine lock (the module fixture); restores the recommended pattern.
    with pctest.core_pattern(f"|{work}/h --config={work}/c %h %s %E"):
        pid, _ = run_crasher("abort")
        r = pctest.record_for(store, pid)
    assert r["signal_name"] == "ABRT" and r["hostname"] == os.uname().nodename
    assert r["executable"] == str(pctest.env_path("PC_CRASHER"))
    assert r["uid"] == os.getuid() and r["dump_mode"] is None
    assert r["comm"] == "pc_crasher" and "abort" in r["cmdline"]
    assert r["core"]["present"] and r["core"]["access"] == "root"
    assert r["crash"]["si_code_name"] == "SI_TKILL"
