"""Who may read a crash: the crashing user (%u) through one ACL entry on their own core, record
and view directory (<store>/.by-user/<uid>), never a uid that is not one person's, never without
an auxv that shows no change of privileges; and no directory shared by users grows an entry per
user. The real handler, fed small ELF cores with -u<uid>."""
import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

import corefixture
import pctest

ARGS = ["-P{pid}", "-I{pid}", "-u{uid}", "-g{uid}", "-t1700000000", "-c18446744073709551615",
        "-d1", "--", "web01", "11", "!usr!bin!crasher"]


def needs_root():
    if not pctest.is_root():
        pytest.skip("needs root: the handler drops to the store user, ACLs name other uids")


@pytest.fixture
def open_base():
    """A directory every user may enter (pytest's own are root's only), removed afterwards."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="pca", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(handler, conf, uid, core):
    args = [a.format(pid=4242, uid=uid) for a in ARGS]
    proc = subprocess.run([str(handler), "--config", str(conf), *args], input=core,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def named_users(path):
    """The uids named in the access ACL of `path`."""
    out = subprocess.run(["getfacl", "-cn", str(path)], capture_output=True, check=True,
                         text=True).stdout.split()
    return sorted(int(e.split(":")[1]) for e in out if e.startswith("user:") and e.split(":")[1])


def as_uid(uid, fn):
    """Runs fn() in a child with real and effective uid `uid`; returns its exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os._exit(0 if fn() else 1)
        except BaseException:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def own_view_readable(store, uid, rid):
    """As `uid`: the view lists exactly the user's crash, whose record and core open."""
    view = pathlib.Path(store) / ".by-user" / str(uid)
    names = os.listdir(view)
    if names != [rid]:
        return False
    target = os.readlink(view / rid)
    record = (view / target).resolve()
    with open(record) as f:
        text = f.read()
    with open(record.with_name(f"{rid}.core.zst"), "rb") as f:
        f.read(1)
    return f'"id": "{rid}"' in text


def test_600_users_each_see_their_own_and_no_directory_acl_grows(handler, open_base):
    needs_root()
    store = pctest.make_store(open_base)
    conf = pctest.write_config(open_base / "pc.conf", store, rate_limit_burst=0)
    uids = range(2000, 2600)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda uid: run(handler, conf, uid,
                                      corefixture.elf_core(auxv_ids=(uid, uid))), uids))
    records = {r["uid"]: r for r in pctest.records(store)}
    assert sorted(records) == list(uids)
    exe_dir = pathlib.Path(store) / "web01" / "usr!bin!crasher"
    for shared in (store, exe_dir.parent, exe_dir, pathlib.Path(store) / ".by-user"):
        assert named_users(shared) == [], shared
        assert os.stat(shared).st_mode & 0o7 == 0o1, shared  # others pass, never list
    for uid in uids:
        r = records[uid]
        assert r["core"]["access"] == "owner" and r["core"]["present"]
        assert named_users(pathlib.Path(r["_path"])) == [uid]
        assert named_users(pathlib.Path(store) / r["core"]["path"]) == [uid]
        assert named_users(pathlib.Path(store) / ".by-user" / str(uid)) == [uid]
    for uid in uids:
        assert as_uid(uid, lambda: own_view_readable(store, uid, records[uid]["id"])) == 0, uid
    # Not the store, nor another user's crash.
    first, last = records[uids[0]], records[uids[-1]]
    assert as_uid(uids[0], lambda: os.listdir(store)) != 0
    assert as_uid(uids[0], lambda: os.listdir(pathlib.Path(store) / ".by-user" / str(uids[-1]))) != 0
    assert as_uid(uids[0], lambda: open(last["_path"]).read()) != 0
    assert as_uid(uids[0], lambda: open(first["_path"]).read()) == 0


def test_corectl_shows_a_user_their_own_crashes_only(handler, open_base):
    needs_root()
    store = pctest.make_store(open_base)
    conf = pctest.write_config(open_base / "pc.conf", store, rate_limit_burst=0)
    os.chmod(conf, 0o644)
    for uid in (3001, 3001, 3002):
        run(handler, conf, uid, corefixture.elf_core(auxv_ids=(uid, uid)))
    mine = sorted(r["id"] for r in pctest.records(store) if r["uid"] == 3001)
    env = {"PATH": os.environ["PATH"], "TZ": "UTC", "CORECTL_CACHE": "0"}

    def corectl(uid, *args):
        def become():
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(conf),
                               "--no-pager", *args], preexec_fn=become, env=env,
                              capture_output=True, text=True, timeout=60)

    r = corectl(3001, "list", "--no-legend")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(any(i[:8] in l for l in lines) for i in mine), lines
    r = corectl(3001, "info", mine[0])
    assert r.returncode == 0 and mine[0] in r.stdout, r.stderr
    theirs = [r["id"] for r in pctest.records(store) if r["uid"] == 3002][0]
    assert corectl(3001, "info", theirs).returncode == 4
    assert corectl(3003, "list").returncode == 4  # no crash of their own: no access at all


@pytest.mark.parametrize("uid", [0, 999, 61184, 65519, 65534])
def test_uids_shared_between_processes_get_no_access(handler, tmp_path, store, uid):
    """root, system uids, DynamicUser uids and nobody are not one person: no ACL entry, no view."""
    needs_root()
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    run(handler, conf, uid, corefixture.elf_core(auxv_ids=(uid, uid)))
    r = pctest.records(store)[0]
    assert r["core"]["present"]
    assert named_users(pathlib.Path(store) / r["core"]["path"]) == []
    assert named_users(pathlib.Path(r["_path"])) == []
    assert not (pathlib.Path(store) / ".by-user" / str(uid)).exists()


def test_core_without_auxv_is_root_only(handler, tmp_path, store):
    """Without NT_AUXV nothing shows the process changed no privileges: the core is root's."""
    needs_root()
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    run(handler, conf, 4000, corefixture.elf_core())
    r = pctest.records(store)[0]
    assert r["core"]["present"] and r["core"]["access"] == "root"
    assert named_users(pathlib.Path(store) / r["core"]["path"]) == []
    assert not (pathlib.Path(store) / ".by-user" / "4000").exists()
