"""process-core-exporter and the store's index (common/index): it starts from the index's rows for
unchanged directories and keeps the index current while it runs. /metrics is the same with the
index, without it (--no-store.index) and after any fault: the index deleted or damaged in the
middle of a run, the exporter killed in the middle of a rebuild, the disk full, two exporters on
one store, corectl reading while the exporter writes. Counters never decrease, the index heals.

Stores come from the benchmark's generator (bench/gen_exporter_store.py) with hostile entries
added, owned by the test's user so that the exporter may write their index; the one the real
handler fills belongs to `nobody`, and the exporter then runs as `nobody`. Directories are aged
past the two seconds in which a directory is never indexed.
"""
import os
import pathlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

import pctest
from pcexporter import Exporter, crash, parse_metrics, series, setup_store

INDEX_DIR = ".index"
INDEX = f"{INDEX_DIR}/index.sqlite"
# Metrics of the exporter itself (its time, memory and scans), not of the store.
VOLATILE = ("process_", "processcore_scan_duration_seconds", "processcore_exporter_")


def counts(metrics):
    return {k: v for k, v in metrics.items() if not k[0].startswith(VOLATILE)}


def age_dirs(store, seconds=60):
    past = time.time() - seconds
    for d in [store] + list(store.glob("*")) + list(store.glob("*/*")):
        if d.is_dir() and not d.is_symlink() and not d.name.startswith("."):
            os.utime(d, (past, past), follow_symlinks=False)


def exe_dirs(store):
    """The store's <host>/<exe> directories (not the index's hidden one)."""
    return sorted(d for d in store.glob("*/*") if d.is_dir() and not d.parent.name.startswith("."))


def add_record(d, new_id="abcdef0123456789"):
    """A new record in `d` the handler's way: written aside, renamed into place."""
    some = sorted(d.glob("*.json"))[0]
    (d / ".#tmp").write_text(some.read_text().replace(some.name[:16], new_id))
    (d / ".#tmp").rename(d / f"{new_id}.json")


def integrity(store):
    db = sqlite3.connect(store / INDEX)  # read-write: a WAL left by a killed writer is recovered
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def hostile(store):
    """Records the exporter counts by their place, or not at all, and names it reports."""
    a, b = exe_dirs(store)[0], exe_dirs(store)[1]
    (a / "00000000000000a1.json").write_text("{not json")
    some = sorted(b.glob("*.json"))[0]
    (b / "00000000000000a2.json").write_text(some.read_text())  # claims another id
    (a / "00000000000000a3.json").write_text('{"pad": "' + "x" * (400 << 10) + '"}')  # too large
    (a / "00000000000000a4.json").symlink_to("/etc/passwd")
    os.mkfifo(a / "00000000000000a5.json")
    (b / "notes.txt").write_text("foreign\n")
    (b / (some.name[:-len(".json")] + ".report")).write_text("a runtime's report\n")


def make_store(base, records=1500):
    store = base / "store"
    gen = pathlib.Path(os.environ["PC_SOURCE_DIR"]) / "bench" / "gen_exporter_store.py"
    subprocess.run([sys.executable, str(gen), str(store), "--records", str(records), "--hosts", "8",
                    "--exes", "40"], check=True, stdout=subprocess.DEVNULL)
    hostile(store)
    age_dirs(store)
    config = pctest.write_config(base / "exporter.conf", store)
    return store, config


