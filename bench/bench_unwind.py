#!/usr/bin/env python3
"""Backtrace benchmark: the CFI unwinder against the old stack scanner, with gdb as the referee,
and the handler's analysis time on a small and a big core.

    sudo bench/bench_unwind.py [BUILD_DIR] [BIG_HEAP_MIB] [BASELINE_BUILD_DIR]
                                                        (defaults: build, 800, none)

Needs root and a writable core_pattern: cores come from the kernel (notes first, as the handler
sees them), under the test suite's machine lock, the previous pattern always restored.

1. Agreement: every program of the crash zoo (and python3 aborting) crashes once; on each core,
   the crashing thread's top 5 function names from
     - the unwinder (scan_core --unwind: what the handler writes in schema 2), and
     - the old scanner (scan_core --legacy-frames: the schema-1 crash symbol and best-effort
       frames, named the way that handler named them)
   are compared position by position with gdb's (tail-call frames, which gdb infers from DWARF
   call sites rather than finding on the stack, left out; positions past gdb's last frame are
   not counted). Target: >= 95 % for the unwinder.
2. Time: the real handler on a small core (the zoo's segv, SMALL_RUNS runs) and on a big one
   (pc_crasher with a heap of BIG_HEAP_MIB, 3 runs), core on a pipe from the page cache: the
   median handler.analysis_ms and handler.duration_ms from the records (with min-max), the
   median share of the run, and peak RSS. With BASELINE_BUILD_DIR (another build's handler, e.g.
   of the previous commit), the small core's runs alternate between the two handlers, and the
   medians of both and of the per-pair ratio are printed: on a shared machine only a paired
   comparison says whether a change made the analysis faster. Targets: analysis <= 30 ms on the small
   core and <= 5 % of the run on the big one; peak RSS <= 32 MiB.
"""
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "lib"))
import pctest  # noqa: E402

BUILD = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "build").resolve()
BIG_MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 800
BASELINE = pathlib.Path(sys.argv[3]).resolve() if len(sys.argv) > 3 else None
TOP = 5
SMALL_RUNS = 15
T = BUILD / "tests"
ZOO = [
    ("C -O0 segv", [T / "pc_zoo_O0", "segv"]),
    ("C -O2 -fomit-frame-pointer segv", [T / "pc_zoo_O2", "segv"]),
    ("C -O0 abort", [T / "pc_zoo_O0", "abort"]),
    ("C -O2 abort", [T / "pc_zoo_O2", "abort"]),
    ("dirty stack", [T / "pc_zoo_O2", "dirty"]),
    ("abort in a thread", [T / "pc_zoo_O0", "thread-abort"]),
    ("crash in a signal handler", [T / "pc_zoo_O2", "signal"]),
    ("crash in a shared library", [T / "pc_zoo_O2", "lib"]),
    ("C++ uncaught exception", [T / "pc_zoo_cxx"]),
    ("stripped, debug file", [T / "pc_zoo_stripped", "segv"]),
    ("python3 os.abort()", [shutil.which("python3"), "-c", "import os; os.abort()"]),
]


def allow_cores():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def make_cores(work, programs):
    """Crashes each program with core_pattern = <work>/core.%p; returns {name: core path}."""
    cores = {}
    with pctest.machine_lock(), pctest.core_pattern(f"{work}/core.%p"):
        for name, argv in programs:
            p = subprocess.Popen([str(a) for a in argv], preexec_fn=allow_cores,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.wait(timeout=600)
            path = pathlib.Path(f"{work}/core.{p.pid}")
            for _ in range(600):
                if path.exists():
                    break
                time.sleep(0.05)
            cores[name] = (argv, path)
    return cores


def gdb_names(exe, core, debug_dir):
    out = subprocess.run(["gdb", "-nx", "-batch", "-iex",
                          f"set debug-file-directory {debug_dir}:/usr/lib/debug",
                          "-x", str(HERE.parent / "tests" / "lib" / "gdb_frames.py"),
                          str(exe), str(core)], capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("GDB-FRAMES "))
    threads = json.loads(line[len("GDB-FRAMES "):])
    return threads


def scan(core, *args):
    with open(core, "rb") as f:
        return json.loads(subprocess.run([str(T / "scan_core"), *args], stdin=f,
                                         capture_output=True, check=True).stdout)


def agreement(ours, theirs):
    n = min(TOP, len(theirs))
    return sum(1 for i in range(n) if i < len(ours) and ours[i] == theirs[i]), n


def handler_run(work, core, build=BUILD):
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    # The handler drops root to a store user, as in production (an empty user is refused).
    shutil.chown(store, user="nobody")
    conf = work / "pc.conf"
    conf.write_text(f"store = {store}\nuser = nobody\nruntime_dir = {work}/run\n"
                    "rate_limit_burst = 0\nkeep_free = 0\nmax_use = 100%\n")
    timing = work / "time.txt"
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(timing), "bash", "-c",
                    'cat "$0" | "${@:1}"', str(core), str(build / "handler" / "process-core"),
                    "--config", str(conf), "-P1", "-u0", "-g0", "-d1", "--", "bench", "11",
                    "!usr!bin!bench"], check=True)
    record = json.loads(next(store.glob("*/*/*.json")).read_text())
    return record["handler"], int(timing.read_text().split()[-1])


