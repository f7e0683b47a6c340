"""Crash groups with a life: corectl groups' states, corectl resolve, and the exporter's
new-signature and regression counters across restarts and retention (docs/groups.md).

Records are made by the real handler once, then copied with the fields a group's life reads
(signature, packages, mappings, time) set, as a store holds them after real crashes."""
import json
import os
import pathlib
import subprocess
import time

import pctest
from pcexporter import Exporter, crash, series, setup_store

LABEL = frozenset({("executable", "/usr/bin/crashy"), ("hostname", "web1"), ("signal", "SEGV")})


def corectl(config, *args, check=True):
    env = dict(os.environ, TZ="UTC", NO_COLOR="", XDG_CACHE_HOME="/nonexistent")
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args],
                       capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


class Store:
    """A store with one handler-made record as the template of the others."""

    def __init__(self, tmp_path, **config_keys):
        self.store, self.config = setup_store(tmp_path, **config_keys)
        crash(self.store, self.config, "web1", 11, "/usr/bin/crashy", when=int(time.time()))
        [record] = pctest.records(self.store)
        path = record["_path"]
        self.dir = pathlib.Path(path).parent
        self.template = json.loads(pathlib.Path(path).read_text())
        for f in self.dir.iterdir():
            f.unlink()
        self.n = 0

    def put(self, when, signature, version, build_id="aa11", refines=None):
        """A record of a crash at `when` (epoch seconds) of libcrashy1 `version`, renamed into
        place as the handler links one."""
        self.n += 1
        r = json.loads(json.dumps(self.template))
        r["id"] = f"{0x6700000000000000 + self.n:016x}"
        r["time"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(when))
        r["crash"] = dict(r.get("crash") or {}, signature=signature, signature_version=2,
                          module="/usr/lib/libcrashy.so.1")
        if refines:
            r["crash"].update(signature_version=3, signature_refines=refines)
        r["mappings"] = [{"path": "/usr/bin/crashy", "build_id": build_id},
                         {"path": "/usr/lib/libcrashy.so.1", "build_id": "bb" + version.replace(".", "")}]
        r["packages"] = {"owners": [{"path": "/usr/lib/libcrashy.so.1", "package": "libcrashy1",
                                     "version": version, "source": "dpkg"}], "complete": True}
        tmp = self.dir / f".{r['id']}.tmp"
        tmp.write_text(json.dumps(r))
        os.chmod(tmp, 0o640)
        tmp.rename(self.dir / f"{r['id']}.json")
        return r["id"]

    def groups(self, *args):
        out = corectl(self.config, "groups", "--json", *args).stdout
        return {g["group"]: g for g in map(json.loads, out.splitlines())}


A, B, C, D = "aaaa111122223333", "bbbb111122223333", "cccc111122223333", "dddd111122223333"


def test_states_new_ongoing_resolved_regressed(tmp_path):
    s = Store(tmp_path, new_group_window="1h")
    now = int(time.time())
    s.put(now - 7200, A, "1.0-1")
    s.put(now - 60, B, "1.0-1")
    g = s.groups()
    assert g[A]["state"] == "ongoing" and g[B]["state"] == "new"
    assert g[B]["versions"] == ["libcrashy1 1.0-1, build-id aa11"]
    assert g[B]["hosts"] == ["web1"] and g[B]["count"] == 1
    # The same group, once the window is past: ongoing.
    short = pathlib.Path(tmp_path / "short.conf")
    short.write_text(pathlib.Path(s.config).read_text() + "new_group_window = 30\n")
    assert json.loads(corectl(short, "groups", "--json", f"SIGNATURE={B}").stdout)["state"] == "ongoing"

    corectl(s.config, "resolve", A[:8], "--in", "libcrashy1=2.0-1")
    assert s.groups()[A]["state"] == "resolved"
    assert s.groups()[A]["resolved"]["in"] == "libcrashy1=2.0-1"
    s.put(now + 1, A, "1.0-1")  # an old version still running: the fix holds
    assert s.groups()[A]["state"] == "resolved"
    s.put(now + 2, A, "2.0-1")
    g = s.groups()[A]
    assert g["state"] == "regressed"
    assert g["versions"] == ["libcrashy1 1.0-1, build-id aa11", "libcrashy1 2.0-1, build-id aa11"]
    table = corectl(s.config, "groups", "--no-pager").stdout
    assert "STATE" in table and "regressed" in table
    corectl(s.config, "unresolve", A)
    assert s.groups()[A]["state"] == "ongoing"
    # Usage errors: an unknown group, a bad --in.
    assert corectl(s.config, "resolve", "ffffffff", check=False).returncode == 3
    assert corectl(s.config, "resolve", A, "--in", "libcrashy1=", check=False).returncode == 2
    assert corectl(s.config, "unresolve", A, check=False).returncode == 3


