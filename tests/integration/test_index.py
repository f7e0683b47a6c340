"""The store's index (common/index): every corectl view is the same with the index, without it,
warm from it, and after it was deleted or damaged in the middle of a run; the index heals.

Stores: the one the real handler writes from real cores (corefixture) and one from the benchmark
generator (bench/gen_corectl_store.py). Directories are aged past the two seconds in which a
directory is never indexed (a change in the same timestamp tick would go unseen).
"""
import fcntl
import json
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import corefixture
import pctest

INDEX_DIR = ".index"
INDEX = f"{INDEX_DIR}/index.sqlite"

VIEWS = [
    ["list"],
    ["list", "--json"],
    ["list", "-r", "--since", "2025-10-15T00:00:00Z"],
    ["list", "--signal", "segv"],
    ["groups"],
    ["groups", "--json"],
]

# Every filter the index's query narrows by, and those left to corectl's own match (basenames,
# names, signature prefixes), alone and combined; values taken from the store itself.
def filter_views(store):
    first = json.loads(sorted(store.glob("*/*/*.json"))[0].read_text())
    host, exe, comm = first["hostname"], first["executable"], first["comm"]
    pid, uid, rid = first["pid"], first.get("uid"), first["id"]
    out = [
        ["list", "--host", host],
        ["list", "--exe", exe],
        ["list", "--exe", os.path.basename(exe)],
        ["list", exe],
        ["list", os.path.basename(exe)],
        ["list", f"COMM={comm}"],
        ["list", f"HOST={host}", "SIGNAL=ABRT"],
        ["list", "SIGNAL=SEGV", "--until", "2025-10-20"],
        ["list", "--since", "2025-10-10", "--until", "2025-10-20T12:00:00Z", "-n", "5"],
        ["list", str(pid)],
        ["list", f"ID={rid[:5]}"],
        ["list", rid[:9], rid[:8]],
        ["list", "SIGNATURE=0"],
        ["list", "--list-values=ids"],
        ["groups", "--host", host],
        ["groups", "SIGNAL=SEGV", "--json"],
        ["info", rid[:10]],
    ]
    if uid is not None:
        out.append(["list", f"UID={uid}", "--exe", exe])
    return out


def age_dirs(store, seconds=60):
    past = os.stat(store).st_mtime - seconds
    for d in list(store.glob("*/*")) + list(store.glob("*")):
        if d.is_dir() and not d.name.startswith("."):
            os.utime(d, (past, past), follow_symlinks=False)


def corectl(config, *args, index=True):
    env = dict(os.environ, TZ="UTC", NO_COLOR="1", CORECTL_CACHE="0",
               CORECTL_INDEX="1" if index else "0")
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args,
                        "--no-pager"], capture_output=True, env=env)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def views(config, store, index=True, filters=False):
    out = {}
    ids = []
    for args in VIEWS + (filter_views(store) if filters else []):
        code, stdout, stderr = corectl(config, *args, index=index)
        out[" ".join(args)] = (code, stdout)
        if args == ["list", "--json"]:
            ids = sorted(line.split('"id":')[1][:20] for line in stdout.splitlines()
                         if '"id":' in line)[:3]
    for rid in ids:
        rid = rid.strip(' "')[:12]
        out["info " + rid] = corectl(config, "info", rid, index=index)[:2]
    return out


def indexed_records(store):
    db = sqlite3.connect(f"file:{store / INDEX}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM records WHERE listed").fetchone()[0]
    finally:
        db.close()


def damage(store, how):
    path = store / INDEX
    for suffix in ("-wal", "-shm"):
        pathlib.Path(str(path) + suffix).unlink(missing_ok=True)
    if how == "deleted":
        shutil.rmtree(store / INDEX_DIR)
    elif how == "garbage":
        path.write_bytes(b"not a database" * 1000)
    elif how == "truncated":
        os.truncate(path, 4096 + 17)
    elif how == "symlink":
        target = store.parent / "elsewhere.sqlite"
        shutil.copy(path, target)
        path.unlink()
        path.symlink_to(target)
    elif how == "another_schema":
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
    elif how == "another_application":
        db = sqlite3.connect(path)
        db.execute("PRAGMA application_id = 7")
        db.commit()
        db.close()
    elif how == "wrong_owner":
        os.chown(path, 1, -1)
    elif how == "zero_rows":
        db = sqlite3.connect(path)
        db.execute("DELETE FROM records")  # states kept: only their rows lie
        db.commit()
        db.close()


