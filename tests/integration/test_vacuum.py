"""corectl vacuum against a ledger the store's owner made large: root's vacuum reads and
rewrites it as a stream, in memory that does not grow with the file."""
import json
import os
import pathlib
import subprocess
import sys

import corefixture
import pctest

# corectl vacuum on a small store takes about 12 MiB, streaming a 32 MiB ledger as well; read
# into a DOM, a ledger took ~35 times its size (1.15 GiB for 32 MiB).
MAX_RSS_KIB = 32 << 10


def big_ledger(path, series_bytes=16 << 20, junk_bytes=16 << 20):
    """A valid ledger of many small series (`series_bytes` of them) and an unknown key holding
    `junk_bytes` of zeros in one array: 32 MiB of what the store's owner may write."""
    series = []
    size = 0
    i = 0
    while size < series_bytes:
        s = {"hostname": f"h{i}", "executable": "/usr/bin/x", "signal": "SEGV",
             "core_present": True, "count": 1, "first": 1000 + i, "last": 1000 + i}
        size += len(json.dumps(s)) + 2
        series.append(s)
        i += 1
    with open(path, "w") as f:
        f.write('{"schema": 1, "future": [')
        f.write("0," * (junk_bytes // 2) + "0")
        f.write('], "series": ')
        json.dump(series, f)
        f.write(', "pending": []}\n')
    return len(series)


# Forks and execs argv, prints its max RSS (KiB), exits with its status. A fresh interpreter:
# the high-water mark of a child includes what it was between fork and exec, and the test's own
# process holds the ledger it generated.
MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(argv, env):
    """Runs argv; returns (exit status, stdout, max RSS of that process in KiB)."""
    r = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, env=env)
    return r.returncode, r.stdout, int(r.stderr.split()[-1])


def test_a_32_mib_ledger_is_read_in_bounded_memory(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() + "max_records = 3\n")
    ledger = store / ".ledger.json"
    n = big_ledger(ledger)
    assert ledger.stat().st_size >= 32 << 20
    env = dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(tmp_path / "cache"))
    rc, out, rss = run_measured([str(pctest.env_path("PC_CORECTL")), "--config", str(config),
                                 "vacuum"], env)
    assert rc == 0, out
    assert out.count(b"Retiring record") == 2, out
    assert rss < MAX_RSS_KIB, f"corectl vacuum used {rss} KiB reading a 32 MiB ledger"
    # Every series is still there, with the two retired crashes added; the unknown key is gone.
    after = json.loads(ledger.read_text())
    assert after["schema"] == 1 and after["pending"] == [] and "future" not in after
    assert sum(s["count"] for s in after["series"]) == n + 2
    assert len([s for s in after["series"] if s["hostname"].startswith("h")]) == n


def test_vacuum_aimed_by_filters_removes_only_those_cores(tmp_path):
    """`corectl vacuum` with filters or matches removes the cores of the crashes they select,
    whatever the quota, and keeps every record (marked removed): lists and counters stay."""
    store, config, _ = corefixture.build_store(tmp_path)
    cores_before = {p.name.removesuffix(".core.zst") for p in store.glob("*/*/*.core.zst")}
    app = {"c0ffee00a1b2c3d4", "7e57ab1e00000002", "c0ffee00b2c3d4e5"} & cores_before
    assert len(app) >= 2, cores_before
    corectl = str(pctest.env_path("PC_CORECTL"))
    env = dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(tmp_path / "cache"))

    def vacuum(*args):
        return subprocess.run([corectl, "--config", str(config), "vacuum", *args],
                              capture_output=True, text=True, env=env)

    r = vacuum("--dry-run", "--exe", "/usr/bin/app")
    assert r.returncode == 0, r.stderr
    assert sorted(l.split()[3] for l in r.stdout.splitlines() if l.startswith("Would remove core")) \
        == sorted(app), r.stdout
    assert {p.name.removesuffix(".core.zst") for p in store.glob("*/*/*.core.zst")} == cores_before
    # Aimed by signal and host too: only web1's SEGV cores of app.
    r = vacuum("--signal", "SEGV", "--host", "web1")
    assert r.returncode == 0, r.stderr
    web1 = {"c0ffee00a1b2c3d4", "7e57ab1e00000002"} & cores_before
    assert f"Removed 0 record(s) and {len(web1)} core(s)" in r.stdout, r.stdout
    left = {p.name.removesuffix(".core.zst") for p in store.glob("*/*/*.core.zst")}
    assert left == cores_before - web1
    records = {d["id"]: d for d in pctest.records(store)}
    assert len(records) == len(corefixture.CRASHES)
    assert all(records[i]["core"].get("removed") for i in web1)
    # An age: nothing older than a day before the fixture's crashes.
    r = vacuum("-U", "2025-11-21")
    assert r.returncode == 0 and "Removed 0 record(s) and 0 core(s)" in r.stdout, r.stdout
    r = vacuum("--signal", "NOPE")
    assert r.returncode == 2 and "unknown signal" in r.stderr
