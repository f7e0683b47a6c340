"""Python crashes through the real kernel: the handler reads every thread's Python stack from the
crashed interpreter while the core streams, into the record's `python` section, whatever happens
to the core (stored, cut at a tiny max_core_size, or not read at all on the lean path). The oracle
is faulthandler.dump_traceback(all_threads=True) written on the line that crashes.

Needs root and a writable core_pattern; elsewhere the whole file is skipped."""
import fcntl
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

PYENV = Path("/root/.pyenv/versions")
PYTHONS = [Path("/usr/bin/python3.11")] + [PYENV / v / "bin" / "python3"
                                           for v in ("3.12.1", "3.13.0")]

# A threaded service: one worker crashes in ctypes.string_at(0) inside handle_request ->
# parse_payload, one idles in time.sleep, the main thread blocks reading a pipe. faulthandler's
# dump is written on the crashing line itself, so that both agree on every line, and only once
# every other thread is parked on a line marked "# park" (a thread still on its way there would
# be dumped at one line and crash at another). The mode "render" crashes the same way from
# render_page (two callers, two signatures); "atexit" crashes at shutdown.
SCRIPT = r'''
import atexit, ctypes, faulthandler, json, os, sys, threading, time
out, mode = sys.argv[1], sys.argv[2]
PARK = {i + 1 for i, l in enumerate(open(__file__).read().splitlines()) if l.endswith("# park")}
ready = threading.Barrier(2)
def settle():
    me = threading.get_ident()
    while not all(f.f_code.co_filename == __file__ and f.f_lineno in PARK
                  for t, f in sys._current_frames().items() if t != me):
        time.sleep(0.01)
def idle():
    ready.wait()
    time.sleep(100)  # park
def parse_payload(data):
    settle(); f = open(out, "w"); faulthandler.dump_traceback(f, all_threads=True); f.close(); ctypes.string_at(0)
def render_page(data):
    settle(); f = open(out, "w"); faulthandler.dump_traceback(f, all_threads=True); f.close(); ctypes.string_at(0)
def handle_request(data):
    if mode == "render":
        render_page(data)
    else:
        parse_payload(data)
def on_exit():
    f = open(out, "w"); faulthandler.dump_traceback(f, all_threads=True); f.close(); ctypes.string_at(0)
ids = {hex(threading.main_thread().ident): threading.get_native_id()}
if mode == "atexit":
    atexit.register(on_exit)
    with open(out + ".ids", "w") as f:
        json.dump(ids, f)
    sys.exit(0)
sleeper = threading.Thread(target=idle, daemon=True)
sleeper.start()
ready.wait()
ids[hex(sleeper.ident)] = sleeper.native_id
with open(out + ".ids", "w") as f:
    json.dump(ids, f)
worker = threading.Thread(target=handle_request, args=(b"x",), daemon=True)
never, _ = os.pipe()
worker.start()
os.read(never, 1)  # park
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


@pytest.fixture(scope="module")
def rig():
    with pctest.kernel_rig("pcp-", install=False) as rig:
        (rig.work / "run").mkdir(mode=0o700)
        rig.config("c", rate_limit_burst=0)
        rig.config("tiny", rate_limit_burst=0, max_core_size="4K")
        rig.config("lean", rate_limit_burst=0, max_captures=1,
                   runtime_dir=str(rig.work / "run"))
        rig.config("rated", rate_limit_burst=1, rate_limit_interval=3600)
        yield rig


def crash_python(rig, python, tmp_path, mode="parse", config="c", script_text=SCRIPT):
    """Runs the script under `python` with the rig's handler (configuration `config`) as
    core_pattern; returns (record, faulthandler's threads, {thread id: native id})."""
    if not python.exists():
        pytest.skip(f"{python} is not installed")
    script = tmp_path / "service.py"
    script.write_text(script_text)
    out = tmp_path / f"dump-{mode}"
    with pctest.core_pattern(rig.pattern(config)):
        proc = subprocess.Popen([str(python), str(script), str(out), mode],
                                preexec_fn=pctest.allow_cores, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -11, (proc.returncode, err)
        r = pctest.record_for(rig.store, proc.pid)
    if script_text != SCRIPT:
        return r, None, None
    return r, parse_faulthandler(out.read_text()), json.loads(Path(f"{out}.ids").read_text())


def check_python(r, expected, native_ids):
    py = r["python"]
    assert py["status"] == "ok", py
    got = py["threads"]
    assert sorted(t["thread_id"] for t in got) == sorted(tid for tid, _, _ in expected)
    by_id = {t["thread_id"]: t for t in got}
    for tid, current, frames in expected:
        thread = by_id[tid]
        got_frames = thread["frames"]
        if current:
            # The crash is one call further in than the dump: ctypes' Python string_at.
            assert got_frames[0]["function"] == "string_at", got_frames[0]
            assert got_frames[0]["file"].endswith("ctypes/__init__.py")
            got_frames = got_frames[1:]
        # faulthandler prints co_name; the record keeps co_qualname.
        assert [(f["file"], f["line"], f["function"].rsplit(".", 1)[-1])
                for f in got_frames] == frames, thread
        if hex(tid) in native_ids:
            assert thread["native_thread_id"] == native_ids[hex(tid)]
        # The thread that crashed holds the GIL, and it is the kernel's crashing thread.
        assert thread["holds_gil"] == current
        if current:
            assert thread["native_thread_id"] == r["tid"]
    assert py["reads"] < 2000


@pytest.mark.parametrize("python", PYTHONS, ids=str)
def test_threaded_crash_has_every_python_stack(rig, python, tmp_path):
    r, expected, ids = crash_python(rig, python, tmp_path)
    assert r["core"]["reason"] == "stored", r["core"]
    check_python(r, expected, ids)
    worker = next(t for t in r["python"]["threads"] if t["holds_gil"])
    assert [f["function"] for f in worker["frames"]][:3] == [
        "string_at", "parse_payload", "handle_request"]
    assert r["python"]["walk_ms"] < 250
    # corectl info: the Python frames inside the crashing thread's backtrace.
    info = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store),
                           "info", r["id"]], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert re.search(r'File ".*service\.py", line \d+, in parse_payload', info.stdout), info.stdout
    # Py-bt's order: the evaluation-loop frame, then the Python frames it ran.
    lines = info.stdout.splitlines()
    eval_at = next(i for i, l in enumerate(lines) if "_PyEval_EvalFrameDefault" in l)
    assert "string_at" in lines[eval_at + 1], lines[eval_at:eval_at + 3]
    js = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store), "info",
                         "--json", r["id"]], capture_output=True, text=True, timeout=60)
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout)["python"] == r["python"]
    # The signature names the Python caller of the native crash.
    assert r["crash"]["signature_version"] == 3, r["crash"]
    assert r["crash"]["signature_chain"].endswith("service.py:parse_payload"), r["crash"]


def test_tiny_max_core_size_keeps_the_python_stacks(rig, tmp_path):
    r, expected, ids = crash_python(rig, PYTHONS[0], tmp_path, config="tiny")
    assert r["core"]["reason"] == "truncated", r["core"]
    check_python(r, expected, ids)


def test_lean_path_keeps_the_python_stacks(rig, tmp_path):
    # The one capture slot is held: the crash takes the lean path and its core is never read.
    slot = os.open(rig.work / "run" / "capture.0", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(slot, fcntl.LOCK_EX)
        r, expected, ids = crash_python(rig, PYTHONS[0], tmp_path, config="lean")
    finally:
        os.close(slot)
    assert r["core"]["reason"] == "busy", r["core"]
    check_python(r, expected, ids)
    info = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store),
                           "info", r["id"]], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert "Python stacks:" in info.stdout and "in parse_payload" in info.stdout, info.stdout


def test_crash_at_shutdown(rig, tmp_path):
    r, expected, ids = crash_python(rig, PYTHONS[0], tmp_path, mode="atexit")
    check_python(r, expected, ids)
    # atexit handlers run before the runtime is marked finalizing; the main module has returned,
    # so the handler is the outermost Python frame.
    assert r["python"]["finalizing"] is False
    assert [f["function"] for f in r["python"]["threads"][0]["frames"]] == ["string_at", "on_exit"]


def test_two_python_callers_two_signatures(rig, tmp_path):
    a, _, _ = crash_python(rig, PYTHONS[0], tmp_path, mode="parse")
    b, _, _ = crash_python(rig, PYTHONS[0], tmp_path, mode="render")
    assert a["crash"]["signature_version"] == 3 and b["crash"]["signature_version"] == 3
    assert a["crash"]["signature"] != b["crash"]["signature"], (a["crash"], b["crash"])
    # corectl groups keeps them apart.
    out = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store), "groups",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    groups = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    text = json.dumps(groups)
    assert a["crash"]["signature"] in text and b["crash"]["signature"] in text, groups


def test_rate_limited_crash_keeps_the_python_stacks(rig, tmp_path):
    # A burst of one: by the second crash of the same executable and uid (the store holds the
    # other tests' cores too) the rate limit keeps no core.
    crash_python(rig, PYTHONS[0], tmp_path, config="rated")
    r, expected, ids = crash_python(rig, PYTHONS[0], tmp_path, config="rated")
    assert r["core"]["reason"] == "rate_limited" and not r["core"]["present"], r["core"]
    check_python(r, expected, ids)


# 64 threads x 100 Python frames: more than the section's share of the record.
DEEP = r'''
import ctypes, threading
N, D = 64, 100
ready = threading.Barrier(N)
def rec(n):
    if n == 0:
        ready.wait(); threading.Event().wait()
    rec(n - 1)
for _ in range(N - 1):
    threading.Thread(target=rec, args=(D - 3,), daemon=True).start()
def crash_rec(n):
    if n == 0:
        ready.wait(); ctypes.string_at(0)
    crash_rec(n - 1)
crash_rec(D - 2)
'''


def test_deep_stacks_are_cut_to_their_share_and_say_so(rig, tmp_path):
    r, _, _ = crash_python(rig, PYTHONS[0], tmp_path, script_text=DEEP)
    assert "python" in r, r["handler"]["cut"]
    py = r["python"]
    assert py["status"] == "partial" and "kept" in py["cut"], {k: py[k] for k in py if k != "threads"}
    assert len(json.dumps(py)) <= 64 << 10
    assert Path(r["_path"]).stat().st_size <= 256 << 10
    crashing = [t for t in py["threads"] if t["native_thread_id"] == r["tid"]]
    assert crashing and crashing[0]["frames"][0]["function"] == "string_at"
    assert crashing[0]["truncated"] is True
    # The walk itself stays within its budgets: one read of most pages, well under 200 ms.
    assert py["reads"] < 2000 and py["elapsed_us"] < 200_000
