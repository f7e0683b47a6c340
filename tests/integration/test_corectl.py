"""corectl against a store written by the real handler (tests/lib/corefixture.py).

Golden files live in tests/golden/corectl_*.txt; after an intended change of the output (or of
what the handler records), regenerate them with PC_UPDATE_GOLDEN=1 and review the diff.
"""
import json
import os
import pathlib
import subprocess
import time

import pytest

import corefixture
import pctest

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden"


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    global CACHE_HOME
    CACHE_HOME = str(tmp_path_factory.mktemp("cache"))
    base = tmp_path_factory.mktemp("corectl")
    store, config, sent = corefixture.build_store(base)
    return store, config, sent


CACHE_HOME = None


def corectl(config, *args, input=None, check=False, env=None):
    # A private summary cache (never the tester's ~/.cache).
    full_env = dict(os.environ, TZ="UTC", NO_COLOR="", XDG_CACHE_HOME=CACHE_HOME or "/nonexistent")
    full_env.update(env or {})
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args],
                          input=input, capture_output=True, check=check, env=full_env)


def golden(name, text, store):
    # The fixture store lives in a fresh temporary directory: its path is the one varying part.
    text = text.replace(str(store), "<store>")
    path = GOLDEN / f"corectl_{name}.txt"
    if os.environ.get("PC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path} (PC_UPDATE_GOLDEN=1 to update)"


@pytest.mark.parametrize("name,args", [
    ("list", ["list"]),
    ("list_filtered", ["list", "--exe", "app", "--signal", "segv", "-n", "1"]),
    ("list_since", ["list", "--since", "2025-11-22T03:00:00Z", "-r"]),
    ("list_host", ["list", "--host", "web2"]),
    ("groups", ["groups"]),
    ("info", ["info", "c0ffee00a", "0123", "fedc"]),
])
def test_golden(fixture, name, args):
    store, config, _ = fixture
    r = corectl(config, *args)
    assert r.returncode == 0, r.stderr
    golden(name, r.stdout.decode(), store)


def test_json_is_the_record_schema(fixture):
    store, config, _ = fixture
    r = corectl(config, "list", "--json", check=True)
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(corefixture.CRASHES)
    on_disk = {d["id"]: d for d in pctest.records(store)}
    for line in lines:
        rec = json.loads(line)
        disk = on_disk[rec["id"]]
        disk.pop("_path")
        assert rec == disk
    info = corectl(config, "info", "--json", "0123456789abcdef", check=True)
    assert json.loads(info.stdout)["id"] == "0123456789abcdef"
    groups = [json.loads(l) for l in corectl(config, "groups", "--json", check=True).stdout.splitlines()]
    assert sum(g["count"] for g in groups) == len(corefixture.CRASHES)
    assert groups[0]["grouped_by"] == "signature" and groups[0]["signature"] == "5a1e5a1e5a1e5a1e"
    assert groups[0]["count"] == 2
    # The non-ELF core has no crash section: grouped by executable + signal, and labelled so.
    fallback = [g for g in groups if g["grouped_by"] == "executable+signal"]
    assert len(fallback) == 1 and fallback[0]["signature"] is None
    assert fallback[0]["executables"] == ["/tmp/evil"]


def test_hostile_names_never_reach_the_terminal_raw(fixture):
    _, config, _ = fixture
    out = corectl(config, "list", check=True).stdout
    assert b"\x1b" not in out and b"evil\\x1b[31mred" in out


def test_id_errors(fixture):
    _, config, _ = fixture
    r = corectl(config, "info", "c0ffee00")
    assert r.returncode == 2 and b"ambiguous" in r.stderr
    assert b"c0ffee00a1b2c3d4" in r.stderr and b"c0ffee00b2c3d4e5" in r.stderr
    r = corectl(config, "info", "99")
    assert r.returncode == 3 and b"No record" in r.stderr
    r = corectl(config, "info", "xyz")
    assert r.returncode == 2
    r = corectl(config, "list", "--store", "/nonexistent/store")
    assert r.returncode == 5 and b"does not exist" in r.stderr
    r = corectl(config, "list", "--since", "yesterdayish")
    assert r.returncode == 2


def test_dump_is_byte_identical(fixture, tmp_path):
    _, config, sent = fixture
    for fixed in ("c0ffee00a1b2c3d4", "7e57ab1e00000002", "fedcba9876543210"):
        r = corectl(config, "dump", fixed[:10], check=True)
        assert r.stdout == sent[fixed]
        out = tmp_path / f"{fixed}.core"
        corectl(config, "dump", fixed, "-o", str(out), check=True)
        assert out.read_bytes() == sent[fixed]
        assert out.stat().st_mode & 0o777 == 0o600
    # A truncated core dumps what was stored (its first max_core_size bytes), with a note.
    r = corectl(config, "dump", "0123456789abcdef", check=True)
    assert r.stdout == sent["0123456789abcdef"][:4096] and b"truncated" in r.stderr
    # No core: says why.
    r = corectl(config, "dump", "c0ffee00b")
    assert r.returncode == 1 and b"rlimit" in r.stderr


def test_dump_reports_corruption(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    core = next(store.glob("web1/*/c0ffee00a1b2c3d4.core.zst"))
    data = bytearray(core.read_bytes())
    data[len(data) // 2] ^= 0xFF
    core.write_bytes(bytes(data))
    out = tmp_path / "out.core"
    r = corectl(config, "dump", "c0ffee00a", "-o", str(out))
    assert r.returncode == 1 and b"corrupted" in r.stderr, r.stderr
    assert not out.exists()


def test_unreadable_store_is_an_error_not_an_empty_list(fixture):
    if not pctest.is_root():
        pytest.skip("needs root to run corectl as another user")
    store, config, _ = fixture
    # The store's directories are 0750 and owned by the store user: a third user may not read.
    r = subprocess.run(["setpriv", "--reuid=12345", "--regid=12345", "--clear-groups",
                        str(pctest.env_path("PC_CORECTL")), "--store", str(store), "list"],
                       capture_output=True)
    assert r.returncode == 4 and b"Permission denied" in r.stderr, r.stderr


def fake_proc(base, pattern="core"):
    proc = pathlib.Path(base) / "proc"
    (proc / "kernel").mkdir(parents=True)
    (proc / "fs").mkdir()
    (proc / "kernel" / "core_pattern").write_text(pattern + "\n")
    (proc / "kernel" / "core_pipe_limit").write_text("0\n")
    (proc / "fs" / "suid_dumpable").write_text("0\n")
    return proc


def test_install_on_a_fake_proc_tree(tmp_path):
    proc = fake_proc(tmp_path, "|/usr/share/apport/apport -p%p -s%s -c%c")
    handler = pctest.env_path("PC_HANDLER")
    args = ["--handler", str(handler), "--sysctl-dir", str(tmp_path / "sysctl.d"),
            "--state-dir", str(tmp_path / "state"), "--proc-sys", str(proc)]
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "install", "--kernel-release",
                        "6.1.0-28-amd64", *args], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert b"older than 6.16" in r.stdout
    pattern = (proc / "kernel" / "core_pattern").read_text().strip()
    assert pattern == f"|{handler} -P%P -I%I -u%u -g%g -t%t -c%c -d%d -- %h %s %E"
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "uninstall", *args], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == "|/usr/share/apport/apport -p%p -s%s -c%c"
    assert (proc / "kernel" / "core_pipe_limit").read_text().strip() == "0"
    assert not (tmp_path / "sysctl.d" / "50-process-core.conf").exists()


def test_install_refuses_a_pattern_the_kernel_would_cut(tmp_path):
    proc = fake_proc(tmp_path)
    long_dir = tmp_path / ("d" * 80)
    long_dir.mkdir()
    handler = long_dir / "process-core"
    handler.write_bytes(pctest.env_path("PC_HANDLER").read_bytes())
    handler.chmod(0o755)
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "install", "--handler", str(handler),
                        "--sysctl-dir", str(tmp_path / "s"), "--state-dir", str(tmp_path / "st"),
                        "--proc-sys", str(proc)], capture_output=True)
    assert r.returncode == 1 and b"127" in r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == "core"