def main():
    if os.geteuid() != 0 or not pctest.can_set_core_pattern():
        sys.exit("bench_unwind: needs root and a writable core_pattern")
    work = pathlib.Path(tempfile.mkdtemp(prefix="pc-bench-unwind.", dir="/var/tmp"))
    os.chmod(work, 0o755)
    try:
        debug = T / "zoo-debug"
        cores = make_cores(work, ZOO)
        print(f"{'program':34} {'unwinder':>9} {'scanner':>9}   top {TOP} vs gdb")
        totals = {"new": [0, 0], "old": [0, 0]}
        for name, (argv, core) in cores.items():
            exe = shutil.which(str(argv[0])) or argv[0]
            new = scan(core, "--unwind", "--debug-dir", str(debug))["crash"]
            crashing = new["stacks"][0]
            ours = ["<signal>" if f["signal_frame"] else (f["symbol"] or {}).get("name", "??")
                    for f in crashing["frames"]]
            old = scan(core, "--legacy-frames")["legacy_frames"]
            gdb = next(t for t in gdb_names(exe, core, debug) if t["tid"] == crashing["tid"])
            theirs = ["<signal>" if f["type"] == "sigtramp" else (f["name"] or "??")
                      for f in gdb["frames"] if f["type"] != "tailcall"]
            a, n = agreement(ours, theirs)
            b, _ = agreement(old, theirs)
            totals["new"][0] += a
            totals["old"][0] += b
            totals["new"][1] += n
            totals["old"][1] += n
            print(f"{name:34} {a:>5}/{n:<3} {b:>5}/{n:<3}   gdb: {' > '.join(theirs[:TOP])}")
        share = {k: 100.0 * v[0] / max(1, v[1]) for k, v in totals.items()}
        print(f"{'agreement with gdb':34} {share['new']:>8.1f}% {share['old']:>8.1f}%"
              "   (target >= 95 % for the unwinder)")

        small = cores["C -O2 -fomit-frame-pointer segv"][1]
        big = make_cores(work, [("big", [T.parent / "tests" / "pc_crasher", "segv-after",
                                         str(BIG_MIB // 200 + 1), "--heap", str(BIG_MIB)])])
        big_core = big["big"][1]
        print()
        for label, core, n in (("small core", small, SMALL_RUNS), ("big core", big_core, 3)):
            subprocess.run(["cat", str(core)], stdout=subprocess.DEVNULL)  # page cache
            runs = [handler_run(work, core) for _ in range(n)]
            analysis = [r[0]["analysis_ms"] for r in runs]
            whole = [r[0]["duration_ms"] for r in runs]
            share = [100 * a / w for a, w in zip(analysis, whole)]
            size = core.stat().st_size / 1048576
            print(f"{label:12} {size:8.1f} MiB, median of {n}: analysis "
                  f"{statistics.median(analysis):7.1f} ms ({min(analysis):.1f}-{max(analysis):.1f})"
                  f" of {statistics.median(whole):8.1f} ms ({min(whole):.1f}-{max(whole):.1f}),"
                  f" share {statistics.median(share):.1f} %, peak RSS "
                  f"{max(r[1] for r in runs) / 1024:.1f} MiB")
        print("targets: analysis <= 30 ms (small), <= 5 % of the run (big); peak RSS <= 32 MiB")
        if BASELINE:
            pairs = [(handler_run(work, small)[0], handler_run(work, small, BASELINE)[0])
                     for _ in range(SMALL_RUNS)]
            ours = [p[0]["analysis_ms"] for p in pairs]
            theirs = [p[1]["analysis_ms"] for p in pairs]
            print(f"small core, {SMALL_RUNS} pairs: analysis {statistics.median(ours):.1f} ms, "
                  f"baseline {statistics.median(theirs):.1f} ms, ratio per pair (median) "
                  f"{statistics.median(a / b for a, b in zip(ours, theirs)):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
