"""corectl vacuum where the retention unit's sandbox puts it: system calls that the shipped
process-core-vacuum.service denies fail here too (tests/programs/deny.cpp, a seccomp filter), and
the vacuum must still remove what the quota asks and say only what it really removed.

The real unit under a real systemd is tests/e2e/test_systemd.py.
"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

import corefixture
import pctest

ACL_UID = 4242  # a user the store knows nothing about, as the crashing user is to the unit
SUMMARY = re.compile(rb"^Removed (\d+) record\(s\) and (\d+) core\(s\)", re.M)


def over_quota_store(tmp_path):
    """The fixture store with every core over max_use, and room for its records (which count
    toward max_use too: without room, vacuum would retire the records and their cores with them)."""
    store, config, _ = corefixture.build_store(tmp_path)
    record_bytes = sum(p.stat().st_blocks * 512 for p in store.glob("*/*/*.json"))
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() +
                                    f"max_use = {record_bytes}\nkeep_free = 0\n")
    cores = sorted(store.glob("*/*/*.core.zst"))
    assert cores, "the fixture store has no cores"
    return store, config, cores


def vacuum(config, denied, tmp_path):
    env = dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(tmp_path / "cache"))
    return subprocess.run([str(pctest.env_path("PC_DENY")), denied, str(pctest.env_path("PC_CORECTL")),
                           "--config", str(config), "vacuum"], capture_output=True, env=env)


def removed_in_summary(r):
    m = SUMMARY.search(r.stdout)
    assert m, r.stdout
    return int(m.group(2))


def marked_removed(store):
    return {d["id"] for d in pctest.records(store) if d["core"].get("removed")}


def acl_of(path):
    return subprocess.run(["getfacl", "--omit-header", "--numeric", str(path)],
                          capture_output=True, text=True, check=True).stdout


def test_vacuum_needs_no_chown(tmp_path):
    """SystemCallFilter=~@privileged denies the chown family: keeping a record's owner while
    marking it must not need it when the owner stays the same."""
    store, config, cores = over_quota_store(tmp_path)
    r = vacuum(config, "chown", tmp_path)
    assert r.returncode == 0, r.stderr
    assert not any(c.exists() for c in cores), r.stdout + r.stderr
    assert removed_in_summary(r) == len(cores)
    assert marked_removed(store) == {c.name.removesuffix(".core.zst") for c in cores}


def test_vacuum_keeps_an_acl_it_cannot_write_back(tmp_path):
    """Under PrivateUsers= the crashing user's ACL entry cannot be written onto a new file: the
    record is marked in place instead, its ACL kept, and the core still goes."""
    if shutil.which("setfacl") is None:
        pytest.skip("needs setfacl (package acl)")
    store, config, cores = over_quota_store(tmp_path)
    records = [c.with_name(c.name.removesuffix(".core.zst") + ".json") for c in cores]
    probe = subprocess.run(["setfacl", "-m", f"u:{ACL_UID}:r", str(records[0])], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no ACLs on this file system: {probe.stderr.decode().strip()}")
    for rec in records:
        subprocess.run(["setfacl", "-m", f"u:{ACL_UID}:r", str(rec)], check=True)
    inodes = {rec: rec.stat().st_ino for rec in records}
    r = vacuum(config, "xattr", tmp_path)
    assert r.returncode == 0, r.stderr
    assert not any(c.exists() for c in cores), r.stdout + r.stderr
    assert removed_in_summary(r) == len(cores)
    assert marked_removed(store) == {c.name.removesuffix(".core.zst") for c in cores}
    for rec in records:
        assert f"user:{ACL_UID}:r--" in acl_of(rec), rec
        assert rec.stat().st_ino == inodes[rec]  # rewritten in place, the only way to keep it
        assert oct(rec.stat().st_mode & 0o777) == "0o640"


def test_vacuum_counts_only_what_it_removed(tmp_path):
    """A core that cannot be removed is reported and not counted; the exit code says so."""
    store, config, cores = over_quota_store(tmp_path)
    r = vacuum(config, "unlink", tmp_path)
    assert r.returncode == 1, r.stdout
    assert all(c.exists() for c in cores)
    assert removed_in_summary(r) == 0, r.stdout
    assert b"Failed to remove core" in r.stderr


def test_vacuum_writes_no_record_in_place_through_a_hard_link(tmp_path):
    """The in-place rewrite is root's write into a file the store user may have linked from
    anywhere: a record with another link is left alone, and so is its core."""
    if shutil.which("setfacl") is None:
        pytest.skip("needs setfacl (package acl)")
    store, config, cores = over_quota_store(tmp_path)
    record = cores[0].with_name(cores[0].name.removesuffix(".core.zst") + ".json")
    probe = subprocess.run(["setfacl", "-m", f"u:{ACL_UID}:r", str(record)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no ACLs on this file system: {probe.stderr.decode().strip()}")
    elsewhere = tmp_path / "elsewhere.json"
    os.link(record, elsewhere)
    before = elsewhere.read_bytes()
    r = vacuum(config, "xattr", tmp_path)
    assert r.returncode == 1, r.stdout
    assert b"other links" in r.stderr, r.stderr
    assert elsewhere.read_bytes() == before
    assert cores[0].exists()
    assert removed_in_summary(r) == len(cores) - 1
