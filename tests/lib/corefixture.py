"""A deterministic store for corectl's golden tests, written by the real handler from real cores.

The cores are pc_crasher's own, written by gdb's gcore at the moment the crashing signal arrives
(`gdb -batch -ex run -ex gcore`): real notes, registers, mappings and memory, with no root and
no core_pattern needed. gdb runs the program with address randomisation off. Each core goes to
$PC_HANDLER exactly as the kernel would send it (argv + the core on stdin, a fixed `-t` time,
`-P`/`-I` pids). The one core that is not ELF is plain text, as a broken sender could send.

What varies between runs and machines is then normalised in the records (see normalise()):
random ids become fixed ids, timings and the handler version are pinned, the build directory's
path of pc_crasher becomes `<crasher>`, stack, pc and offsets (which move with the compiler's
code layout) become placeholders, core sizes (which follow the environment's size) become fixed
round numbers, and each distinct signature becomes a fixed one, so crashes at one site still
group together.
"""
import json
import os
import pathlib
import re
import struct
import subprocess
import tempfile

import pctest

BASE_TIME = 1763780000  # 2025-11-22T02:53:20Z


def elf_core(signo=11, pid=4242, rip=0x401136, fault=0, payload=b"process-core fixture " * 200,
             files=(), auxv_ids=None):
    """A small but well-formed x86_64 ELF core: PT_NOTE (prstatus, prpsinfo, siginfo, and NT_FILE
    when `files`, paths as bytes, each mapped one page) + PT_LOAD. With `auxv_ids` (uid, gid) it
    has an NT_AUXV too, of a process that changed no privileges."""
    def note(ntype, desc, name=b"CORE"):
        n = name + b"\0"
        pad = lambda b: b + b"\0" * (-len(b) % 4)
        return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)

    prstatus = bytearray(336 + 112)
    struct.pack_into("<i", prstatus, 0, signo)
    struct.pack_into("<h", prstatus, 12, signo)
    struct.pack_into("<i", prstatus, 32, pid)
    struct.pack_into("<Q", prstatus, 112 + 16 * 8, rip)
    struct.pack_into("<Q", prstatus, 112 + 19 * 8, 0x7ffc0000)
    prpsinfo = bytearray(136)
    struct.pack_into("<i", prpsinfo, 24, pid)
    prpsinfo[40:40 + 7] = b"fixture"
    prpsinfo[56:56 + 12] = b"fixture --go"
    siginfo = bytearray(128)
    struct.pack_into("<iii", siginfo, 0, signo, 0, 1)
    struct.pack_into("<Q", siginfo, 16, fault)
    notes = note(1, bytes(prstatus)) + note(3, bytes(prpsinfo)) + note(0x53494749, bytes(siginfo))
    if auxv_ids is not None:
        uid, gid = auxv_ids
        # AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE, AT_NULL
        pairs = [(11, uid), (12, uid), (13, gid), (14, gid), (23, 0), (0, 0)]
        notes += note(6, b"".join(struct.pack("<QQ", t, v) for t, v in pairs))
    if files:
        nt_file = struct.pack("<QQ", len(files), 4096)
        for i in range(len(files)):
            nt_file += struct.pack("<QQQ", 0x7f0000000000 + i * 4096, 0x7f0000001000 + i * 4096, 0)
        notes += note(0x46494c45, nt_file + b"".join(f + b"\0" for f in files))
    data = (payload * (4096 // len(payload) + 1))[:4096]
    phoff, phnum = 64, 2
    note_off = phoff + phnum * 56
    load_off = 4096
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    ph_note = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), 0, 4)
    ph_load = struct.pack("<IIQQQQQQ", 1, 5, load_off, 0x400000, 0, len(data), len(data), 4096)
    head = ehdr + ph_note + ph_load + notes
    return head + b"\0" * (load_off - len(head)) + data


# (fixed id, hostname, %E, signal, time offset, extra handler args, config keys, core:
#  a pc_crasher mode, or "text")
CRASHES = [
    ("c0ffee00a1b2c3d4", "web1", "!usr!bin!app", 11, 0, ["-P5000001", "-I5000001", "-u1000", "-g1000"], {}, "segv"),
    ("7e57ab1e00000002", "web1", "!usr!bin!app", 11, 60, ["-P5000002", "-I5000002", "-u1000", "-g1000"], {}, "segv"),
    ("c0ffee00b2c3d4e5", "web2", "!usr!bin!app", 6, 120, ["-P5000003", "-I5000003", "-u1000", "-g1000", "-c0"], {}, "abort"),
    ("0123456789abcdef", "db1", "!opt!db!bin!dbd", 8, 3600, ["-P5000004", "-I5000004", "-u0", "-g0"], {"max_core_size": "4096"}, "fpe"),
    ("fedcba9876543210", "evil\x1b[31mred", "!tmp!evil (deleted)", 8, 7200, ["-P5000005", "-I5000005", "-u1001", "-g1001"], {}, "text"),
]

_CORES = {}


def random_core(size):
    """An ELF core (elf_core()) whose PT_LOAD holds `size` random bytes: they do not compress, so
    its stored core is as large (a multipart upload above 8 MiB)."""
    core = bytearray(elf_core())
    phoff = struct.unpack_from("<Q", core, 32)[0]
    load = phoff + 56  # the second program header, after PT_NOTE
    assert struct.unpack_from("<I", core, load)[0] == 1
    offset = struct.unpack_from("<Q", core, load + 8)[0]
    struct.pack_into("<QQ", core, load + 32, size, size)
    return bytes(core[:offset]) + os.urandom(size)