@pytest.fixture(scope="module", params=["real", "generated"])
def store(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"index-{request.param}")
    if request.param == "real":
        store, config, _ = corefixture.build_store(base)
        # Only the store's owner writes the index; the handler's runs are over.
        os.chown(store, os.geteuid(), -1)
    else:
        store = base / "store"
        gen = pathlib.Path(os.environ["PC_SOURCE_DIR"]) / "bench" / "gen_corectl_store.py"
        subprocess.run([sys.executable, str(gen), str(store), "3000"], check=True,
                       stdout=subprocess.DEVNULL)
        config = pctest.write_config(base / "corectl.conf", store)
    age_dirs(store)
    return store, config


def test_views_identical_with_without_and_warm(store):
    store, config = store
    shutil.rmtree(store / INDEX_DIR, ignore_errors=True)
    files = views(config, store, index=False, filters=True)
    assert not (store / INDEX_DIR).exists()  # CORECTL_INDEX=0 leaves the store alone
    cold = views(config, store, filters=True)
    assert (store / INDEX).exists()
    assert indexed_records(store) > 0
    warm = views(config, store, filters=True)
    assert cold == files
    assert warm == files
    mode = os.stat(store / INDEX).st_mode & 0o777
    assert mode == 0o640  # readable like records: the store's owner and its group


@pytest.mark.parametrize("how", ["deleted", "garbage", "truncated", "symlink", "another_schema",
                                 "another_application", "wrong_owner"])
def test_damaged_index_is_rebuilt_never_trusted(store, how):
    store, config = store
    if how == "wrong_owner" and os.geteuid() != 0:
        pytest.skip("needs root to give the index another owner")
    files = views(config, store, index=False)
    views(config, store)  # the index is current
    damage(store, how)
    code, _, stderr = corectl(config, "list")
    assert code == 0
    if how != "deleted":
        assert "rebuilding the store's index" in stderr  # one line says why
    assert views(config, store) == files
    assert not (store / INDEX).is_symlink()
    assert indexed_records(store) > 0  # healed


def test_changed_directories_are_rescanned(store):
    store, config = store
    views(config, store)
    # A crash arrives (the handler's way: a new record renamed into place) and another is
    # removed after the index was written: only their directories' states differ.
    records = sorted(store.glob("*/*/*.json"))
    victim, source = records[0], records[-1]
    victim.unlink()
    for core in victim.parent.glob(victim.name.replace(".json", ".core.zst")):
        core.unlink()
    text = source.read_text()
    old_id = source.name[:-len(".json")]
    new_id = "abcdef0123456789"
    tmp = source.parent / f".#{new_id}.tmp"
    tmp.write_text(text.replace(old_id, new_id))
    tmp.rename(source.parent / f"{new_id}.json")
    files = views(config, store, index=False)
    assert views(config, store) == files
    age_dirs(store)
    assert views(config, store) == files  # and once indexed again


def test_a_reader_who_cannot_write_reads_and_rescans_in_memory(store):
    store, config = store
    if os.geteuid() != 0:
        pytest.skip("needs root to run corectl as another user than the store's owner")
    views(config, store)
    records = sorted(store.glob("*/*/*.json"))
    records[0].unlink()  # the index is now stale for that directory
    before = (store / INDEX).stat().st_mtime_ns
    files = views(config, store, index=False)
    # Another owner for the store: root no longer owns it, so it only reads the index.
    owned = [store, store / INDEX_DIR] + list((store / INDEX_DIR).iterdir())
    for p in owned:
        os.chown(p, 1, -1)
    try:
        assert views(config, store) == files
        assert (store / INDEX).stat().st_mtime_ns == before
    finally:
        for p in owned:
            os.chown(p, 0, -1)


