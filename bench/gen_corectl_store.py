#!/usr/bin/env python3
"""Writes a store of N records in the handler's JSON schema (no cores) for corectl benchmarks.

usage: gen_corectl_store.py STORE [N]
50 hosts x 40 executables; every third record carries a crash section with 8 frames, as the
crash scanner writes them, so record sizes (1-3 KiB) are realistic.
"""
import json
import os
import random
import sys

store, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
rng = random.Random(42)
hosts = [f"host{i:02d}.example.net" for i in range(50)]
exes = [f"/usr/lib/service{i:02d}/bin/daemon{i:02d}" for i in range(40)]
signals = [(11, "SEGV"), (6, "ABRT"), (7, "BUS"), (8, "FPE")]
base = 1_760_000_000
for k in range(n):
    host, exe = rng.choice(hosts), rng.choice(exes)
    signo, name = rng.choice(signals)
    rid = "%016x" % rng.getrandbits(64)
    t = base + rng.randrange(30 * 86400)
    hdir, edir = host, exe.lstrip("/").replace("/", "!")
    stored = rng.random() < 0.7
    rec = {
        "schema": 1, "id": rid,
        "time": __import__("time").strftime("%Y-%m-%dT%H:%M:%SZ", __import__("time").gmtime(t)),
        "hostname": host, "executable": exe, "executable_deleted": False,
        "signal": signo, "signal_name": name, "pid": rng.randrange(1, 4_000_000),
        "tid": None, "uid": 1000, "gid": 1000, "comm": os.path.basename(exe)[:15],
        "cmdline": exe + " --config /etc/" + os.path.basename(exe) + ".conf",
        "dump_mode": 1, "rlimit_core": 18446744073709551615,
        "core": {"present": stored, "reason": "stored" if stored else "rate_limited",
                 "path": f"{hdir}/{edir}/{rid}.core.zst" if stored else None,
                 "size": rng.randrange(1 << 20, 1 << 30), "stored_size": rng.randrange(1 << 16, 1 << 24),
                 "truncated": False, "expected_size": None, "access": "owner",
                 "compression": "zstd" if stored else None},
        "store": {"host": hdir, "executable": edir},
        "handler": {"version": "0.1.0", "duration_ms": 12.5, "warnings": []},
    }
    if k % 3 == 0:
        sig = "%016x" % (hash((exe, signo)) & (2**64 - 1))
        rec["crash"] = {
            "si_code": 1, "si_code_name": "SEGV_MAPERR", "fault_address": "0x0", "pc": "0x7f0012345678",
            "module": exe, "module_offset": "0x1234", "build_id": "%040x" % rng.getrandbits(160),
            "symbol": "crash_here", "signature": sig, "threads": 12,
            "frames": [{"address": "0x7f00123456%02x" % f, "module": exe, "offset": "0x12%02x" % f,
                        "symbol": f"frame_function_{f}"} for f in range(8)],
        }
    d = os.path.join(store, hdir, edir)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, rid + ".json"), "w") as f:
        json.dump(rec, f, indent=2)
        f.write("\n")