def crasher_core(mode):
    """A real core of pc_crasher dying in `mode` (segv, abort, fpe), made once per test process."""
    if mode not in _CORES:
        crasher = pctest.env_path("PC_CRASHER")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "core")
            # A fixed, small environment: the stack (and the core's size) depend on it.
            r = subprocess.run(["gdb", "-nx", "-batch", "-ex", "run", "-ex", f"gcore {path}",
                                "--args", str(crasher), mode],
                               env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, cwd=tmp,
                               capture_output=True, timeout=120)
            if not os.path.exists(path):
                raise RuntimeError(f"gdb wrote no core for {mode}: {r.stdout!r} {r.stderr!r}")
            _CORES[mode] = pathlib.Path(path).read_bytes()
    return _CORES[mode]


def fixture_core(kind):
    return b"this is not an ELF core\n" * 50 if kind == "text" else crasher_core(kind)


def build_store(base):
    """Builds the fixture store under `base`; returns (store, config path, {id: core bytes sent})."""
    base = pathlib.Path(base)
    store = pctest.make_store(base)
    handler = pctest.env_path("PC_HANDLER")
    sent = {}
    signatures = {}
    for fixed, host, exe, signo, offset, extra, keys, kind in CRASHES:
        config = pctest.write_config(base / f"{fixed}.conf", store, **keys)
        core = fixture_core(kind)
        before = {p.name for p in store.glob("*/*/*.json")}
        subprocess.run([str(handler), "--config", str(config), *extra, f"-t{BASE_TIME + offset}",
                        "-d1", "--", host, str(signo), exe], input=core, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new = [p for p in store.glob("*/*/*.json") if p.name not in before]
        assert len(new) == 1, f"the handler wrote {len(new)} records for {fixed}"
        rename(new[0], fixed, signatures if kind != "text" else None)
        sent[fixed] = core
    # The store's config for corectl (no per-crash keys).
    return store, pctest.write_config(base / "corectl.conf", store), sent


def normalise(data, signatures):
    """Replaces what varies between runs and machines (see the module's docstring); `signatures`
    is None for the text core, whose record has nothing that varies but timings."""
    crasher = str(pctest.env_path("PC_CRASHER"))
    data["handler"]["duration_ms"] = 0
    data["handler"]["version"] = "0.0.0-fixture"
    if "drained_ms" in data["handler"]:
        data["handler"]["drained_ms"] = 0
    if "node" in data:  # the machine the fixture was made on
        data["node"] = {"boot_id": "b0000000-0000-4000-8000-000000000001", "hostname": "node1",
                        "machine_id": "0123456789abcdef0123456789abcdef"}
    if signatures is None:
        return data
    core = data["core"]
    core["size"] = 1 << 20
    if core.get("present"):
        core["stored_size"] = 1024 if core.get("truncated") else 256 << 10
    if "expected_size" in core:
        core["expected_size"] = 1 << 20
    crash = data.get("crash")
    if isinstance(crash, dict) and crash:
        if crash.get("fault_address") not in (None, "0x0"):
            crash["fault_address"] = "<fault_address>"  # SIGFPE's is the pc
        for key in ("pc", "sp", "module_offset"):
            if crash.get(key) is not None:
                crash[key] = f"<{key}>"
        for key in ("received", "expected_size"):
            if crash.get(key) is not None:
                crash[key] = 1 << 20
        if crash.get("build_id") is not None:
            crash["build_id"] = "<build-id>"
        crash["tid"] = data.get("tid")
        for frame in crash.get("frames") or []:
            for key in ("address", "offset", "module_offset"):
                if isinstance(frame, dict) and frame.get(key) is not None:
                    frame[key] = f"<{key}>"
        for stack in crash.get("stacks") or []:
            if isinstance(stack, dict):
                stack["tid"] = data.get("tid") if stack.get("crashing") else stack.get("tid")
                if isinstance(stack.get("error"), str):
                    stack["error"] = re.sub(r"0x[0-9a-f]+", "<address>", stack["error"])
                for frame in stack.get("frames") or []:
                    for key in ("pc", "module_offset"):
                        if isinstance(frame, dict) and frame.get(key) is not None:
                            frame[key] = f"<{key}>"
        if isinstance(crash.get("signature_chain"), str):
            # Frames without a name are module+offset, which moves with the code layout.
            crash["signature_chain"] = re.sub(r"\+0x[0-9a-f]+", "+<offset>", crash["signature_chain"])
        if crash.get("signature"):
            n = signatures.setdefault(crash["signature"], len(signatures) + 1)
            crash["signature"] = f"{n:x}" * 16
    for mapping in data.get("mappings") or []:
        if mapping.get("build_id") is not None:
            mapping["build_id"] = "<build-id>"
        mapping.pop("start", None)
    text = json.dumps(data).replace(crasher, "<crasher>")
    return json.loads(text)


def rename(record_path, fixed, signatures):
    old = record_path.name[:-len(".json")]
    data = normalise(json.loads(record_path.read_text()), signatures)
    data["id"] = fixed
    if data["core"].get("path"):
        data["core"]["path"] = data["core"]["path"].replace(old, fixed)
    folder = record_path.parent
    new_record = folder / f"{fixed}.json"
    new_record.write_text(json.dumps(data, indent=2) + "\n")
    st = record_path.stat()
    os.chown(new_record, st.st_uid, st.st_gid)
    os.chmod(new_record, st.st_mode & 0o7777)
    record_path.unlink()
    core = folder / f"{old}.core.zst"
    if core.exists():
        core.rename(folder / f"{fixed}.core.zst")