def indexed(store):
    """(directories, records with a form) in the index, or None when it cannot be read."""
    try:
        db = sqlite3.connect(f"file:{store / INDEX}?mode=ro", uri=True, timeout=5)
        try:
            return (db.execute("SELECT count(*) FROM dirs").fetchone()[0],
                    db.execute("SELECT count(*) FROM records WHERE form IS NOT NULL").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def store_size(store):
    return len(exe_dirs(store)), sum(len(list(d.glob("*.json"))) for d in exe_dirs(store))


def wait_indexed(store, timeout=30):
    """Until the index holds every directory and record of the store."""
    return pctest.wait_until(lambda: indexed(store) == store_size(store), timeout,
                             what=f"the index to hold {store_size(store)}")


def from_index(ex):
    """The "(K of N directories from the index)" of the exporter's start."""
    line = [l for l in ex.log().splitlines() if "directories from the index" in l][0]
    k, n = line.split("(")[-1].split(" directories")[0].split(" of ")
    return int(k), int(n)


def group_reads(ex):
    """The "N records read for their groups" of the exporter's start."""
    line = [l for l in ex.log().splitlines() if "records read for their groups" in l][0]
    return int(line.split("records read for their groups")[0].split(",")[-1])


def scrape_counts(store, config, tmp_path, extra=()):
    with Exporter(store, config, tmp_path, extra=list(extra)) as ex:
        return counts(ex.scrape()), ex


def never_lower(before, now):
    """Every crash counter in `before` is at least as high in `now`."""
    for key, v in before.items():
        if key[0] == "processcore_coredumps_total":
            assert now.get(key, 0) >= v, key


@pytest.fixture
def store(tmp_path):
    store, config = make_store(tmp_path)
    files, _ = scrape_counts(store, config, tmp_path, ["--no-store.index"])
    assert not (store / INDEX_DIR).exists()  # --no-store.index leaves the store alone
    return store, config, files


def test_metrics_identical_without_with_and_from_the_index(store, tmp_path):
    store, config, files = store
    first, ex = scrape_counts(store, config, tmp_path)
    assert first == files
    assert from_index(ex)[0] == 0
    assert wait_indexed(store)
    assert os.stat(store / INDEX).st_mode & 0o777 == 0o640
    warm, ex = scrape_counts(store, config, tmp_path)
    assert warm == files
    k, n = from_index(ex)
    assert k == n == store_size(store)[0]
    assert series(files, "processcore_records_unreadable", reason="malformed")
    # Only what changed is read: one directory, one new record renamed into place.
    add_record(exe_dirs(store)[3])
    files, _ = scrape_counts(store, config, tmp_path, ["--no-store.index"])
    changed, ex = scrape_counts(store, config, tmp_path)
    assert changed == files
    assert from_index(ex) == (n - 1, n)


def test_a_restart_reads_no_record_of_the_groups_it_has_seen(store, tmp_path):
    store, config, files = store
    # The first start with the seen-set of the files' run: its groups are known.
    first, ex = scrape_counts(store, config, tmp_path)
    assert first == files and group_reads(ex) == 0
    # Without a seen-set, a record of every group (its versions); then it is kept, and the
    # next start reads none.
    (store / ".groups" / "seen.json").unlink()
    again, ex = scrape_counts(store, config, tmp_path)
    assert again == files and group_reads(ex) > 0
    assert wait_indexed(store)
    warm, ex = scrape_counts(store, config, tmp_path)
    assert warm == files and group_reads(ex) == 0
    assert from_index(ex)[0] == store_size(store)[0]


def test_corectl_reads_the_exporters_rows_as_its_files(store, tmp_path):
    store, config, _ = store
    with Exporter(store, config, tmp_path):
        wait_indexed(store)

        def corectl(*args, index):
            env = dict(os.environ, TZ="UTC", NO_COLOR="1", CORECTL_CACHE="0",
                       CORECTL_INDEX="1" if index else "0")
            return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config),
                                   *args, "--no-pager"], capture_output=True, env=env).stdout

        for view in (["list"], ["list", "--json"], ["groups"]):
            assert corectl(*view, index=True) == corectl(*view, index=False), view


