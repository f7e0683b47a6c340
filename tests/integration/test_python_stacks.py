"""The Python stack walker on real interpreters: every thread's stack as faulthandler prints it
at the same point, read from the stopped process's /proc/PID/mem and from a core of it (gcore),
and interpreters it has no layout for reported as unsupported, never guessed."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

BUILD = Path(os.environ.get("PC_BUILD_DIR", "build"))
PY_STACKS = BUILD / "tests" / "py_stacks"
PYENV = Path("/root/.pyenv/versions")

SUPPORTED = [Path("/usr/bin/python3.11")] + [
    PYENV / v / "bin" / "python3" for v in ("3.11.7", "3.12.1", "3.13.0")]
UNSUPPORTED = [PYENV / v / "bin" / "python" for v in
               ("2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13")]

# A threaded service: one worker inside handle_request -> parse_payload, one idle in sleep, the
# main thread writing faulthandler's dump and stopping itself on the same line, so the dump
# and the stopped process agree on every frame.
SCRIPT = r'''
import faulthandler, json, os, signal, sys, threading, time
ready = threading.Barrier(3)
def idle():
    ready.wait()
    time.sleep(100)
def parse_payload(ev):
    ready.wait()
    ev.wait()
def handle_request(ev):
    parse_payload(ev)
ev = threading.Event()
threads = [threading.Thread(target=idle, daemon=True),
           threading.Thread(target=handle_request, args=(ev,), daemon=True)]
for t in threads:
    t.start()
ready.wait()
time.sleep(0.2)
def main():
    ids = {hex(t.ident): t.native_id for t in threads}
    ids[hex(threading.main_thread().ident)] = threading.get_native_id()
    with open(sys.argv[1] + ".ids", "w") as f:
        json.dump(ids, f)
    with open(sys.argv[1], "w") as f:
        faulthandler.dump_traceback(f, all_threads=True); os.kill(os.getpid(), signal.SIGSTOP)
main()
'''


def parse_faulthandler(text):
    """[(thread id, current?, [(file, line, name)])] in faulthandler's order."""
    threads = []
    for line in text.splitlines():
        m = re.match(r"(Current thread|Thread) (0x[0-9a-f]+) \(most recent call first\):", line)
        if m:
            threads.append((int(m.group(2), 16), m.group(1) == "Current thread", []))
            continue
        m = re.match(r'  File "(.*)", line (\d+|\?\?\?) in (.*)', line)
        if m and threads:
            lineno = -1 if m.group(2) == "???" else int(m.group(2))
            threads[-1][2].append((m.group(1), lineno, m.group(3)))
    return threads


def wait_stopped(pid):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never stopped")


@pytest.fixture
def stopped(tmp_path, request):
    python = request.param
    if not python.exists():
        pytest.skip(f"{python} is not installed")
    if not PY_STACKS.exists():
        pytest.skip("py_stacks is not built")
    script = tmp_path / "service.py"
    script.write_text(SCRIPT)
    dump = tmp_path / "faulthandler.txt"
    proc = subprocess.Popen([str(python), str(script), str(dump)])
    try:
        wait_stopped(proc.pid)
        yield proc.pid, parse_faulthandler(dump.read_text()), json.loads(
            Path(str(dump) + ".ids").read_text()), tmp_path
    finally:
        proc.kill()
        proc.wait()


def check_against_faulthandler(stacks, expected, native_ids):
    assert stacks["status"] == "ok", stacks
    assert stacks["finalizing"] is False
    got = stacks["threads"]
    assert [t["thread_id"] for t in got] == [tid for tid, _, _ in expected]
    for thread, (tid, current, frames) in zip(got, expected):
        # faulthandler prints co_name; the record keeps co_qualname.
        assert [(f["file"], f["line"], f["function"].rsplit(".", 1)[-1])
                for f in thread["frames"]] == frames, thread
        assert thread["native_thread_id"] == native_ids[hex(tid)]
        # The thread that wrote the dump holds the GIL; no other does.
        assert thread["holds_gil"] == current
    worker = next(t for t in got if any(f["function"] == "parse_payload" for f in t["frames"]))
    assert [f["function"] for f in worker["frames"]][:4] == [
        "Condition.wait", "Event.wait", "parse_payload", "handle_request"]
    # Every evaluation-loop entry is marked: a thread's outermost frame began one.
    for thread in got:
        assert thread["frames"][-1]["entry"] is True


@pytest.mark.parametrize("stopped", SUPPORTED, indirect=True, ids=str)
def test_live_process_matches_faulthandler(stopped):
    pid, expected, native_ids, _ = stopped
    out = subprocess.run([str(PY_STACKS), "--pid", str(pid)], check=True,
                         capture_output=True, text=True).stdout
    stacks = json.loads(out)
    check_against_faulthandler(stacks, expected, native_ids)
    assert 0 < stacks["reads"] < 2000


@pytest.mark.parametrize("stopped", SUPPORTED, indirect=True, ids=str)
def test_core_matches_faulthandler(stopped):
    if not shutil.which("gcore"):
        pytest.skip("gcore (gdb) is not installed")
    pid, expected, native_ids, tmp = stopped
    maps = tmp / "maps"
    maps.write_text(Path(f"/proc/{pid}/maps").read_text())
    core = tmp / "core"
    subprocess.run(["gcore", "-o", str(core), str(pid)], check=True, capture_output=True)
    out = subprocess.run([str(PY_STACKS), "--core", f"{core}.{pid}", "--maps", str(maps)],
                         check=True, capture_output=True, text=True).stdout
    check_against_faulthandler(json.loads(out), expected, native_ids)


@pytest.mark.parametrize("python", UNSUPPORTED, ids=str)
def test_older_interpreters_are_unsupported(python):
    if not python.exists():
        pytest.skip(f"{python} is not installed")
    proc = subprocess.Popen([str(python), "-c",
                             "import os, signal; os.kill(os.getpid(), signal.SIGSTOP)"])
    try:
        wait_stopped(proc.pid)
        out = subprocess.run([str(PY_STACKS), "--pid", str(proc.pid)], check=True,
                             capture_output=True, text=True).stdout
    finally:
        proc.kill()
        proc.wait()
    stacks = json.loads(out)
    assert stacks["status"] == "unsupported"
    assert stacks["threads"] == []
    assert stacks["version"] == ""


@pytest.mark.parametrize("minor", [11, 12])
def test_offset_tables_match_the_headers(minor):
    offsets = BUILD / "tests" / f"python3{minor}_offsets"
    if not offsets.exists():
        pytest.skip(f"no Python 3.{minor} headers were found at configure time")
    from_headers = subprocess.run([str(offsets)], check=True, capture_output=True,
                                  text=True).stdout.splitlines()
    table = subprocess.run([str(PY_STACKS), "--layout", str(minor)], check=True,
                           capture_output=True, text=True).stdout.splitlines()
    assert table == from_headers
