"""corectl --remote against a real Ceph RADOS Gateway: two hosts' stores uploaded with
process-core-uploader --once, then list, groups, info, dump and debug of the bucket compared with
corectl on a local store holding the union of both (records and merged group files); a hostile
bucket; a core damaged on its way through a proxy; wrong credentials."""
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

import corefixture
import pctest
import radosgw
import s3proxy

pytestmark = pytest.mark.skipif(radosgw.available() is not None,
                                reason=f"Ceph: {radosgw.available()}")

PREFIX = "fleet"
HOSTS = {"node-a": "web-2", "node-b": "worker-7"}
# A first crash of it long before the records (retention removed them), in node-b's seen-set.
EARLIEST = 1577836800  # 2020-01-01


def seen_set(groups):
    return json.dumps({"version": 1, "new": [], "regressions": [], "regressed": [],
                       "groups": [{"group": g, "first": first, "hostname": host,
                                   "executable": "/usr/bin/worker", "signal": "SEGV"}
                                  for g, first, host in groups]})


def corectl(*args, env=None):
    full_env = dict(os.environ, TZ="UTC", NO_COLOR="", XDG_CACHE_HOME="/nonexistent")
    for name in list(full_env):
        if name.startswith("AWS_"):
            del full_env[name]
    full_env.update(env or {})
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--no-pager", *args],
                          capture_output=True, text=True, env=full_env, timeout=120)


def handler_crash(config, host, exe, core, signo):
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(config), "-d1", "--", host,
                    str(signo), exe.replace("/", "!")], input=core, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two hosts' stores in one bucket, and one local store with the union of both."""
    base = tmp_path_factory.mktemp("remote")
    gw = radosgw.Radosgw(base / "ceph")
    gw.start()
    try:
        yield make_fleet(gw, base)
    finally:
        gw.stop()