def test_resolve_in_a_build_id(tmp_path):
    s = Store(tmp_path)
    now = int(time.time())
    s.put(now - 100, A, "1.0-1", build_id="aa11")
    corectl(s.config, "resolve", A, "--in", "CC33")
    marks = json.loads((s.store / ".groups" / "resolved.json").read_text())["marks"]
    assert marks[0]["build_id"] == "cc33" and marks[0]["builds_before"] == ["aa11"]
    s.put(now + 1, A, "1.0-1", build_id="aa11")  # the old build: still resolved
    assert s.groups()[A]["state"] == "resolved"
    s.put(now + 2, A, "1.0-1", build_id="cc33")
    assert s.groups()[A]["state"] == "regressed"
    # Without --in: fixed in the next build; the builds seen so far stay resolved.
    s.put(now + 3, C, "1.0-1", build_id="aa11")
    corectl(s.config, "resolve", C)
    assert s.groups()[C]["state"] == "resolved"
    assert s.groups()[C]["resolved"]["in"] == "the next build"
    time.sleep(1.1)
    s.put(int(time.time()) + 1, C, "1.0-1", build_id="aa11")
    assert s.groups()[C]["state"] == "resolved"
    s.put(int(time.time()) + 2, C, "1.0-1", build_id="dd44")
    assert s.groups()[C]["state"] == "regressed"


def test_signature_version_change_keeps_the_group(tmp_path):
    s = Store(tmp_path, new_group_window="1h")
    now = int(time.time())
    s.put(now - 7200, A, "1.0-1")
    corectl(s.config, "resolve", A, "--in", "libcrashy1=2.0-1")
    s.put(now + 1, B, "2.0-1", refines=A)  # v3 of the same crash
    g = s.groups()[B]
    assert g["continues"] == A
    assert g["state"] == "regressed"  # A's mark applies; not "new"


def test_hostile_marks_are_not_replaced(tmp_path):
    s = Store(tmp_path)
    s.put(int(time.time()), A, "1.0-1")
    (s.store / ".groups").mkdir(exist_ok=True)
    (s.store / ".groups" / "resolved.json").write_text("[" * 100000)
    r = corectl(s.config, "groups", "--json", check=False)
    assert r.returncode == 0 and "Ignoring the resolve marks" in r.stderr
    assert corectl(s.config, "resolve", A, check=False).returncode == 1
    assert (s.store / ".groups" / "resolved.json").read_text() == "[" * 100000


def counters(metrics):
    new = series(metrics, "processcore_new_signatures_total").get(LABEL, 0)
    reg = series(metrics, "processcore_regressions_total").get(LABEL, 0)
    return new, reg


def test_exporter_counts_each_event_once_across_restarts_and_retention(tmp_path):
    s = Store(tmp_path, max_records=1)
    now = int(time.time())
    s.put(now - 7200, A, "1.0-1")  # there before the exporter: seen, not new
    with Exporter(s.store, s.config, tmp_path) as ex:
        assert counters(ex.scrape()) == (0, 0)
        s.put(now - 10, B, "1.0-1")
        ex.wait_for(lambda m: counters(m) == (1, 0))
        s.put(now - 9, B, "1.0-1")  # the same group again
        s.put(now - 8, C, "1.0-1", refines=B)  # a new signature version of it
        time.sleep(0.5)
        assert counters(ex.scrape()) == (1, 0)
    # Down while a new group appears: counted at the next start, the old ones not again.
    s.put(now - 5, D, "1.0-1")
    with Exporter(s.store, s.config, tmp_path) as ex:
        ex.wait_for(lambda m: counters(m) == (2, 0))
        corectl(s.config, "resolve", A, "--in", "libcrashy1=2.0-1")
        time.sleep(1.1)  # crashes after the mark's second
        s.put(int(time.time()) + 1, A, "1.0-1")
        time.sleep(0.5)
        assert counters(ex.scrape()) == (2, 0)
        s.put(int(time.time()) + 2, A, "2.0-1")
        ex.wait_for(lambda m: counters(m) == (2, 1))
        s.put(int(time.time()) + 3, A, "2.1-1")  # the same regression: once
        time.sleep(0.5)
        assert counters(ex.scrape()) == (2, 1)
    with Exporter(s.store, s.config, tmp_path) as ex:
        assert counters(ex.scrape()) == (2, 1)
    # Retention removes every record but the newest; the counts stay.
    corectl(s.config, "vacuum")
    assert len(pctest.records(s.store)) == 1
    with Exporter(s.store, s.config, tmp_path) as ex:
        assert counters(ex.scrape()) == (2, 1)
        # A group whose records were all retired is still not new.
        s.put(int(time.time()) + 4, B, "1.0-1")
        time.sleep(0.5)
        assert counters(ex.scrape()) == (2, 1)
        # corectl groups keeps its first crash from the seen-set.
        assert s.groups()[B]["first"] < s.groups()[B]["last"]
