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


def allocated(path):
    return path.stat().st_blocks * 512 if path.exists() else 0


def test_cores_still_to_upload_go_last_and_say_so(tmp_path):
    """With upload configured, vacuum takes the cores already uploaded (or that the policy never
    sends) before any core still to upload; one of those goes only when the quota leaves no
    choice, and its record then says so."""
    store, config, _ = corefixture.build_store(tmp_path)
    state = tmp_path / "upload-state"
    state.mkdir()
    records = {d["id"]: pathlib.Path(d["_path"]) for d in pctest.records(store)}
    cores = {i: p.with_name(i + ".core.zst") for i, p in records.items()}
    cores = {i: p for i, p in cores.items() if p.exists()}
    pending = {"c0ffee00a1b2c3d4", "7e57ab1e00000002"}  # the oldest, the default order's first
    privileged = "0123456789abcdef"  # root's core: not sent with upload_privileged_cores = no
    assert pending | {privileged} <= set(cores), cores
    doc = json.loads(records[privileged].read_text())
    doc["core"]["access"] = "root"  # as a setuid program's core is
    records[privileged].write_text(json.dumps(doc))
    assert all(json.loads(records[i].read_text())["core"]["access"] == "owner" for i in pending)
    uploaded = set(cores) - pending - {privileged}
    assert uploaded, cores
    for i in uploaded:
        (state / f"{i}.json").write_text(json.dumps({"id": i, "record_done": True, "core": "done"}))
    # A broken state and a symbolic link in the uploader's directory count as "not uploaded".
    (state / "c0ffee00a1b2c3d4.json").write_text('{"record_done": true, "core": "do')
    (state / "elsewhere.json").write_text(json.dumps({"record_done": True, "core": "done"}))
    (state / "7e57ab1e00000002.json").symlink_to(state / "elsewhere.json")

    def image(i):
        return allocated(cores[i]) + allocated(cores[i].with_name(i + ".report"))

    total = sum(allocated(p) for p in records.values()) + sum(image(i) for i in cores)
    spared = set(cores) - pending  # uploaded or never to be
    base = pathlib.Path(config).read_text() + "keep_free = 0\n"
    corectl = str(pctest.env_path("PC_CORECTL"))
    env = dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(tmp_path / "cache"))

    def vacuum(max_use, upload=True, dry=True):
        keys = f"max_use = {max_use}\n"
        if upload:
            keys += f"upload_url = s3://bucket/fleet\nupload_state_dir = {state}\n"
        pathlib.Path(config).write_text(base + keys)
        r = subprocess.run([corectl, "--config", str(config), "vacuum"] + (["--dry-run"] * dry),
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        verb = "Would remove core" if dry else "Removing core"
        return {l.split()[len(verb.split())]: l.endswith("(before it was uploaded)")
                for l in r.stdout.splitlines() if l.startswith(verb)}

    # Exactly the spared cores' bytes to free: without upload the plain order takes the oldest
    # core of the app's two first (so this test can tell), with it only the spared ones go.
    limit = total - sum(image(i) for i in spared)
    assert "c0ffee00a1b2c3d4" in vacuum(limit, upload=False)
    assert vacuum(limit) == {i: False for i in spared}
    # One byte less: a pending core must go too, the oldest of the two, and is said so.
    assert vacuum(limit - 1) == {**{i: False for i in spared}, "c0ffee00a1b2c3d4": True}
    assert vacuum(limit - 1, dry=False) == {**{i: False for i in spared}, "c0ffee00a1b2c3d4": True}
    after = {d["id"]: d for d in pctest.records(store)}
    assert len(after) == len(records)  # every record kept
    assert after["c0ffee00a1b2c3d4"]["core"]["removed"]
    assert after["c0ffee00a1b2c3d4"]["core"]["removed_before_upload"] is True
    for i in spared:
        assert after[i]["core"]["removed"] and "removed_before_upload" not in after[i]["core"]
    assert cores["7e57ab1e00000002"].exists()
    # corectl info says it too.
    r = subprocess.run([corectl, "--config", str(config), "info", "c0ffee00a1b2c3d4"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "before it was uploaded" in r.stdout, r.stdout + r.stderr


def test_records_still_to_upload_outlive_max_records(tmp_path):
    """max_records retires the oldest records, but not one the uploader has still to send."""
    store, config, _ = corefixture.build_store(tmp_path)
    state = tmp_path / "upload-state"
    state.mkdir()
    ids = sorted(d["id"] for d in pctest.records(store))
    for i in set(ids) - {"c0ffee00a1b2c3d4"}:  # the oldest crash is not uploaded yet
        (state / f"{i}.json").write_text(json.dumps({"id": i, "record_done": True, "core": "done"}))
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() + "max_records = 3\n"
                                    f"upload_url = s3://bucket/fleet\nupload_state_dir = {state}\n")
    env = dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), "vacuum"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    retired = [l.split()[2] for l in r.stdout.splitlines() if l.startswith("Retiring record")]
    # Of the two oldest, only the uploaded one goes, and no newer record in the other's place.
    assert retired == ["7e57ab1e00000002"], r.stdout
    assert "c0ffee00a1b2c3d4" in {d["id"] for d in pctest.records(store)}