def make_fleet(gw, base):
    creds = radosgw.write_credentials(base / "credentials")
    (base / "union").mkdir()
    union = pctest.make_store(base / "union")
    cores = {}
    for node, host in HOSTS.items():
        hb = base / node
        hb.mkdir()
        store = pctest.make_store(hb)
        config = pctest.write_config(hb / "c.conf", store, upload_url=f"s3://{gw.bucket}/{PREFIX}",
                                     upload_endpoint=gw.endpoint, upload_credentials=creds,
                                     upload_node=node, upload_state_dir=hb / "state",
                                     upload_privileged_cores="yes")
        # Marks are timed in seconds, and so are crashes: a bucket does not say which of two in
        # one second came first (a store orders them by their records' times).
        if node == "node-b":
            time.sleep(1.1)
        # The same crash on both hosts (one signature), and one of each host's own.
        handler_crash(config, host, "/usr/bin/worker", corefixture.elf_core(), 11)
        own = corefixture.elf_core(signo=6, rip=0x402000 + len(cores) * 0x100,
                                   pid=5000 + len(cores))
        handler_crash(config, host, f"/usr/bin/{host}-tool", own, 6)
        for rec in store.glob("*/*/*.json"):
            cores[rec.name[:-5]] = own if "tool" in rec.parent.name else corefixture.elf_core()
        # The hosts disagree about the common group: node-a marked it fixed in 2.0-1, node-b
        # later in 1.5-1 (the latest mark wins, whatever its version); node-b's exporter saw it
        # first, years ago, node-a's only now.
        r = corectl("--config", str(config), "groups", "--json")
        common = [json.loads(line)["group"] for line in r.stdout.splitlines()
                  if json.loads(line)["executables"] == ["/usr/bin/worker"]]
        assert len(common) == 1, r.stdout + r.stderr
        r = corectl("--config", str(config), "resolve", common[0], "--in",
                    "worker=2.0-1" if node == "node-a" else "worker=1.5-1")
        assert r.returncode == 0, r.stderr
        first = int(time.time()) if node == "node-a" else EARLIEST
        (store / ".groups" / "seen.json").write_text(seen_set([(common[0], first, host)]))
        r = subprocess.run([str(pctest.env_path("PC_UPLOADER")), "--config", str(config), "--once"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        for hostdir in (d for d in store.iterdir() if not d.name.startswith(".")):
            shutil.copytree(hostdir, union / hostdir.name, symlinks=True)
    # The union store's group files are what the merge should give: node-b's later mark, and
    # node-b's earlier first crash.
    shutil.copytree(store / ".groups", union / ".groups")
    local = pctest.write_config(base / "local.conf", union)
    remote = pctest.write_config(base / "remote.conf", union, upload_endpoint=gw.endpoint,
                                 upload_credentials=creds)
    return {"gw": gw, "local": local, "remote": remote, "cores": cores, "base": base,
            "url": f"s3://{gw.bucket}/{PREFIX}", "union": union, "common": common[0]}


def both(fleet, *args):
    """The same corectl command on the union store and on the bucket."""
    local = corectl("--config", str(fleet["local"]), *args)
    remote = corectl("--config", str(fleet["remote"]), "--remote", fleet["url"], *args)
    return local, remote


@pytest.mark.parametrize("args", [
    ["list"], ["list", "--no-legend", "-r"], ["groups"], ["list", "--host", "worker-7"],
    ["list", "SIGNAL=ABRT"], ["list", "--signal", "SEGV", "--host", "web-2"],
    ["list", "--since", "-1h"], ["list", "--since", "2999-01-01"], ["groups", "--json"],
    ["list", "-F", "COREDUMP_PID"], ["list", "--exe", "worker"]],
    ids=lambda a: " ".join(a))
def test_the_bucket_lists_as_the_union_store(fleet, args):
    local, remote = both(fleet, *args)
    assert remote.returncode == local.returncode, remote.stderr
    assert remote.stderr == local.stderr
    assert remote.stdout == local.stdout


def test_info_shows_the_records_and_their_objects(fleet):
    local, remote = both(fleet, "info", "--json", "--host", "web-2")
    assert remote.returncode == 0, remote.stderr
    records = [json.loads(line) for line in remote.stdout.splitlines()]
    assert records == [json.loads(line) for line in local.stdout.splitlines()]
    assert len(records) == 2
    _, remote = both(fleet, "info", "--host", "web-2", "SIGNAL=ABRT")
    assert remote.returncode == 0, remote.stderr
    assert fleet["url"] + "/node-a/web-2/" in remote.stdout, remote.stdout
    assert "ABRT" in remote.stdout


def test_info_says_what_changed_since_the_groups_crash_on_another_host(fleet):
    """The common crash hit web-2 first, then worker-7: worker-7's says what changed since
    web-2's, read from the bucket as from a store holding both (the package logs of the machine
    corectl runs on are left out: the crashes are other hosts')."""
    local, remote = both(fleet, "info", "--json", "--exe", "worker")
    assert remote.returncode == 0, remote.stderr
    records = [json.loads(line) for line in remote.stdout.splitlines()]
    by_host = {r["hostname"]: r for r in records}
    assert sorted(by_host) == ["web-2", "worker-7"]
    assert "changes" not in by_host["web-2"]
    changes = by_host["worker-7"]["changes"]
    assert changes["previous"]["id"] == by_host["web-2"]["id"]
    assert "package_log" not in changes
    assert records == [json.loads(line) for line in local.stdout.splitlines()]
    local, remote = both(fleet, "info", by_host["worker-7"]["id"])
    assert remote.returncode == 0, remote.stderr
    assert f"previous crash of this group ({by_host['web-2']['id']}" in remote.stdout, remote.stdout


def test_both_hosts_and_the_merged_group(fleet):
    _, remote = both(fleet, "list", "--no-legend")
    rows = remote.stdout.splitlines()
    assert len(rows) == 4
    assert sum("web-2" in row for row in rows) == 2 and sum("worker-7" in row for row in rows) == 2
    groups = [json.loads(line) for line in
              both(fleet, "groups", "--json")[1].stdout.splitlines()]
    # The common crash, one signature on both hosts (and the hosts' own tools, whose fixture
    # cores have no frames to tell them apart).
    common = [g for g in groups if g["executables"] == ["/usr/bin/worker"]]
    assert len(common) == 1 and common[0]["count"] == 2
    assert sorted(common[0]["hosts"]) == ["web-2", "worker-7"]
    _, text = both(fleet, "groups")
    merged = [line for line in text.stdout.splitlines() if "/usr/bin/worker " in line + " "]
    assert len(merged) == 1 and " 2 " in merged[0] and "web-2" in merged[0], text.stdout


def test_the_hosts_group_files_merge(fleet):
    _, remote = both(fleet, "groups", "--json")
    assert remote.returncode == 0, remote.stderr
    common = [json.loads(line) for line in remote.stdout.splitlines()
              if json.loads(line)["group"] == fleet["common"]]
    assert len(common) == 1, remote.stdout
    assert common[0]["state"] == "resolved"
    assert common[0]["resolved"]["in"] == "worker=1.5-1"
    assert common[0]["first"].startswith("2020-01-01")
    # Each node's own files are in the bucket, in their checked form.
    for node in HOSTS:
        _, marks = fleet["gw"].get(f"{PREFIX}/.groups/{node}/resolved.json")
        assert json.loads(marks)["marks"][0]["group"] == fleet["common"]


def test_json_is_the_records(fleet):
    local, remote = both(fleet, "list", "--json")
    assert remote.returncode == 0, remote.stderr
    assert sorted(map(json.loads, remote.stdout.splitlines()), key=lambda r: r["id"]) == \
        sorted(map(json.loads, local.stdout.splitlines()), key=lambda r: r["id"])


def test_dump_is_the_original_core(fleet, tmp_path):
    for crash_id, core in fleet["cores"].items():
        out = tmp_path / f"{crash_id}.core"
        r = corectl("--config", str(fleet["remote"]), "--remote", fleet["url"], "dump", crash_id,
                    "-o", str(out), env={"TMPDIR": str(tmp_path)})
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == core
    # The newest match, to standard output.
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(fleet["remote"]),
                        "--remote", fleet["url"], "dump", "--host", "worker-7", "SIGNAL=ABRT"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout in fleet["cores"].values() and b"the newest of 1" in r.stderr
    assert list(tmp_path.glob("corectl-*")) == []


def test_debug_opens_gdb_on_the_other_hosts_core(fleet, tmp_path):
    if shutil.which("gdb") is None:
        pytest.skip("no gdb")
    r = corectl("--config", str(fleet["remote"]), "--remote", fleet["url"], "debug", "--host",
                "worker-7", "SIGNAL=ABRT", "-A", "-batch -ex 'info target'",
                env={"TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "Core was generated by `fixture" in r.stdout and "/corectl-" in r.stdout
    assert "worker-7-tool" in r.stderr  # the executable is not on this machine: said so
    assert list(tmp_path.iterdir()) == []  # the debugger's directory went with it


def test_a_core_damaged_on_the_way_is_refused(fleet, tmp_path):
    """Through upload_proxy, a download whose bytes differ from the bucket's ETag is refused:
    nothing written, nothing left behind; undamaged, the same proxy delivers the core."""
    crash_id, core = next(iter(fleet["cores"].items()))
    with s3proxy.S3Proxy() as proxy:
        config = pctest.write_config(tmp_path / "proxied.conf", fleet["union"],
                                     upload_endpoint=fleet["gw"].endpoint,
                                     upload_credentials=fleet["base"] / "credentials",
                                     upload_proxy=proxy.url)
        out = tmp_path / "core"
        proxy.corrupt_get = ".core.zst"
        r = corectl("--config", str(config), "--remote", fleet["url"], "dump", crash_id, "-o",
                    str(out), env={"TMPDIR": str(tmp_path)})
        assert r.returncode != 0, r.stderr
        assert "has the ETag" in r.stderr and "the bucket says" in r.stderr, r.stderr
        assert not out.exists() and list(tmp_path.glob("corectl-*")) == []
        proxy.corrupt_get = None
        r = corectl("--config", str(config), "--remote", fleet["url"], "dump", crash_id, "-o",
                    str(out), env={"TMPDIR": str(tmp_path)})
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == core
        assert any(m == "GET" and p.endswith(f"/{crash_id}.core.zst") for m, p in proxy.requests)


def put(gw, key, body):
    status, _, answer = gw.request("PUT", key, body=body)
    assert status == 200, answer


def test_a_hostile_bucket_is_reported_and_skipped(fleet, tmp_path):
    gw = radosgw.Radosgw(tmp_path / "ceph")
    gw.start()
    try:
        good = json.loads(next(fleet["union"].glob("web-2/*worker*/*.json")).read_text())
        rid = good["id"]
        base = f"{PREFIX}/node-x/web-2/!usr!bin!worker/{rid}"
        put(gw, base + ".json", json.dumps(good).encode())
        # A line of the index's first format (the record says the rest), garbage, a key of
        # another crash, an escape and ".." as names, a record naming another id.
        other = dict(good, id="00000000deadbeef")
        put(gw, f"{PREFIX}/node-x/web-2/!usr!bin!worker/1111111111111111.json",
            json.dumps(other).encode())
        first = {"id": rid, "time": good["time"], "node": "node-x", "host": "web-2",
                 "exe": "!usr!bin!worker", "hostname": "web-2", "executable": "/usr/bin/worker",
                 "signal": "SEGV", "signature": "", "record": base + ".json", "core": "",
                 "core_size": 0}
        lines = [json.dumps(first), "{garbage", "[1,2]", "[" * 100000 + "]" * 100000,
                 json.dumps({"deep": [[[[[[1]]]]]]}),
                 json.dumps(dict(first, id="2222222222222222")),
                 json.dumps(dict(first, id="3333333333333333", host="..")),
                 json.dumps(dict(first, id="4444444444444444", host="w\x1b[31m")),
                 # A summary whose core_dump_size is not a number (it once threw out of corectl).
                 json.dumps(dict(first, id="5555555555555555", signo=11, pid=1, uid=0, comm="w",
                                 executable_deleted=False, core_present=False, core_removed=False,
                                 core_reason="error", site="", core_dump_size="big")),
                 json.dumps(dict(first, id="1111111111111111",
                                 record=f"{PREFIX}/node-x/web-2/!usr!bin!worker/1111111111111111.json"))]
        put(gw, f"{PREFIX}/.index/node-x/2026-01-01.jsonl", "\n".join(lines).encode())
        put(gw, f"{PREFIX}/.index/node-x/2026-01-02.jsonl", b" " * (65 << 20))
        put(gw, f"{PREFIX}/.index/evil\x1b[2J/2026-01-01.jsonl", b"{}")
        # Group files: garbage, one of another name, an escape as the node, a mark too long.
        put(gw, f"{PREFIX}/.groups/node-x/seen.json", b"{garbage")
        put(gw, f"{PREFIX}/.groups/node-x/passwd", b"{}")
        put(gw, f"{PREFIX}/.groups/evil\x1b[2J/resolved.json", b"{}")
        # A mark of the crash's group beside one whose key is too long: the file is refused whole.
        mark = {"group": fleet["common"], "time": 1, "uid": 0, "package": "worker", "version": "9"}
        put(gw, f"{PREFIX}/.groups/node-y/resolved.json", json.dumps(
            {"version": 1, "marks": [mark, dict(mark, group="g" * 5000)]}).encode())
        # A gateway may refuse or normalise a key with "..": either way it is no index of ours.
        gw.request("PUT", f"{PREFIX}/.index/node-x/../2026-01-01.jsonl", body=b"{}")
        config = pctest.write_config(tmp_path / "c.conf", tmp_path, upload_endpoint=gw.endpoint,
                                     upload_credentials=radosgw.write_credentials(tmp_path / "cr"))
        r = corectl("--config", str(config), "--remote", f"s3://{gw.bucket}/{PREFIX}", "list",
                    "--no-legend")
        assert r.returncode == 0, r.stderr
        rows = r.stdout.splitlines()
        assert len(rows) == 1 and rid[:8] in rows[0], r.stdout
        assert "\x1b" not in r.stderr and "\x1b" not in r.stdout
        assert "names a record key that is not its own" in r.stderr
        assert "not a JSON object" in r.stderr and "a line longer than" in r.stderr
        assert "nested deeper" in r.stderr
        assert "no safe host and executable names" in r.stderr
        assert "names another id" in r.stderr
        assert "larger than" in r.stderr
        assert "not an index object" in r.stderr
        r = corectl("--config", str(config), "--remote", f"s3://{gw.bucket}/{PREFIX}", "groups",
                    "--json")
        assert r.returncode == 0, r.stderr
        states = [json.loads(line)["state"] for line in r.stdout.splitlines()]
        assert len(states) == 1 and states[0] in ("new", "ongoing"), r.stdout
        assert "\x1b" not in r.stderr and "\x1b" not in r.stdout
        assert "not a node's group file" in r.stderr
        assert "seen.json" in r.stderr and "resolved.json" in r.stderr
        r = corectl("--config", str(config), "--remote", f"s3://{gw.bucket}/{PREFIX}", "info",
                    "--json", rid)
        assert r.returncode == 0 and json.loads(r.stdout)["id"] == rid
        r = corectl("--config", str(config), "--remote", f"s3://{gw.bucket}/{PREFIX}", "dump",
                    rid, "-o", str(tmp_path / "out"))
        assert r.returncode == 1 and "names no core" in r.stderr
    finally:
        gw.stop()


def test_wrong_credentials_are_a_clear_error(fleet, tmp_path):
    bad = radosgw.write_credentials(tmp_path / "bad", secret="not-the-secret-at-all")
    config = pctest.write_config(tmp_path / "c.conf", tmp_path, upload_endpoint=fleet["gw"].endpoint,
                                 upload_credentials=bad)
    r = corectl("--config", str(config), "--remote", fleet["url"], "list")
    assert r.returncode == 4, r.stderr
    assert "SignatureDoesNotMatch" in r.stderr and "not-the-secret" not in r.stderr
    # By id too: the index is read first, and says why it cannot be.
    r = corectl("--config", str(config), "--remote", fleet["url"], "info", next(iter(fleet["cores"])))
    assert r.returncode == 4 and r.stderr.count("corectl:") == 1, r.stderr
    # The environment's keys come first, as the AWS tools have them.
    r = corectl("--config", str(config), "--remote", fleet["url"], "list", "--no-legend",
                env={"AWS_ACCESS_KEY_ID": radosgw.ACCESS_KEY,
                     "AWS_SECRET_ACCESS_KEY": radosgw.SECRET_KEY})
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 4, r.stderr
    # A credentials file others can read is refused.
    os.chmod(bad, 0o644)
    r = corectl("--config", str(config), "--remote", fleet["url"], "list")
    assert r.returncode == 4 and "bad" in r.stderr
    # No bucket: exit 5, as a missing store.
    r = corectl("--config", str(fleet["remote"]), "--remote", "s3://no-such-bucket/x", "list")
    assert r.returncode == 5, r.stderr
    # Verbs that change a store do not take a bucket.
    r = corectl("--config", str(fleet["remote"]), "--remote", fleet["url"], "vacuum")
    assert r.returncode == 2 and "--remote works with" in r.stderr
