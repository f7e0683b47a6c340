#!/usr/bin/env python3
"""Writes a synthetic store for the exporter benchmark: N records (same JSON schema as the
handler's, see common/store/record.cpp to_json) over many hosts and executables, half with a small
core file, plus a ledger. Deterministic for a given --seed.

    bench/gen_exporter_store.py STORE [--records 100000] [--hosts 50] [--exes 300]
                                [--ledger-series N]

--ledger-series N writes a ledger of N distinct retired series instead (N/200 hosts of 200
executables each, 4 signals × with/without core spread over them), for the exporter's start-up
memory with a large ledger.
"""
import argparse
import json
import os
import random
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--exes", type=int, default=300, help="distinct executables per host")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ledger-series", type=int, default=0,
                    help="write a ledger of this many distinct series instead")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    signals = [(11, "SEGV"), (6, "ABRT"), (3, "QUIT"), (7, "BUS")]
    now = int(time.time())
    os.makedirs(a.store, exist_ok=True)
    ledger = {}
    for i in range(a.records):
        h = f"host-{rnd.randrange(a.hosts):03d}"
        # Zipf-like: a few executables crash a lot, many rarely.
        e = int(rnd.paretovariate(1.2)) % a.exes
        exe = f"/usr/lib/app{e}/bin/service-{e}"
        signo, sname = rnd.choice(signals)
        rid = f"{rnd.getrandbits(64):016x}"
        t = now - rnd.randrange(30 * 86400)
        comp = exe.lstrip("/").replace("/", "!")
        d = os.path.join(a.store, h, comp)
        os.makedirs(d, exist_ok=True)
        has_core = i % 2 == 0
        rec = {
            "schema": 1, "id": rid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
            "hostname": h, "executable": exe, "executable_deleted": False, "signal": signo,
            "signal_name": sname, "pid": rnd.randrange(1, 4_000_000), "tid": None, "uid": 1000,
            "gid": 1000, "comm": f"service-{e}"[:15], "cmdline": f"{exe} --config /etc/app{e}.conf",
            "dump_mode": 1, "rlimit_core": None,
            "core": {"present": has_core, "reason": "stored" if has_core else "rate_limited",
                     "path": f"{h}/{comp}/{rid}.core.zst" if has_core else None, "size": 1 << 20,
                     "stored_size": 4096 if has_core else 0, "truncated": False, "expected_size": None,
                     "access": "owner", "compression": "zstd" if has_core else None},
            "store": {"host": h, "executable": comp},
            "handler": {"version": "0.1.0", "duration_ms": 12.5, "warnings": []},
            "crash": {"si_code": 1, "si_code_name": "SEGV_MAPERR", "fault_address": "0x0",
                      "pc": "0x401136", "threads": 4, "module": exe, "module_offset": "0x1136",
                      "signature": f"{rnd.getrandbits(64):016x}"},
        }
        with open(os.path.join(d, rid + ".json"), "w") as f:
            json.dump(rec, f, indent=2)
        if has_core:
            with open(os.path.join(d, rid + ".core.zst"), "wb") as f:
                f.write(b"\x28\xb5\x2f\xfd" + b"\0" * 60)
        if i % 20 == 0:  # some crashes already retired into the ledger
            key = (h, exe, sname, has_core)
            ledger[key] = ledger.get(key, 0) + 1
    if a.ledger_series:
        ledger = {}
        for n in range(a.ledger_series):
            # 200 executables per host (the default cap), the signal and core varying fastest.
            exe_no, variant = divmod(n, 8)
            host_no, exe_no = divmod(exe_no, 25)
            sname = signals[variant % 4][1]
            key = (f"node-{host_no:05d}", f"/usr/lib/app{exe_no}/bin/service-{variant // 2}",
                   sname, variant % 2 == 0)
            ledger[key] = 1 + n % 7
    with open(os.path.join(a.store, ".ledger.json"), "w") as f:
        json.dump({"schema": 1, "pending": [], "series": [
            {"hostname": k[0], "executable": k[1], "signal": k[2], "core_present": k[3], "count": v,
             "first": now - 40 * 86400, "last": now - 31 * 86400} for k, v in sorted(ledger.items())]}, f)


if __name__ == "__main__":
    main()
