"""The crash analysis (unwinding, symbols, signature v2) runs in a forked child under hard limits.

A child that fails for real (here: its memory limit, analysis_memory_limit, set to a few MiB, so
that libdw or the unwinder cannot allocate what they need) must cost the backtraces only: the
record is still written, with the crash site the scanner read from the notes, the v1 signature,
and handler.analysis saying why the backtraces are missing.

The core comes from the kernel (a file core_pattern for the duration, machine lock held): only
such a core carries the first page of each module, and with it the build-ids the unwinder needs.
"""
import pathlib

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

RECOMMENDED = ["-P{pid}", "-I{pid}", "-u1000", "-g1001", "-t1700000000",
               "-c18446744073709551615", "-d1", "--"]


def argv(pid):
    return [a.format(pid=pid) for a in RECOMMENDED] + ["web01", "11", "!usr!bin!crasher"]


def only(records):
    assert len(records) == 1, records
    return records[0]


allow_cores = pctest.allow_cores


@pytest.fixture(scope="module")
def kernel_core(crasher, tmp_path_factory):
    """A core of pc_crasher with four threads, written by the kernel to a file."""
    return pctest.kernel_file_core(crasher, tmp_path_factory.mktemp("kcore"), 4)


def test_analysis_child_fills_every_stack(run_handler, kernel_core):
    data, pid = kernel_core
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
    assert all(f["symbol"] for f in frames[:2]), frames
    assert len(stacks) == crash["threads"] >= 4
    assert not any("crash analysis failed" in w for w in r["handler"]["warnings"])


def walk(stacks):
    """Each thread's pcs, one per stack frame (inlined functions, from DWARF, share theirs)."""
    out = []
    for t in stacks:
        pcs = [f["pc"] for f in t["frames"]]
        out.append((t["tid"], [pc for i, pc in enumerate(pcs) if i == 0 or pcs[i - 1] != pc]))
    return out


def test_child_out_of_memory_keeps_the_scanner_facts(run_handler, kernel_core, store):
    data, pid = kernel_core
    _, good = run_handler(argv(pid), stdin=data)
    full = only(good)
    assert full["handler"]["analysis"] == "ok"
    # Whether a few MiB are enough depends on what the child inherits free in its heap: some of
    # these limits leave the analysis short, some do not. Each record must be right either way.
    failed = []
    for limit in ("1M", "2M", "4M", "8M", "16M"):
        before = {r["id"] for r in pctest.records(store)}
        proc, recs = run_handler(argv(pid), stdin=data, analysis_memory_limit=limit)
        assert proc.returncode == 0, proc.stderr
        r = only([x for x in recs if x["id"] not in before])
        reason = r["handler"]["analysis"]
        crash = r["crash"]
        # What the notes gave is all there, the same as with a full analysis.
        for key in ("pc", "sp", "module", "module_offset", "build_id", "si_signo", "threads"):
            assert crash[key] is not None and crash[key] == full["crash"][key], (limit, key)
        assert r["core"]["present"] and r["core"]["reason"] == "stored"
        assert pctest.zstd_decompress(pathlib.Path(store) / r["core"]["path"]) == data
        if reason == "ok":
            # Short of memory for a module's DWARF or debug file, the unwinder goes on with its
            # symbol tables and CFI: the walk is the same, names and lines may be fewer.
            assert walk(crash["stacks"]) == walk(full["crash"]["stacks"]), limit
            continue
        failed.append(limit)
        # Never a silent empty analysis: the child met its limit and the record says so.
        assert reason.startswith(("out of memory", "killed by")), (limit, reason)
        assert any(w.startswith(f"crash analysis failed ({reason})")
                   for w in r["handler"]["warnings"])
        assert crash["signature_version"] == 1 and crash["signature"]
        assert crash["signature"] != full["crash"]["signature"]
        assert crash["stacks"] == [] and crash["symbol"] is None
    assert failed, "no limit made the analysis child run out of memory"
