"""Backtraces of the crash zoo through the real kernel and the real handler, against gdb.

Each zoo program crashes with core_pattern pointing at the built handler (machine lock held,
previous pattern restored). For the stored core, the crashing thread's top frames in the record
must name the same functions as gdb's `bt` on the same core, and every thread must be present.
The stripped program is checked with scan_core and its separate debug directory (the handler
looks only in the host's /usr/lib/debug). Skipped without root or a writable core_pattern.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

import debuginfod
import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if shutil.which("gdb") is None:
    pytest.skip("needs gdb", allow_module_level=True)

TOP = 5


@pytest.fixture(scope="module")
def kernel():
    with pctest.kernel_rig("pcb-", rate_limit_burst=0) as rig:
        yield rig.store, rig.work


allow_cores = pctest.allow_cores


def crash(store, argv, env=None):
    """Runs argv until it dies of a signal; returns its record and the decompressed core path."""
    proc = subprocess.Popen([str(a) for a in argv], preexec_fn=allow_cores, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}"
    record = pctest.record_for(store, proc.pid)
    assert record["schema"] == 2
    core_zst = pathlib.Path(record["_path"]).parent / f"{record['id']}.core.zst"
    core = pathlib.Path(store).parent / f"{record['id']}.core"
    core.write_bytes(pctest.zstd_decompress(core_zst))
    return record, core


def check_against_gdb(crash_obj, exe, core, debug_dir=None):
    stacks = crash_obj["stacks"]
    assert stacks and stacks[0]["crashing"]
    gdb = dict(pctest.gdb_threads(exe, core, debug_dir))
    # Every thread of the core is in the record.
    assert len(stacks) == crash_obj["threads"] == len(gdb), (stacks, gdb)
    assert {t["tid"] for t in stacks} == set(gdb)
    crashing = stacks[0]
    theirs = gdb[crashing["tid"]][:TOP]
    ours = pctest.frame_names(crashing["frames"])[:len(theirs)]
    assert len(theirs) >= 3 and ours == theirs, f"record {ours} != gdb {theirs}"
    # Frames below #0 come from CFI when the modules were verified.
    assert crashing["frames"][0]["trust"] == "context"
    assert all(f["trust"] == "cfi" for f in crashing["frames"][1:TOP])


ZOO = [
    ("PC_ZOO_O0", "segv", ["crash_null", "segv_level2", "segv_level1", "main"]),
    ("PC_ZOO_O2", "segv", ["crash_null", "segv_level2", "segv_level1", "main"]),
    ("PC_ZOO_O0", "abort", ["abort_here", "abort_caller", "main"]),
    ("PC_ZOO_O2", "dirty", ["dirty_crash", "dirty_caller", "main"]),
    ("PC_ZOO_O0", "thread-abort", ["abort_here", "abort_caller", "thread_worker"]),
    ("PC_ZOO_O0", "signal", ["crash_null", "on_signal", "<signal>"]),
    ("PC_ZOO_O2", "lib", ["zoolib_inner", "zoolib_crash", "lib_caller", "main"]),
    ("PC_ZOO_CXX", None, ["zoo::parse_config", "zoo::load", "main"]),
]


@pytest.mark.parametrize("var,mode,expected", ZOO, ids=[f"{v}-{m}" for v, m, _ in ZOO])
def test_zoo_backtrace_matches_gdb(kernel, var, mode, expected):
    store, _ = kernel
    exe = pctest.env_path(var)
    record, core = crash(store, [exe] + ([mode] if mode else []))
    crash_obj = record["crash"]
    check_against_gdb(crash_obj, exe, core)
    # The program's own frames are there, in order, after the crash machinery.
    got = [n for n in pctest.frame_names(crash_obj["stacks"][0]["frames"]) if n in expected]
    assert got[:len(expected)] == expected
    # Source lines where DWARF is available.
    own = [f for f in crash_obj["stacks"][0]["frames"]
           if f["symbol"] and f["symbol"]["name"] in expected and f["file"]]
    assert own and all(f["line"] > 0 for f in own)
    assert crash_obj["signature_version"] == 2
    # Thread names and states from /proc, the crashing thread marked.
    by_name = {t["name"]: t for t in crash_obj["stacks"]}
    assert "zoo-idle" in by_name or var == "PC_ZOO_CXX"
    assert [t["crashing"] for t in crash_obj["stacks"]].count(True) == 1
    if mode == "thread-abort":
        assert crash_obj["stacks"][0]["name"] == "zoo-worker"
    assert all(t["state"] for t in crash_obj["stacks"])


def test_stripped_binary_with_separate_debug_file(kernel):
    store, _ = kernel
    exe = pctest.env_path("PC_ZOO_STRIPPED")
    debug = pctest.env_path("PC_ZOO_DEBUG_DIR")
    record, core = crash(store, [exe, "segv"])
    # Without the debug file the stripped program has no names of its own.
    assert "segv_level1" not in pctest.frame_names(record["crash"]["stacks"][0]["frames"])
    out = subprocess.run([pctest.env_path("PC_SCAN_CORE"), "--unwind", "--debug-dir", debug],
                         stdin=open(core, "rb"), capture_output=True, check=True).stdout
    crash_obj = json.loads(out)["crash"]
    check_against_gdb(crash_obj, exe, core, debug)
    frames = crash_obj["stacks"][0]["frames"]
    assert pctest.frame_names(frames)[:4] == ["crash_null", "segv_level2", "segv_level1", "main"]
    assert frames[0]["file"].endswith("zoo.c") and frames[0]["line"] > 0


@pytest.mark.skipif(not os.environ.get("PC_ZOO_DWZ"), reason="needs dwz at build time")
def test_debug_file_with_dwz_alternate_file(kernel, tmp_path):
    """A separate debug file made with dwz keeps the names of the functions in its DWZ
    alternate file (.gnu_debugaltlink). The analysis, as the handler runs it (--sandboxed: it
    opens nothing itself), gets that file as a descriptor: found at the absolute path the link
    names under a debug directory (Debian's layout), or by its build-id (Fedora's), never by a
    path outside the debug directories."""
    store, _ = kernel
    exe = pctest.env_path("PC_ZOO_DWZ")
    debug = pctest.env_path("PC_ZOO_DWZ_DEBUG_DIR")
    _, core = crash(store, [exe, "segv"])
    expected = ["crash_null", "segv_level2", "segv_level1", "main"]

    def frames(debug_dir):
        out = subprocess.run([pctest.env_path("PC_SCAN_CORE"), "--unwind", "--sandboxed",
                              "--debug-dir", str(debug_dir)],
                             stdin=open(core, "rb"), capture_output=True, check=True).stdout
        return json.loads(out)["crash"]["stacks"][0]["frames"]

    def check(debug_dir):
        got = frames(debug_dir)
        assert pctest.frame_names(got)[:4] == expected, got[:4]
        assert all(f["file"].endswith("zoo.c") and f["line"] > 0 for f in got[:4]), got[:4]

    check(debug)
    # Moved elsewhere, the link's path leads outside the debug directory: found by build-id.
    moved = tmp_path / "by-build-id"
    shutil.copytree(debug, moved, symlinks=True)
    alt = moved / ".dwz" / "zoo.debug"
    out = subprocess.run(["readelf", "-n", str(alt)], capture_output=True, text=True, check=True)
    alt_id = re.search(r"Build ID: ([0-9a-f]+)", out.stdout).group(1)
    (moved / ".build-id" / alt_id[:2]).mkdir(exist_ok=True)
    os.link(alt, moved / ".build-id" / alt_id[:2] / f"{alt_id[2:]}.debug")
    alt.unlink()
    check(moved)
    # Without the alternate file the names come from the symbol table only: GCC's clones show
    # (crash_null.constprop.0), which DWARF would have named crash_null.
    missing = tmp_path / "no-alternate"
    shutil.copytree(debug, missing, symlinks=True)
    shutil.rmtree(missing / ".dwz")
    assert pctest.frame_names(frames(missing))[:4] != expected


def test_signatures_group_by_bug(kernel):
    store, work = kernel
    o0, o2, cxx = (pctest.env_path(v) for v in ("PC_ZOO_O0", "PC_ZOO_O2", "PC_ZOO_CXX"))
    a1, _ = crash(store, [o0, "abort"])
    a2, _ = crash(store, [o0, "abort"])
    # Another hostname (UTS namespace): the same bug.
    a3, _ = crash(store, ["unshare", "-u", "sh", "-c", f"hostname pc-other-host && exec {o0} abort"])
    t1, _ = crash(store, [o0, "thread-abort"])
    x1, _ = crash(store, [cxx])
    py, _ = crash(store, ["python3", "-c", "import os; os.abort()"])
    s = lambda r: r["crash"]["signature"]
    chain = lambda r: r["crash"]["signature_chain"].split(" ← ")
    assert a3["hostname"] == "pc-other-host"
    assert s(a1) == s(a2) == s(a3)
    # Different programs' aborts never share a signature.
    assert len({s(a1), s(t1), s(x1), s(py)}) == 4
    assert chain(a1)[:2] == ["abort_here", "abort_caller"]
    assert chain(x1)[:2] == ["zoo::parse_config", "zoo::load"]
    # The crash machinery is skipped.
    for r in (a1, t1, x1, py):
        for f in chain(r):
            assert f not in ("raise", "abort", "__pthread_kill_implementation", "std::terminate")
            assert not f.startswith("b:") or r is py


@pytest.mark.skipif(shutil.which("debuginfod") is None, reason="needs debuginfod")
def test_corectl_info_names_frames_from_debuginfod(kernel, tmp_path):
    """The handler never uses the network; `corectl info` asks the servers DEBUGINFOD_URLS
    names for the debug files of frames it could not name (here: a real debuginfod on
    127.0.0.1 serving the stripped program's separate debug file)."""
    store, work = kernel
    exe = pctest.env_path("PC_ZOO_STRIPPED")
    record, _ = crash(store, [exe, "segv"])
    assert "segv_level1" not in pctest.frame_names(record["crash"]["stacks"][0]["frames"])
    served = tmp_path / "served"
    shutil.copytree(pctest.env_path("PC_ZOO_DEBUG_DIR"), served)
    build_id = record["crash"]["build_id"]
    with debuginfod.serving(served, tmp_path, f"/buildid/{build_id}/debuginfo") as url:
        config = work / "c"
        env = dict(os.environ, DEBUGINFOD_URLS=url, DEBUGINFOD_CACHE_PATH=str(tmp_path / "cache"),
                   NO_COLOR="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        out = subprocess.run([pctest.env_path("PC_CORECTL"), "--config", str(config), "info",
                              record["id"]], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        frames = [l for l in lines if re.match(r"\s+#\d+\s", l)]
        assert any("crash_null" in l and "zoo.c:" in l for l in frames), out.stdout
        assert any("segv_level1" in l for l in frames), out.stdout
        # Without the servers, the same record shows no names for the program's frames.
        env.pop("DEBUGINFOD_URLS")
        plain = subprocess.run([pctest.env_path("PC_CORECTL"), "--config", str(config), "info",
                                record["id"]], env=env, capture_output=True, text=True)
        assert "segv_level1" not in plain.stdout


@pytest.mark.skipif(shutil.which("debuginfod") is None, reason="needs debuginfod")
def test_corectl_debug_takes_the_executable_from_debuginfod(kernel, tmp_path):
    """The executable was removed since the crash: `corectl debug` says so and hands gdb the
    copy a debuginfod server holds for the recorded build-id."""
    store, work = kernel
    gone = tmp_path / "zoo-gone"
    shutil.copy2(pctest.env_path("PC_ZOO_O0"), gone)
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy2(gone, served / "zoo-gone")
    record, _ = crash(store, [gone, "segv"])
    gone.unlink()
    build_id = next(m["build_id"] for m in record["mappings"] if m["path"] == str(gone))
    with debuginfod.serving(served, tmp_path, f"/buildid/{build_id}/executable") as url:
        env = dict(os.environ, DEBUGINFOD_URLS=url, DEBUGINFOD_CACHE_PATH=str(tmp_path / "cache"),
                   NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        out = subprocess.run([pctest.env_path("PC_CORECTL"), "--config", str(work / "c"), "debug",
                              record["id"], "--debugger", "gdb -nx -batch -ex bt"], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert f"the executable '{gone}' is not on this host's file system" in out.stderr
        assert f"by build-id {build_id} from debuginfod" in out.stderr, out.stderr
        assert f"from debuginfod (build-id {build_id})" in out.stderr, out.stderr
        assert "segv_level1" in out.stdout, out.stdout  # gdb had the symbols of the copy


def test_compressed_debug_bomb_is_not_inflated(kernel, tmp_path):
    """A crasher's own file whose DWARF inflates to far more than the handler's symbol budget
    (100 MiB of zeros, zlib-compressed to a few hundred KiB) is unwound, not symbolized: the
    handler never inflates it."""
    store, work = kernel
    zeros = tmp_path / "zeros"
    with open(zeros, "wb") as f:
        f.truncate(100 << 20)
    plain, bomb = tmp_path / "plain", work / "bomb"
    subprocess.run(["objcopy", f"--add-section=.debug_junk={zeros}",
                    str(pctest.env_path("PC_ZOO_O0")), str(plain)], check=True)
    subprocess.run(["objcopy", "--compress-debug-sections=zlib", str(plain), str(bomb)],
                   check=True)
    assert bomb.stat().st_size < (8 << 20)
    sections = subprocess.run(["readelf", "-SW", str(bomb)], capture_output=True, text=True).stdout
    assert ".debug_junk" in sections
    record, _ = crash(store, [bomb, "segv"])
    frames = record["crash"]["stacks"][0]["frames"]
    own = [f for f in frames if f["module"] and f["module"].endswith("/bomb")]
    assert own, frames
    assert all(f["symbol"] is None for f in own), own
    # Still unwound through the file's CFI (its .eh_frame is not compressed).
    assert len(own) >= 3 and any(f["trust"] == "cfi" for f in own), own
