#!/usr/bin/env python3
"""Crash storm: N simultaneous crashes of an 8 MiB process, through the real kernel.

bench/bench_storm.py BUILD_DIR [N ...]   (root; default N = 50 200 1000)

For each N, two runs in the same session: the shipped settings (core_pipe_limit = 0, the
handler's capture slots and lean path, default max_captures) and the baseline: the kernel
limiting helpers with core_pipe_limit = 16 (what systemd-coredump ships) and every handler doing
a full capture (max_captures above N: no lean path, as before admission control). Prints records
written / crashes, the time from the crash until the last handler exited, and the largest sum of
resident memory over the handlers running at one moment (sampled every 10 ms). Holds the tests'
machine lock and restores core_pattern and core_pipe_limit.
"""
import contextlib
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "lib"))
import pctest  # noqa: E402

ARGS = "-P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"
PIPE_LIMIT = pathlib.Path("/proc/sys/kernel/core_pipe_limit")


@contextlib.contextmanager
def pipe_limit(value):
    previous = PIPE_LIMIT.read_text()
    try:
        PIPE_LIMIT.write_text(f"{value}\n")
        yield
    finally:
        PIPE_LIMIT.write_text(previous)


def handler_pids(handler):
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(d / "exe") == handler:
                    out.append(d)
    return out


def rss_kib(d):
    with contextlib.suppress(OSError):
        for line in (d / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def allow_cores():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def storm(build, n, limit, max_captures):
    work = pathlib.Path(tempfile.mkdtemp(prefix="pcb-", dir="/tmp"))
    os.chmod(work, 0o755)
    try:
        shutil.copy2(build / "handler" / "process-core", work / "h")
        shutil.copy2(build / "tests" / "pc_crasher", work / "crasher")
        store = pctest.make_store(work)
        keys = {"max_captures": max_captures} if max_captures else {}
        pctest.write_config(work / "c", store, rate_limit_burst=0, **keys)
        with pipe_limit(limit), pctest.core_pattern(f"|{work}/h --config={work}/c {ARGS}"):
            procs = [subprocess.Popen([str(work / "crasher"), "segv-after", "3", "--heap", "8"],
                                      preexec_fn=allow_cores, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for _ in range(n)]
            crash_at = None
            peak_sum = 0
            handler = str(work / "h")
            deadline = time.time() + 300
            while time.time() < deadline:
                running = handler_pids(handler)
                if running and crash_at is None:
                    crash_at = time.time()
                peak_sum = max(peak_sum, sum(rss_kib(d) for d in running))
                if crash_at is not None and not running and all(p.poll() is not None for p in procs):
                    break
                time.sleep(0.01)
            last_exit = time.time()
            for p in procs:
                p.wait(timeout=60)
            records = len(list(store.glob("*/*/*.json")))
            busy = sum(1 for r in pctest.records(store) if r["core"]["reason"] == "busy")
        return {"n": n, "limit": limit, "records": records, "busy": busy,
                "last_exit_s": last_exit - (crash_at or last_exit), "peak_sum_mib": peak_sum / 1024}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    if not pctest.can_set_core_pattern():
        print("needs root and a writable core_pattern", file=sys.stderr)
        return 77
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build").resolve()
    sizes = [int(a) for a in sys.argv[2:]] or [50, 200, 1000]
    print(f"{'N':>5} {'core_pipe_limit':>15} {'records':>9} {'busy':>5} {'last exit':>10} "
          f"{'RSS sum':>9}")
    with pctest.machine_lock():
        for n in sizes:
            for limit, max_captures in ((0, None), (16, 4096)):
                r = storm(build, n, limit, max_captures)
                print(f"{r['n']:>5} {r['limit']:>15} {r['records']:>5}/{n:<4}{r['busy']:>5} "
                      f"{r['last_exit_s']:>9.2f}s {r['peak_sum_mib']:>7.0f}MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
