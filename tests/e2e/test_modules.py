"""Modules as the loader mapped them, through the real kernel and the shipped settings.

A process may map one of its libraries again (Ruby's crash reporter maps libc and libruby
read-only at offset 0 to print its C backtrace; dlmopen loads a file twice): frames must be
attributed to the loader's image, never to the copy. A module without a GNU build-id (Go, a C
program linked --build-id=none) is matched another way and still named. Each crash's top frames
are compared with gdb's `bt` on the stored core. Skipped without root or a writable core_pattern.
"""
import json
import os
import re
import pathlib
import shutil
import subprocess
import tempfile

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if shutil.which("gdb") is None:
    pytest.skip("needs gdb", allow_module_level=True)

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def kernel():
    with pctest.kernel_rig("pcm-", rate_limit_burst=0) as rig:
        yield rig.store


def crash(store, argv, env=None, cwd=None):
    return pctest.crash_for_core(store, argv, env=env, cwd=cwd, timeout=120)


def mapping(record, part):
    return next(m for m in record["mappings"] if part in m["path"])


def test_ruby_fiddle_segfault_is_unwound_through_libruby(kernel):
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("needs ruby (packaging/test-deps.txt)")
    # Ruby catches the SEGV in memcpy, maps its ELF files again to print a C backtrace, aborts.
    record, core = crash(kernel, [ruby, "-rfiddle", "-e", "Fiddle::Pointer.new(16)[0, 8]"])
    crashing = record["crash"]["stacks"][0]
    ours = pctest.frame_names(crashing["frames"])
    theirs = pctest.gdb_threads(ruby, core)[0][1]
    # Down to the signal frame gdb and we agree on every function.
    top = theirs.index("<signal>") + 1 if "<signal>" in theirs else 5
    assert ours[:top] == theirs[:top], f"record {ours} != gdb {theirs}"
    assert any(n.endswith("abort") for n in ours[:top]), ours  # abort, or glibc's __GI_abort
    # Above the signal frame, Ruby's fatal-signal handler: frames in the loader's libruby.
    handler = crashing["frames"][ours.index(next(n for n in ours if n.endswith("abort"))) + 1:top - 1]
    assert handler and all("/libruby" in (f["module"] or "") for f in handler), handler
    assert all(f["trust"] == "cfi" for f in crashing["frames"][1:top])
    # Below it, the interrupted memcpy in libc (memcpy and memmove are one function there: gdb
    # and we may pick different aliases), named.
    below = crashing["frames"][top:]
    assert below and below[0]["symbol"] and below[0]["symbol"]["verified"]
    assert re.search(r"mem(cpy|move)_", below[0]["symbol"]["name"]), pctest.frame_names(below)
    assert re.search(r"mem(cpy|move)_", theirs[top])
    # Further down only when the interrupted stack was captured (Ruby's handler runs on an
    # alternate signal stack): then libruby's frames, as gdb names them.
    if len(below) > 1:
        n = min(len(below), len(theirs) - top, 4)
        assert pctest.frame_names(below)[1:n] == theirs[top + 1:top + n]
    # The record's modules are the loaded images, matched by build-id.
    for lib in ("/libc.so.6", "/libruby-3.1.so"):
        m = mapping(record, lib)
        assert m["match"] == "build-id" and m["build_id"]
    assert "no module" not in (crashing["error"] or "")


def test_read_only_copy_of_libc_is_not_the_module(kernel):
    exe = pctest.env_path("PC_MOD_COPYLIB")
    record, core = crash(kernel, [exe])
    frames = record["crash"]["stacks"][0]["frames"]
    ours = pctest.frame_names(frames)
    theirs = pctest.gdb_threads(exe, core)[0][1]
    n = min(len(theirs), 5)
    assert n >= 3 and ours[:n] == theirs[:n], f"record {ours} != gdb {theirs}"
    assert any(n.endswith("_abort") for n in ours) and "copy_then_abort" in ours
    assert "main" in ours
    libc = [f for f in frames if f["module"] and "/libc.so" in f["module"]]
    assert libc and all(f["symbol"] and f["symbol"]["verified"] for f in libc)
    # The copy lies below the loader's libc; the record gives the loader's start.
    starts = sorted(int(m["start"], 16) for m in record["mappings"] if "/libc.so" in m["path"])
    assert len(starts) == 1
    assert mapping(record, "/libc.so.6")["match"] == "build-id"
    assert all(int(f["pc"], 16) >= starts[0] for f in libc)


def test_program_without_build_id_is_named(kernel, tmp_path):
    exe = tmp_path / "nobuildid"
    shutil.copy(pctest.env_path("PC_MOD_NOBUILDID"), exe)
    os.chmod(tmp_path, 0o755)
    out = subprocess.run(["readelf", "-n", str(exe)], capture_output=True, text=True).stdout
    assert "Build ID" not in out
    record, core = crash(kernel, [exe])
    ours = pctest.frame_names(record["crash"]["stacks"][0]["frames"])
    theirs = pctest.gdb_threads(exe, core)[0][1]
    assert ours[:3] == theirs[:3] == ["nobuildid_crash", "nobuildid_caller", "main"], ours
    m = mapping(record, exe.name)
    assert m["match"] == "elf-headers" and m["build_id"] is None
    assert record["crash"]["stacks"][0]["frames"][1]["trust"] == "cfi"
    assert record["crash"]["signature_chain"].startswith("nobuildid_crash")
    # The same path with another first page (one byte of the ELF header's padding) is another
    # file: never used for names.
    def top_frame():
        with open(core, "rb") as stdin:
            out = subprocess.run([pctest.env_path("PC_SCAN_CORE"), "--unwind"], stdin=stdin,
                                 capture_output=True, check=True).stdout
        return json.loads(out)["crash"]["stacks"][0]["frames"][0]
    assert top_frame()["symbol"]["name"] == "nobuildid_crash"
    image = bytearray(exe.read_bytes())
    image[12] ^= 0xff
    exe.write_bytes(bytes(image))
    frame = top_frame()
    assert frame["module"] == str(exe) and frame["symbol"] is None, frame


