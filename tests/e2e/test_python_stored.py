"""Python stacks of a STORED core, read afterwards by corectl: the crashes of
test_python_capture.py captured with the walk off (python_stacks = no), so that the record has no
`python` section; `corectl info` then reads the stacks from the core's segments and the
interpreter's file (checked by build-id), and must agree with faulthandler's dump exactly as the
capture-time walk does. Also for a loose core (`info --file`), and a core whose interpreter's file
changed on disk since the crash.

Needs root and a writable core_pattern; elsewhere the whole file is skipped."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

# The same service, oracle and checks as the capture-time tests.
from test_python_capture import PYTHONS, check_python, crash_python  # noqa: E402


@pytest.fixture(scope="module")
def rig():
    with pctest.kernel_rig("pcs-", install=False) as rig:
        rig.config("c", rate_limit_burst=0, python_stacks="no")
        rig.config("walk", rate_limit_burst=0)
        yield rig


def corectl(rig, *args):
    out = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--store", str(rig.store), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def stored_python(rig, r):
    """The `python` section corectl info --json gives for the record `r`."""
    return json.loads(corectl(rig, "info", "--json", r["id"]))["python"]


@pytest.mark.parametrize("python", PYTHONS, ids=str)
def test_stored_core_has_every_python_stack(rig, python, tmp_path):
    r, expected, ids = crash_python(rig, python, tmp_path)
    assert r["core"]["reason"] == "stored", r["core"]
    assert "python" not in r or not r["python"], r["python"]
    py = stored_python(rig, r)
    assert py["source"] == "core", py
    check_python(dict(r, python=py), expected, ids)
    worker = next(t for t in py["threads"] if t["holds_gil"])
    assert [f["function"] for f in worker["frames"]][:3] == [
        "string_at", "parse_payload", "handle_request"]
    # The text says where the stacks come from, and merges them into the native backtrace.
    text = corectl(rig, "info", r["id"])
    assert "(read afterwards from the core)" in text, text
    assert f'File "{tmp_path}/service.py", line' in text and "in parse_payload" in text, text


def test_stored_core_equals_the_capture_time_walk(rig, tmp_path):
    # The same crash with the walk on: the core read afterwards gives the same stacks.
    r, expected, ids = crash_python(rig, PYTHONS[0], tmp_path, config="walk")
    live = r["python"]
    assert live["status"] == "ok" and "source" not in live, live
    record = Path(r["_path"])
    stored = json.loads(record.read_text())
    del stored["python"]
    record.write_text(json.dumps(stored))
    py = stored_python(rig, r)
    assert py["source"] == "core"
    assert py["threads"] == live["threads"], (py, live)
    assert py["version"] == live["version"] and py["module"] == live["module"]


def test_loose_core_file(rig, tmp_path):
    r, expected, ids = crash_python(rig, PYTHONS[0], tmp_path)
    core = tmp_path / "core"
    corectl(rig, "dump", "-o", str(core), r["id"])
    loose = json.loads(corectl(rig, "info", "--json", "--file", str(core)))
    assert loose["python"]["source"] == "core", loose["python"]
    check_python(dict(r, python=loose["python"]), expected, ids)


def test_interpreter_changed_on_disk_is_said(rig, tmp_path):
    # A private copy of the static python3.11 crashes; then its build-id note changes on disk.
    python = tmp_path / "bin" / "python3.11"
    python.parent.mkdir()
    shutil.copy2(PYTHONS[0], python)
    r, _, _ = crash_python(rig, python, tmp_path)
    data = bytearray(python.read_bytes())
    # NT_GNU_BUILD_ID: namesz 4, descsz 20, type 3, "GNU\0", then the id.
    note = data.find(b"\4\0\0\0\x14\0\0\0\3\0\0\0GNU\0", 0, 64 << 10)
    assert note > 0
    data[note + 16] ^= 0xFF  # the first byte of the build-id
    python.write_bytes(bytes(data))
    py = stored_python(rig, r)
    assert py["status"] == "failed" and "changed on disk" in py["detail"], py
    assert not py["threads"]
