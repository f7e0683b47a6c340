#!/usr/bin/env python3
"""The handler's run on a small Python crash with and without the Python walk during the stream,
through the real kernel: the same crash (ctypes.string_at(0) two calls deep, one thread) under
python_stacks = yes and = no, alternating, RUNS pairs. Per run, from the record: the handler's
whole run (handler.duration_ms), the time until the pipe was drained (handler.drained_ms: what
the kernel waits for), the walk (python.walk_ms: what the stream waited for, from the word to
go to the result) and python.start_ms (the walk's child was started that long before: its fork,
sandbox and symbol reading overlap the stream). Target: the walk adds <= 5 ms to the median.
Then the same stored cores read afterwards (`corectl info --json --file` on the decompressed
core): whether the stacks equal the capture-time walk's, and corectl's time.

Needs root and a writable core_pattern (the test harness's lock, restored afterwards).

    sudo PYTHONPATH=tests/lib PC_HANDLER=build/handler/process-core \\
        [PC_CORECTL=build/cli/corectl] bench/bench_python_capture.py [RUNS] [PYTHON]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pctest

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
PYTHON = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/python3.11"

SCRIPT = r'''
import ctypes
def parse_payload(data):
    ctypes.string_at(0)
def handle_request(data):
    parse_payload(data)
handle_request(b"x")
'''


def crash(rig, config, script):
    with pctest.core_pattern(rig.pattern(config)):
        proc = subprocess.Popen([PYTHON, str(script)], preexec_fn=pctest.allow_cores,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait(timeout=60)
        r = pctest.record_for(rig.store, proc.pid)
    return r


def main():
    with pctest.kernel_rig("pcb-", install=False) as rig, tempfile.TemporaryDirectory() as tmp:
        rig.config("on", rate_limit_burst=0, python_stacks="yes")
        rig.config("off", rate_limit_burst=0, python_stacks="no")
        script = Path(tmp) / "small.py"
        script.write_text(SCRIPT)
        runs = {"on": [], "off": []}
        for _ in range(RUNS):
            for config in ("off", "on"):
                runs[config].append(crash(rig, config, script))
        on, off = runs["on"], runs["off"]
        assert all(r["python"]["status"] == "ok" for r in on), on[0].get("python")
        assert all("python" not in r for r in off)
        med = lambda rs, f: statistics.median(f(r) for r in rs)
        dur = lambda r: r["handler"]["duration_ms"]
        drained = lambda r: r["handler"]["drained_ms"]
        print(f"{PYTHON}, core {on[0]['core']['size'] / 2**20:.1f} MiB, median of {RUNS} pairs")
        print("| | handler run ms | drained ms (kernel waits) | walk ms | walker us | reads |")
        print("|---|---|---|---|---|---|")
        print(f"| without the walk | {med(off, dur):.1f} | {med(off, drained):.1f} | - | - | - |")
        print(f"| with the walk | {med(on, dur):.1f} | {med(on, drained):.1f} | "
              f"{med(on, lambda r: r['python']['walk_ms']):.1f} | "
              f"{med(on, lambda r: r['python']['elapsed_us']):.0f} | "
              f"{med(on, lambda r: r['python']['reads']):.0f} |")
        if all("start_ms" in r["python"] for r in on):
            print(f"walk's child started {med(on, lambda r: r['python']['start_ms']):.1f} ms "
                  "before the word to go (median)")
        if all("child_ms" in r["python"] for r in on):
            print(f"the child was in its sandbox {med(on, lambda r: r['python']['child_ms']['sandbox']):.1f} ms "
                  f"and ready {med(on, lambda r: r['python']['child_ms']['ready']):.1f} ms after its start (median)")
        diffs = [dur(a) - dur(b) for a, b in zip(on, off)]
        print(f"paired difference of the handler run: median {statistics.median(diffs):.1f} ms")
        corectl = os.environ.get("PC_CORECTL")
        if corectl:
            afterwards(rig, corectl, on[:5], Path(tmp))


def afterwards(rig, corectl, records, tmp):
    """The stored cores of `records` read afterwards by corectl, compared with the capture."""
    same, total, walk = 0, [], []
    for r in records:
        core = tmp / "core"
        subprocess.run([corectl, "--store", str(rig.store), "dump", "-o", str(core), r["id"]],
                       check=True, capture_output=True)
        t0 = time.monotonic()
        out = subprocess.run([corectl, "info", "--json", "--file", str(core)], check=True,
                             capture_output=True, text=True).stdout
        total.append((time.monotonic() - t0) * 1000)
        py = json.loads(out)["python"]
        walk.append(py["walk_ms"])
        same += py["source"] == "core" and py["threads"] == r["python"]["threads"]
        core.unlink()
    print(f"read afterwards from the core ({len(records)} cores): stacks equal to the capture's "
          f"{same}/{len(records)}; corectl info --file median {statistics.median(total):.1f} ms, "
          f"of which the core's pass and walk (child included) {statistics.median(walk):.1f} ms")


if __name__ == "__main__":
    main()
