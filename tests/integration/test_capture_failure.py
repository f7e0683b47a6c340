"""A capture that fails with an exception still ends in bounded time with a record.

The handler runs with RLIMIT_NPROC at 1 (counted for the store user it drops to, or for the
test's user): the capture's reading thread cannot be created, std::thread throws, and the
exception must reach the handler's catch boundary (never std::terminate, never a hang on a
thread that does not exist), which writes the record and the log line.
"""
import resource
import subprocess
import time

import corefixture
import pctest

ARGS = ["-P4242", "-I4242", "-u1000", "-g1000", "-t1700000000", "-c18446744073709551615", "-d1",
        "--", "web01", "11", "!usr!bin!app"]


def one_thread_only():
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))


def test_an_exception_in_the_capture_still_writes_the_record(handler, tmp_path, store):
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    start = time.monotonic()
    proc = subprocess.run([str(handler), "--config", str(conf), *ARGS], input=corefixture.elf_core(),
                          capture_output=True, timeout=60, preexec_fn=one_thread_only)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert took < 10
    records = pctest.records(store)
    assert len(records) == 1
    r = records[0]
    assert (r["hostname"], r["executable"], r["signal"], r["pid"]) == ("web01", "/usr/bin/app", 11, 4242)
    assert not r["core"]["present"] and r["core"]["reason"] == "error"
    assert r["core"]["error"].startswith("internal error: ")
    assert any(w.startswith("internal error: ") for w in r["handler"]["warnings"])
    # No temporary core file is left behind by the capture that failed.
    assert sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file()
                  and p.name != ".usage") == [f"{r['id']}.json"]