GO_TRACE_FRAME = re.compile(r"^([\w./*()-]+)\(.*\)$")


def go_build(work, out, *flags):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"),
           "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    subprocess.run([shutil.which("go"), "build", *flags, "-o", out, "."], cwd=work, env=env,
                   check=True, capture_output=True, timeout=300)
    return work / out


def go_panic_trace(exe, bug, cwd):
    """The functions of the panicking goroutine as Go prints them on stderr, from the faulting
    one outwards (the oracle): the lines after runtime.sigpanic's."""
    out = subprocess.run([str(exe), bug], env={"GOTRACEBACK": "crash"}, cwd=cwd,
                         capture_output=True, text=True, timeout=60).stderr
    block = out.split("\n\n")[1].splitlines()  # goroutine N [running]:, then frame, file lines
    names = [m.group(1) for line in block if (m := GO_TRACE_FRAME.match(line))]
    return names[names.index("runtime.sigpanic") + 1:]


@pytest.fixture(scope="module")
def go_programs():
    if shutil.which("go") is None:
        pytest.skip("needs golang-go (packaging/test-deps.txt)")
    with tempfile.TemporaryDirectory(prefix="pcm-go-") as tmp:
        work = pathlib.Path(tmp)
        os.chmod(work, 0o755)
        shutil.copy(HERE.parent / "programs" / "modules" / "crashgo.go", work / "main.go")
        (work / "go.mod").write_text("module crashgo\n\ngo 1.19\n")
        yield work, go_build(work, "crashgo"), go_build(work, "crashgo-w", "-ldflags=-w")


def test_go_program_is_named_by_its_go_build_id(kernel, go_programs):
    work, exe, _ = go_programs
    record, core = crash(kernel, [exe, "lookup"], env={"GOTRACEBACK": "crash"}, cwd=work)
    # Assembly functions are named from the symbol table, whose names carry the ABI
    # wrapper's suffix (runtime.raise.abi0); gdb names them from DWARF (runtime.raise).
    frames = record["crash"]["stacks"][0]["frames"]
    ours = [n.removesuffix(".abi0") for n in pctest.frame_names(frames)]
    theirs = pctest.gdb_threads(exe, core)[0][1]
    assert ours[0] == theirs[0] == "runtime.raise", (ours, theirs)
    n = 3
    assert ours[:n] == theirs[:n], f"record {ours} != gdb {theirs}"
    m = mapping(record, "/crashgo")
    assert m["match"] == "go-build-id" and m["build_id"] is None


def test_go_faulting_goroutine_is_the_crash(kernel, go_programs):
    work, exe, _ = go_programs
    signatures = {}
    for bug in ("lookup", "pop"):
        oracle = go_panic_trace(exe, bug, work)
        assert "main.main" in oracle and oracle[0].startswith("main.("), oracle
        record, _ = crash(kernel, [exe, bug], env={"GOTRACEBACK": "crash"}, cwd=work)
        c = record["crash"]
        g = c["goroutine"]
        assert g["layout"] == "dwarf" and g["error"] is None and g["goid"] == 1, g
        frames = c["stacks"][0]["frames"]
        names = [n.removesuffix(".abi0") for n in pctest.frame_names(frames)]
        # The thread dies in the runtime's signal handler; below its signal frame, the
        # goroutine's frames: the crash path, sigpanic, then the panic's goroutine trace.
        goroutine = names[g["first_frame"]:]
        assert frames[g["first_frame"] - 1]["signal_frame"], names
        at = goroutine.index("runtime.sigpanic") + 1
        assert goroutine[at:at + len(oracle)] == oracle, (goroutine, oracle)
        # The SIGSEGV the runtime turned into the panic, at the nil entry.
        o = c["original_fault"]
        assert (o["signal_name"], o["si_code_name"], o["fault_address"]) == \
            ("SEGV", "SEGV_MAPERR", "0x0"), o
        assert o["symbol"]["name"] == oracle[0], o
        assert c["si_signo"] == 6  # what killed the process stays SIGABRT
        assert c["signature_chain"] == " ← ".join(oracle[:3]), c["signature_chain"]
        signatures[bug] = c["signature"]
    assert signatures["lookup"] != signatures["pop"]


def test_go_program_without_dwarf_has_an_unknown_layout(kernel, go_programs):
    work, _, exe = go_programs
    out = subprocess.run(["readelf", "-S", str(exe)], capture_output=True, text=True).stdout
    assert ".debug_info" not in out
    record, _ = crash(kernel, [exe, "lookup"], env={"GOTRACEBACK": "crash"}, cwd=work)
    g = record["crash"]["goroutine"]
    assert g["layout"] == "unknown" and g["goid"] is None and g["first_frame"] is None, g
    assert "DWARF" in g["error"], g
    assert not any(n.startswith("main.") for n in (record["crash"]["signature_chain"] or "").split(" ← "))
    # The runtime's SIGABRT frame is no fault: its sigcontext's trap number is the earlier page
    # fault, at another pc, and no original fault is made of it.
    assert record["crash"].get("original_fault") is None, record["crash"]["original_fault"]