def stored_entries(store, d):
    db = sqlite3.connect(f"file:{store / INDEX}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT entries FROM dirs WHERE host = ? AND exe = ?",
                         (d.parent.name, d.name)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def rewrite_in_place(record, **fields):
    data = json.loads(record.read_text())
    data.update(fields)
    with open(record, "r+") as f:  # the same inode: the directory does not change
        f.write(json.dumps(data, indent=2) + "\n")
        f.truncate()


def put_back_mtime(d, st):
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def test_only_directories_whose_state_changed_are_read_again(store):
    """The index answers for a directory while its inode, mtime and entry count are what it
    recorded, even when a record was edited in place (the handler never does that); a change of
    any of the three has the directory read from the files again."""
    store, config = store
    age_dirs(store)
    views(config, store)
    record = sorted(store.glob("*/*/*.json"))[0]
    d, rid = record.parent, record.name[:-len(".json")]
    original = record.read_text()
    old_pid = json.loads(original)["pid"]
    st = os.stat(d)

    def shows(pid, index=True):
        code, out, _ = corectl(config, "list", f"ID={rid}", index=index)
        assert code == 0
        return re.search(rf"\s{pid}\s", out.splitlines()[1] + " ") is not None

    try:
        rewrite_in_place(record, pid=4242424)
        put_back_mtime(d, st)
        assert shows(4242424, index=False)
        assert shows(old_pid) and not shows(4242424)  # the same state: not read again
        # One name more with the mtime put back: the entry count differs.
        stray = d / ".#stray"
        stray.write_text("")
        put_back_mtime(d, st)
        assert shows(4242424)
        stray.unlink()
        # The same names and mtime in another directory (another inode).
        rewrite_in_place(record, pid=5353535)
        age_dirs(store)
        views(config, store)
        st = os.stat(d)
        rewrite_in_place(record, pid=6464646)
        moved = d.with_name(d.name + ".old")
        d.rename(moved)
        shutil.copytree(moved, d, symlinks=True)
        shutil.rmtree(moved)
        put_back_mtime(d, st)
        assert os.stat(d).st_ino != st.st_ino
        assert shows(6464646)
    finally:
        rewrite_in_place(record, **json.loads(original))
        age_dirs(store)


def test_a_writer_holding_the_lock_leaves_readers_reading(store):
    """While another writer (the exporter) holds the lock, the store's owner reads the index and
    the files of what changed, and writes nothing."""
    store, config = store
    age_dirs(store)
    views(config, store)
    d = sorted(store.glob("*/*/*.json"))[0].parent
    stray = d / ".#held"
    with open(store / INDEX_DIR / "writer.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = stored_entries(store, d)
        stray.write_text("")
        age_dirs(store)
        files = views(config, store, index=False)
        assert views(config, store) == files
        assert stored_entries(store, d) == before
    try:
        assert views(config, store) == files
        assert stored_entries(store, d) == before + 1  # written once the lock was free
    finally:
        stray.unlink()
        age_dirs(store)


def test_index_damaged_while_corectl_runs(store):
    """Each run of corectl list and groups, while the index is deleted and damaged under it
    (and rebuilt by the runs themselves), shows what the files say."""
    store, config = store
    age_dirs(store)
    want = {verb: corectl(config, verb, index=False)[:2] for verb in ("list", "groups")}
    views(config, store)
    seen = []
    stop = threading.Event()

    def run():
        while not stop.is_set():
            for verb in ("list", "groups"):
                seen.append((verb, corectl(config, verb)[:2]))

    reader = threading.Thread(target=run)
    reader.start()
    try:
        # Each kind of damage twice, and on until the reader has run at least four times under
        # it (a loaded machine runs corectl slowly).
        hows = ["garbage", "deleted", "truncated", "another_schema", "symlink"]
        deadline = time.monotonic() + 300
        i = 0
        while (i < 2 * len(hows) or len(seen) < 4) and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                damage(store, hows[i % len(hows)])
            except (OSError, sqlite3.Error):
                pass  # a run was rebuilding it at that moment
            i += 1
    finally:
        stop.set()
        reader.join()
    assert len(seen) >= 4
    for verb, got in seen:
        assert got == want[verb], verb
    # It heals: the next run as the owner rebuilds what is left.
    corectl(config, "list")
    corectl(config, "list")
    assert indexed_records(store) > 0


def test_vacuum_and_the_index_agree_on_what_it_retired(store, tmp_path):
    """After a vacuum that retires records, every view is what the files say; the directories it
    emptied leave the index at once, those it changed are read again (their state differs) and
    indexed by the next run once they are old enough."""
    store, _ = store
    copy = tmp_path / "store"
    shutil.copytree(store, copy, symlinks=True)
    shutil.rmtree(copy / INDEX_DIR, ignore_errors=True)
    age_dirs(copy)
    config = pctest.write_config(tmp_path / "vacuum.conf", copy, max_records=5)
    corectl(config, "list")
    assert indexed_records(copy) == len(list(copy.glob("*/*/*.json")))
    code, _, stderr = corectl(config, "vacuum")
    assert code == 0, stderr
    left = len(list(copy.glob("*/*/*.json")))
    assert left <= 5
    assert views(config, copy) == views(config, copy, index=False)
    age_dirs(copy)
    corectl(config, "list")
    assert indexed_records(copy) == left