@pytest.fixture
def open_base():
    """A directory others may traverse (pytest's own are root's alone), for an exporter run as
    the store's owner, `nobody`."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="pc-exporter-index-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_new_crashes_are_indexed_and_counted_once(open_base, tmp_path):
    """The real handler's crashes, the exporter running as the store's owner."""
    store, config = setup_store(open_base)
    for host, signo, exe in [("web-1", 11, "/usr/bin/ruby"), ("db-2", 6, "/usr/sbin/mysqld")]:
        crash(store, config, host, signo, exe)
    age_dirs(store)
    owner = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if pctest.is_root() else []
    ex = Exporter(store, config, tmp_path)
    ex.argv = owner + ex.argv
    with ex:
        ex.wait_for(lambda m: crashes_total(m) == 2)
        for _ in range(3):
            crash(store, config, "web-1", 11, "/usr/bin/ruby")
        ex.wait_for(lambda m: crashes_total(m) == 5)
        assert wait_indexed(store, timeout=20)
        before = counts(ex.scrape())
    ex = Exporter(store, config, tmp_path)
    ex.argv = owner + ex.argv
    with ex:
        assert counts(ex.scrape()) == before
        assert from_index(ex)[0] == from_index(ex)[1] == 2


def crashes_total(metrics):
    return sum(series(metrics, "processcore_coredumps_total").values())


def damage(store, how):
    path = store / INDEX
    if how == "deleted":
        shutil.rmtree(store / INDEX_DIR)
    elif how == "truncated":
        os.truncate(path, 4096 + 17)
    elif how == "garbage":
        path.write_bytes(b"not a database" * 1000)
    elif how == "symlink":
        target = store.parent / "elsewhere.sqlite"
        shutil.copy(path, target)
        path.unlink()
        path.symlink_to(target)
    elif how == "wrong_owner":
        os.chown(path, 1, -1)
    elif how == "another_schema":
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbage", "symlink", "wrong_owner",
                                 "another_schema"])
def test_index_damaged_mid_run_heals_and_counts_stay(store, tmp_path, how):
    if how == "wrong_owner" and not pctest.is_root():
        pytest.skip("needs root to give the index another owner")
    store, config, files = store
    with Exporter(store, config, tmp_path) as ex:
        wait_indexed(store)
        damage(store, how)
        pctest.wait_until(lambda: "the store's index" in ex.log().split("listening on")[-1], 10,
                          what="a log line about the index")
        last = counts(ex.scrape())
        assert last == files
        # A crash arrives meanwhile: counted once, and indexed once the index is back.
        add_record(exe_dirs(store)[2])
        now, _ = ex.wait_for(lambda m: value_of(m, "processcore_records") == value_of(files, "processcore_records") + 1)
        never_lower(last, counts(now))
        wait_indexed(store)
        assert not (store / INDEX).is_symlink()
        assert os.stat(store / INDEX).st_uid == os.stat(store).st_uid
        running = counts(ex.scrape())
    restarted, ex = scrape_counts(store, config, tmp_path)
    assert restarted == running
    k, n = from_index(ex)
    assert k == n


def value_of(metrics, name):
    return sum(v for (n, _), v in metrics.items() if n == name)


def test_killed_mid_rebuild_then_restarted(store, tmp_path):
    store, config, files = store
    for delay in (0.05, 0.2, 0.5):
        ex = Exporter(store, config, tmp_path)
        ex._log = open(ex.log_path, "w")
        ex.proc = subprocess.Popen(ex.argv, stdout=subprocess.DEVNULL, stderr=ex._log)
        time.sleep(delay)
        ex.proc.send_signal(signal.SIGKILL)
        ex.proc.wait()
        ex._log.close()
        if (store / INDEX).exists():
            assert integrity(store) == "ok"
    with Exporter(store, config, tmp_path) as ex:
        assert counts(ex.scrape()) == files
        wait_indexed(store)
    restarted, ex = scrape_counts(store, config, tmp_path)
    assert restarted == files
    assert from_index(ex)[0] == from_index(ex)[1]


def test_two_exporters_on_one_store(store, tmp_path):
    store, config, files = store
    with Exporter(store, config, tmp_path) as a:
        wait_indexed(store)
        with Exporter(store, config, tmp_path) as b:
            assert "another writer" in b.log()
            assert counts(a.scrape()) == counts(b.scrape()) == files
            a.stop()
            # The second one takes the index over and keeps it current.
            add_record(exe_dirs(store)[1])
            pctest.wait_until(lambda: "writing the store's index" in b.log(), 15,
                              what="the second exporter to take the index over")
            wait_indexed(store)
            running = counts(b.scrape())
            never_lower(files, running)
    restarted, ex = scrape_counts(store, config, tmp_path)
    assert restarted == running
    assert from_index(ex)[0] == from_index(ex)[1]


def test_corectl_reads_while_the_exporter_rebuilds(store, tmp_path):
    store, config, _ = store

    def corectl_list(index):
        env = dict(os.environ, TZ="UTC", NO_COLOR="1", CORECTL_CACHE="0",
                   CORECTL_INDEX="1" if index else "0")
        r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), "list",
                            "--no-pager"], capture_output=True, env=env)
        return r.returncode, r.stdout

    expected = corectl_list(False)
    with Exporter(store, config, tmp_path) as ex:
        wait_indexed(store)
        shutil.rmtree(store / INDEX_DIR)  # a whole rebuild, read meanwhile
        for _ in range(5):
            assert corectl_list(True) == expected
        wait_indexed(store)
        assert corectl_list(True) == expected
        assert "the store's index" in ex.log()


@pytest.mark.skipif(not pctest.is_root(), reason="needs root to mount a small tmpfs")
def test_disk_full_while_writing_the_index(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        store, config = make_store(mnt, records=1500)
        files, _ = scrape_counts(store, config, tmp_path, ["--no-store.index"])
        filler = mnt / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL)
        with Exporter(store, config, tmp_path) as ex:
            assert counts(ex.scrape()) == files
            pctest.wait_until(lambda: "full" in ex.log(), 15, what="a log line on the full disk")
            assert counts(ex.scrape()) == files
            filler.unlink()
            pctest.wait_until(lambda: "index is written again" in ex.log() or
                              indexed(store) == store_size(store), 30, what="the index to be written")
            wait_indexed(store)
        restarted, ex = scrape_counts(store, config, tmp_path)
        assert restarted == files
        assert from_index(ex)[0] == from_index(ex)[1]
        assert integrity(store) == "ok"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
