#!/usr/bin/env python3
"""The Python stack walker on a process with 64 threads x 100 Python frames, for every
CPython 3.11+ found: reads, bytes and time of the walk on the live process (/proc/PID/mem, as
at capture time) against the same walk on a gcore core of it read afterwards (the stored-core
path), median of RUNS each. Targets: <= 20 ms and <= 2,000 reads for the live walk.

    bench/bench_python_stacks.py [BUILD] [RUNS]
"""
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = Path(sys.argv[1] if len(sys.argv) > 1 else "build")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 9
PY_STACKS = BUILD / "tests" / "py_stacks"
PYTHONS = [Path("/usr/bin/python3.11")] + [
    Path("/root/.pyenv/versions") / v / "bin" / "python3" for v in ("3.11.7", "3.12.1", "3.13.0")]

DEEP = r'''
import os, signal, threading
N, D = 64, 100
ready = threading.Barrier(N)
def rec(n):
    if n == 0:
        ready.wait(); threading.Event().wait()
    rec(n - 1)
for _ in range(N - 1):
    threading.Thread(target=rec, args=(D - 3,), daemon=True).start()
def main_rec(n):
    if n == 0:
        ready.wait(); os.kill(os.getpid(), signal.SIGSTOP)
    main_rec(n - 1)
main_rec(D - 2)
'''


def wait_stopped(pid):
    for _ in range(400):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.05)
    raise SystemExit(f"process {pid} never stopped")


def walk(args):
    out = json.loads(subprocess.run([str(PY_STACKS), *args], check=True,
                                    capture_output=True, text=True).stdout)
    return out


def main():
    print(f"| interpreter | source | threads | frames | reads | KiB read | walk ms (median of {RUNS}) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "deep.py"
        script.write_text(DEEP)
        for python in PYTHONS:
            if not python.exists():
                continue
            proc = subprocess.Popen([str(python), str(script)])
            try:
                wait_stopped(proc.pid)
                sources = [("live", ["--pid", str(proc.pid)])]
                if shutil.which("gcore"):
                    maps = Path(tmp) / "maps"
                    maps.write_text(Path(f"/proc/{proc.pid}/maps").read_text())
                    core = Path(tmp) / "core"
                    subprocess.run(["gcore", "-o", str(core), str(proc.pid)], check=True,
                                   capture_output=True)
                    sources.append(("core", ["--core", f"{core}.{proc.pid}", "--maps", str(maps)]))
                for name, args in sources:
                    results = [walk(args) for _ in range(RUNS)]
                    r = results[-1]
                    ms = statistics.median(x["elapsed_us"] for x in results) / 1000
                    frames = sum(len(t["frames"]) for t in r["threads"])
                    print(f"| {r['version']} ({python}) | {name} | {len(r['threads'])} | {frames} |"
                          f" {r['reads']} | {r['bytes'] // 1024} | {ms:.2f} |")
            finally:
                proc.kill()
                proc.wait()


main()
