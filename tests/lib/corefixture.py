"""A deterministic store for corectl's golden tests, written by the real handler.

Every crash is fed to $PC_HANDLER exactly as the kernel would (argv + a core on stdin, a fixed
`-t` time). The handler picks random ids and measures its own duration, so afterwards each record
is renamed to a fixed id (files and `id`/`core.path` inside) and `handler.duration_ms` /
`handler.version` are pinned. Nothing else is touched, except that two records get a `crash`
section and `mappings` in the documented schema (marked AUGMENTED below), so that rendering of
crash sites and grouping by signature are covered before the scanner (issue 3) fills them itself.
"""
import json
import os
import pathlib
import struct
import subprocess

import pctest

BASE_TIME = 1763780000  # 2025-11-22T02:53:20Z


def elf_core(signo=11, pid=4242, rip=0x401136, fault=0, payload=b"process-core fixture " * 200):
    """A small but well-formed x86_64 ELF core: PT_NOTE (prstatus, prpsinfo, siginfo) + PT_LOAD."""
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


# (fixed id, hostname, %E, signal, time offset, extra handler args, config keys, core)
CRASHES = [
    ("c0ffee00a1b2c3d4", "web1", "!usr!bin!app", 11, 0, ["-P5000001", "-u1000", "-g1000"], {}, "elf"),
    ("7e57ab1e00000002", "web1", "!usr!bin!app", 11, 60, ["-P5000002", "-u1000", "-g1000"], {}, "elf"),
    ("c0ffee00b2c3d4e5", "web2", "!usr!bin!app", 6, 120, ["-P5000003", "-u1000", "-g1000", "-c0"], {}, "elf"),
    ("0123456789abcdef", "db1", "!opt!db!bin!dbd", 11, 3600, ["-P5000004", "-u0", "-g0"], {"max_core_size": "4096"}, "elf"),
    ("fedcba9876543210", "evil\x1b[31mred", "!tmp!evil (deleted)", 8, 7200, ["-P5000005", "-u1001", "-g1001"], {}, "text"),
]

AUGMENTED_CRASH = {
    "si_code": 1,
    "si_code_name": "SEGV_MAPERR",
    "fault_address": "0x0",
    "pc": "0x401136",
    "sp": "0x7ffc0000",
    "module": "/usr/bin/app",
    "module_offset": "0x1136",
    "build_id": "3f2a9c5d0e1b4a7f8c6d2e9b1a0f3c4d5e6f7a8b",
    "symbol": "pc_crash_null_write",
    "signature": "5a1e5a1e5a1e5a1e",
    "threads": 4,
    "frames": [
        {"address": "0x401136", "module": "/usr/bin/app", "offset": "0x1136", "symbol": "pc_crash_null_write"},
        {"address": "0x401200", "module": "/usr/bin/app", "offset": "0x1200", "symbol": "main"},
    ],
}
AUGMENTED_MAPPINGS = [
    {"path": "/usr/lib/libjson.so.2", "build_id": "aa11bb22", "findings": ["modified after the process started"]},
]


def fixture_core(kind, signo):
    return elf_core(signo=signo) if kind == "elf" else b"this is not an ELF core\n" * 50


def build_store(base):
    """Builds the fixture store under `base`; returns (store, config path, {id: core bytes sent})."""
    base = pathlib.Path(base)
    store = pctest.make_store(base)
    handler = pctest.env_path("PC_HANDLER")
    sent = {}
    for fixed, host, exe, signo, offset, extra, keys, kind in CRASHES:
        config = pctest.write_config(base / f"{fixed}.conf", store, **keys)
        core = fixture_core(kind, signo)
        before = {p.name for p in store.glob("*/*/*.json")}
        subprocess.run([str(handler), "--config", str(config), *extra, f"-t{BASE_TIME + offset}",
                        "-d1", "--", host, str(signo), exe], input=core, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new = [p for p in store.glob("*/*/*.json") if p.name not in before]
        assert len(new) == 1, f"the handler wrote {len(new)} records for {fixed}"
        rename(new[0], fixed)
        sent[fixed] = core
    # The store's config for corectl (no per-crash keys).
    return store, pctest.write_config(base / "corectl.conf", store), sent


def rename(record_path, fixed):
    old = record_path.name[:-len(".json")]
    data = json.loads(record_path.read_text())
    data["id"] = fixed
    data["handler"]["duration_ms"] = 0
    data["handler"]["version"] = "0.0.0-fixture"
    if data["core"].get("path"):
        data["core"]["path"] = data["core"]["path"].replace(old, fixed)
    if fixed in ("c0ffee00a1b2c3d4", "7e57ab1e00000002"):  # AUGMENTED
        data["crash"] = AUGMENTED_CRASH
        data["mappings"] = AUGMENTED_MAPPINGS
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
