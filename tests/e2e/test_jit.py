"""Frames in JIT code, through the real kernel: named from the crashed process's perf map
(/tmp/perf-<pid>.map, as V8 with --perf-basic-prof and CPython 3.12+ with -X perf write it),
read as the crashing user through the process's root, never through a link, bounded; the names
count in the signature. Node's own diagnostic report is kept beside the record. Skipped without
root or a writable core_pattern, and per runtime where it is absent.
"""
import os
import pathlib
import platform
import random
import shutil
import subprocess
import tempfile

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

HERE = pathlib.Path(__file__).resolve().parent
NOBODY = 65534
PYTHON312 = pathlib.Path("/root/.pyenv/versions/3.12.1/bin/python3")
JIT_CRASH = HERE.parent / "programs" / "runtimes" / "jit_crash.py"

# Two different uncaught errors, each thrown from a function that ran before (and was caught
# there), so that --interpreted-frames-native-stack has given it its own code and map line.
APP_JS = r"""
function parse(s) { if (s.length > 0) throw new Error("bad input " + s); return s; }
function render(o) { return o.title.length; }
function main(which) { return which === "parse" ? parse("x") : render({}); }
for (const w of ["parse", "render"]) { try { main(w); } catch (e) {} }
main(process.argv[2]);
"""


@pytest.fixture(scope="module")
def rig():
    with pctest.kernel_rig("pcj-", rate_limit_burst=0) as rig:
        yield rig


@pytest.fixture
def work():
    with tempfile.TemporaryDirectory(prefix="pcj-w-") as tmp:
        os.chmod(tmp, 0o777)
        yield pathlib.Path(tmp)


def info(rig, rid):
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store), "info",
                        "--no-pager", rid], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def jit_frames(record):
    return [f for f in record["crash"]["stacks"][0]["frames"] if f.get("jit")]


def named(frames):
    return [f["symbol"]["name"] for f in frames if f.get("symbol")]


def node_or_skip():
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs nodejs (packaging/test-deps.txt)")
    return node


def test_javascript_frames_are_named_and_two_errors_get_two_signatures(rig, work):
    node = node_or_skip()
    (work / "app.js").write_text(APP_JS)
    records = {}
    for which in ("parse", "render"):
        record, _ = pctest.crash_for_core(
            rig.store, [node, "--perf-basic-prof", "--interpreted-frames-native-stack",
                        "--abort-on-uncaught-exception", work / "app.js", which], cwd=work)
        names = named(jit_frames(record))
        # The function that threw, and its caller, by the names V8 gave their code.
        assert any(n.startswith(f"JS:~{which} ") and "app.js" in n for n in names), names
        assert any(n.startswith("JS:~main ") for n in names), names
        chain = record["crash"]["signature_chain"]
        assert f"jit:{which} app.js" in chain, chain
        assert "OS::Abort" not in chain and "CreateMessageOrAbort" not in chain, chain
        shown = info(rig, record["id"])
        assert f"JS:~{which} " in shown and "(JIT code)" in shown, shown
        records[which] = record
    assert records["parse"]["crash"]["signature"] != records["render"]["crash"]["signature"]


def test_without_a_perf_map_javascript_frames_are_unnamed_and_left_out_of_the_signature(rig,
                                                                                       work):
    node = node_or_skip()
    (work / "app.js").write_text(APP_JS)
    record, _ = pctest.crash_for_core(
        rig.store, [node, "--abort-on-uncaught-exception", work / "app.js", "parse"], cwd=work)
    assert not named(jit_frames(record))
    assert "jit:" not in record["crash"]["signature_chain"]
    assert not any("perf map" in w for w in record["handler"]["warnings"])


def test_cpython_perf_trampolines_are_named(rig, work):
    if not PYTHON312.exists():
        pytest.skip(f"needs {PYTHON312}")
    if platform.machine() != "x86_64":
        pytest.skip("CPython's perf trampolines are x86-64 and aarch64 only")
    script = work / "service.py"
    script.write_text("import ctypes\n\n\ndef parse_payload():\n    ctypes.string_at(0)\n\n\n"
                      "def handle_request():\n    parse_payload()\n\n\nhandle_request()\n")
    record, _ = pctest.crash_for_core(rig.store, [PYTHON312, "-X", "perf", script], cwd=work)
    names = named(jit_frames(record))
    for function in ("parse_payload", "handle_request"):
        assert f"py::{function}:{script}" in names, names