def backdate(store, seconds=3600):
    past = time.time() - seconds
    for d in [store, *store.glob("*"), *store.glob("*/*")]:
        os.utime(d, (past, past))


def test_summary_cache_follows_the_store(tmp_path):
    global CACHE_HOME
    CACHE_HOME = str(tmp_path / "cache")
    (tmp_path / "s").mkdir()
    store, config, _ = corefixture.build_store(tmp_path / "s")
    backdate(store)
    first = corectl(config, "list", check=True).stdout
    assert list((tmp_path / "cache" / "process-core").glob("corectl-*")), "no cache written"
    assert corectl(config, "list", check=True).stdout == first
    # A new crash in a cached directory shows up (the directory's mtime changed).
    handler = pctest.env_path("PC_HANDLER")
    subprocess.run([str(handler), "--config", str(config), "-t1763790000", "--", "web1", "11",
                    "!usr!bin!app"], input=corefixture.elf_core(), check=True)
    assert len(corectl(config, "list", check=True).stdout.splitlines()) == len(first.splitlines()) + 1
    # Removing a record (another directory changes too) is seen as well.
    next(store.glob("db1/*/0123456789abcdef.json")).unlink()
    assert b"0123456" not in corectl(config, "list", check=True).stdout


def test_vacuum_removes_cores_keeps_records(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() + "max_use = 300\nkeep_free = 0\n")
    r = corectl(config, "vacuum", "--dry-run", check=True)
    assert b"Would remove core" in r.stdout
    assert len(list(store.glob("*/*/*.core.zst"))) == 4
    r = corectl(config, "vacuum", check=True)
    out = r.stdout.decode()
    # web1/app has two cores: its oldest goes first, before any one-off core.
    assert out.splitlines()[0].startswith("Removing core c0ffee00a1b2c3d4"), out
    recs = {d["id"]: d for d in pctest.records(store)}
    assert len(recs) == len(corefixture.CRASHES)  # records are kept
    gone = [i for i, d in recs.items() if d["core"].get("removed")]
    assert gone and all(recs[i]["core"]["present"] for i in gone)
    assert not any(list(store.glob(f"*/*/{i}.core.zst")) for i in gone)
    listing = corectl(config, "list", check=True).stdout.decode()
    assert "removed" in listing
    r = corectl(config, "dump", gone[0])
    assert r.returncode == 1 and b"removed by retention" in r.stderr


def test_vacuum_retires_records_through_the_ledger(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() + "max_records = 3\n")
    r = corectl(config, "vacuum", check=True)
    assert r.stdout.count(b"Retiring record") == 2, r.stdout
    assert len(pctest.records(store)) == 3
    ledger = json.loads((store / ".ledger.json").read_text())
    assert ledger, "the ledger keeps the retired crashes counted"
