"""The crash analysis (unwinding, symbols, signature v2) runs in a forked child under hard limits.

A child that fails for real (here: its address space limit, analysis_memory_limit, set below
what it already has mapped, so that libdw and the unwinder cannot allocate) must cost the
backtraces only: the record is still written, with the crash site the scanner read from the
notes, the v1 signature, and handler.analysis saying why the backtraces are missing.
"""
import pathlib

import pctest

RECOMMENDED = ["-P{pid}", "-I{pid}", "-u1000", "-g1001", "-t1700000000",
               "-c18446744073709551615", "-d1", "--"]


def argv(pid):
    return [a.format(pid=pid) for a in RECOMMENDED] + ["web01", "11", "!usr!bin!crasher"]


def only(records):
    assert len(records) == 1, records
    return records[0]


def test_analysis_child_fills_every_stack(run_handler, real_core):
    data, pid = real_core
    proc, recs = run_handler(argv(pid), stdin=data)
    assert proc.returncode == 0, proc.stderr
    r = only(recs)
    assert r["handler"]["analysis"] == "ok"
    crash = r["crash"]
    assert crash["signature_version"] == 2 and crash["signature_chain"]
    stacks = crash["stacks"]
    assert stacks and stacks[0]["crashing"]
    frames = stacks[0]["frames"]
    assert frames[0]["trust"] == "context" and frames[0]["pc"] == crash["pc"]
    assert any(f["trust"] == "cfi" for f in frames), frames
    assert any(f["symbol"] and f["symbol"]["name"] == "main" for f in frames), frames
    assert not any("crash analysis failed" in w for w in r["handler"]["warnings"])


def test_child_out_of_memory_keeps_the_scanner_facts(run_handler, real_core, store):
    data, pid = real_core
    _, good = run_handler(argv(pid), stdin=data)
    full = only(good)
    proc, recs = run_handler(argv(pid), stdin=data, analysis_memory_limit="1M")
    assert proc.returncode == 0, proc.stderr
    assert len(recs) == 2
    r = next(x for x in recs if x["id"] != full["id"])
    reason = r["handler"]["analysis"]
    # The child met its limit: bad_alloc in the unwinder, libdw's own exit, or a signal while
    # allocating; never "ok", never a silent empty analysis.
    assert reason.startswith(("out of memory", "killed by")), reason
    assert any(w.startswith(f"crash analysis failed ({reason})") for w in r["handler"]["warnings"])
    crash = r["crash"]
    # What the notes gave is all there, the same as with a full analysis.
    for key in ("pc", "sp", "module", "module_offset", "build_id", "si_signo", "threads"):
        assert crash[key] is not None and crash[key] == full["crash"][key], key
    assert crash["signature_version"] == 1 and crash["signature"]
    assert crash["stacks"] == []
    assert r["core"]["present"] and r["core"]["reason"] == "stored"
    assert pctest.zstd_decompress(pathlib.Path(store) / r["core"]["path"]) == data