def jit_crash(rig, prepare, uid=0):
    """Runs jit_crash.py (Debian's python3) as `uid`; `prepare(start, size, pid)` runs once its
    code is in place, then it calls it. Returns its record and the code's address."""
    def become():
        pctest.allow_cores()
        if uid:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
    proc = subprocess.Popen(["/usr/bin/python3", JIT_CRASH], preexec_fn=become,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd="/")
    start, size, pid = proc.stdout.readline().split()
    perf_map = pathlib.Path(f"/tmp/perf-{int(pid)}.map")
    try:
        prepare(perf_map, int(start, 16), int(size, 16))
        proc.stdin.close()
        proc.wait(timeout=60)
        assert proc.returncode < 0
        return pctest.record_for(rig.store, proc.pid, timeout=60), int(start, 16)
    finally:
        if perf_map.is_symlink() or perf_map.exists():
            perf_map.unlink()


def test_a_programs_own_jit_code_is_named_from_its_perf_map(rig):
    def write(path, start, size):
        path.write_text(f"{start - 0x1000:x} 10 something_else\n{start:x} {size:x} crash_in_jit\n")

    record, start = jit_crash(rig, write)
    top = record["crash"]["stacks"][0]["frames"][0]
    assert top["jit"] and int(top["pc"], 16) - start < 0x20, top
    assert top["symbol"]["name"] == "crash_in_jit" and not top["symbol"]["verified"], top
    assert record["crash"]["signature_chain"].startswith("jit:crash_in_jit"), record["crash"]
    # The frame-pointer chain goes on from the JIT code into ctypes' libffi.
    frames = record["crash"]["stacks"][0]["frames"]
    assert any("libffi" in (f.get("module") or "") for f in frames[1:4]), frames[:4]


def garbage(path, start, size):
    rng = random.Random(7)
    path.write_bytes(bytes(rng.randrange(256) for _ in range(256 << 10)))


def huge(path, start, size):
    # The naming line first, then 24 MiB: more than the 16 MiB the handler reads of a map's end.
    with path.open("w") as f:
        f.write(f"{start:x} {size:x} too_far_back\n")
        f.write(("7f0000000000 10 filler\n" * 4096) * 256)


def link_to_shadow(path, start, size):
    path.symlink_to("/etc/shadow")


@pytest.mark.parametrize("prepare,why", [(garbage, None), (huge, None),
                                         (link_to_shadow, "a symbolic link on the way")],
                         ids=["garbage", "huge", "symlink"])
def test_a_hostile_perf_map_names_nothing(rig, prepare, why):
    record, _ = jit_crash(rig, prepare)
    assert jit_frames(record) and not named(jit_frames(record)), jit_frames(record)
    warnings = record["handler"]["warnings"]
    if why:
        assert any("perf map" in w and why in w for w in warnings), warnings
    text = pathlib.Path(record["_path"]).read_text()
    assert "too_far_back" not in text and "root:" not in text


def test_a_perf_map_of_another_user_is_refused(rig):
    def write(path, start, size):
        path.write_text(f"{start:x} {size:x} roots_name\n")  # the test runs as root

    record, _ = jit_crash(rig, write, uid=NOBODY)
    assert jit_frames(record) and not named(jit_frames(record))
    warnings = record["handler"]["warnings"]
    assert any("perf map" in w and "owned by uid 0" in w for w in warnings), warnings


def test_node_diagnostic_report_is_kept_and_shown(rig, work):
    """A fatal error (the heap limit) writes Node's report, then aborts with a core."""
    node = node_or_skip()
    reports = work / "reports"
    reports.mkdir()
    record, _ = pctest.crash_for_core(
        rig.store, [node, "--max-old-space-size=16", "--report-on-fatalerror",
                    "--report-uncaught-exception", f"--report-directory={reports}", "-e",
                    "const a = []; for (;;) a.push(new Array(1e5).fill(1));"], cwd=work)
    written = list(reports.glob("report.*.json"))
    assert written, "node wrote no report"
    rr = record["runtime_report"]
    assert rr["runtime"] == "node" and "refused" not in rr, rr
    kept = pathlib.Path(record["_path"]).parent / f"{record['id']}.report"
    assert kept.read_bytes() == written[0].read_bytes()[:len(kept.read_bytes())]
    shown = info(rig, record["id"])
    assert "Runtime report" in shown and '"nodejsVersion"' in shown, shown
