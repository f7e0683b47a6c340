"""process-core-exporter against a store filled by the real handler, scraped over HTTP."""
import json
import os
import pathlib
import time
import urllib.request

import pctest

from pcexporter import Exporter, crash, crashes, parse_metrics, retire, series, setup_store, value

SEGV, ABRT, QUIT = 11, 6, 3


def test_counts_follow_the_handler_within_a_second(tmp_path):
    store, config = setup_store(tmp_path)
    crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    with Exporter(store, config, tmp_path) as ex:
        m = ex.scrape()
        assert crashes(m) == {("web-1", "/usr/bin/ruby", "SEGV", "true"): 1}
        assert value(m, "processcore_build_info") == 1
        assert value(m, "processcore_records") == 1
        assert value(m, "processcore_stored_bytes", hostname="web-1") > 0
        assert value(m, "processcore_last_crash_timestamp_seconds", executable="/usr/bin/ruby") > time.time() - 120

        # New records (and a new host directory) show up through inotify, within one second.
        for host, signo, exe in [("web-1", SEGV, "/usr/bin/ruby"), ("web-1", ABRT, "/usr/bin/ruby"),
                                 ("db-2", SEGV, "/usr/sbin/mysqld"), ("db-2", QUIT, "/usr/bin/python3")]:
            crash(store, config, host, signo, exe)
        m, waited = ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 5, timeout=1.0)
        assert waited <= 1.0
        assert crashes(m) == {
            ("web-1", "/usr/bin/ruby", "SEGV", "true"): 2,
            ("web-1", "/usr/bin/ruby", "ABRT", "true"): 1,
            ("db-2", "/usr/sbin/mysqld", "SEGV", "true"): 1,
            ("db-2", "/usr/bin/python3", "QUIT", "true"): 1,
        }
        assert value(m, "processcore_records_unreadable") == 0
        assert ex.stop() == 0  # clean exit on SIGTERM
    assert "stopping on SIGTERM" in ex.log()


def test_sighup_reloads_and_keeps_serving(tmp_path):
    """SIGHUP re-reads and checks both files; it never stops the exporter (it used to kill it)."""
    import signal
    store, config = setup_store(tmp_path)
    crash(store, config, "web-1", 11, "/usr/bin/ruby")
    web = tmp_path / "web.yml"
    web.write_text("{}\n")
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 1)
        ex.proc.send_signal(signal.SIGHUP)
        pctest.wait_until(lambda: "is valid and in force" in ex.log(), timeout=10)
        pathlib.Path(config).write_text(pathlib.Path(config).read_text() + "max_hosts = 7\n")
        web.write_text("basic_auth_users:\n  u: plain\n")  # not a bcrypt hash
        ex.proc.send_signal(signal.SIGHUP)
        pctest.wait_until(lambda: "keeping the running web configuration" in ex.log(), timeout=10)
        assert "take effect when the exporter restarts" in ex.log()
        assert ex.proc.poll() is None
        crash(store, config, "web-1", 11, "/usr/bin/ruby")
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 2)
        assert ex.stop() == 0


def test_counts_survive_a_restart(tmp_path):
    store, config = setup_store(tmp_path)
    for _ in range(3):
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    crash(store, config, "web-1", ABRT, "/usr/bin/ruby")
    with Exporter(store, config, tmp_path) as ex:
        before = crashes(ex.scrape())
    assert sum(before.values()) == 4
    with Exporter(store, config, tmp_path) as ex:
        assert crashes(ex.scrape()) == before


def test_counts_survive_retention(tmp_path):
    store, config = setup_store(tmp_path)
    for _ in range(3):
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    crash(store, config, "web-1", ABRT, "/usr/bin/ruby")
    crash(store, config, "db-2", SEGV, "/usr/sbin/mysqld")
    with Exporter(store, config, tmp_path) as ex:
        before = ex.scrape()
        expected = crashes(before)
        bytes_before = value(before, "processcore_stored_bytes")

        # Retention removes cores but keeps records: counts stay, bytes go down.
        for core in store.glob("*/*/*.core.zst"):
            core.unlink()
        m, _ = ex.wait_for(lambda m: value(m, "processcore_stored_bytes") < bytes_before, timeout=2)
        assert crashes(m) == expected

        # Retention removes records through the ledger: counts stay, watched live.
        records = sorted(store.glob("web-1/*/*.json"))
        assert retire(store, records[:3]) == 3
        m, _ = ex.wait_for(lambda m: value(m, "processcore_records") == 2, timeout=2)
        assert crashes(m) == expected
        assert json.loads((store / ".ledger.json").read_text())["pending"] == []

        # A later crash still counts on top.
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
        expected[("web-1", "/usr/bin/ruby", "SEGV", "true")] += 1
        m, _ = ex.wait_for(lambda m: crashes(m) == expected, timeout=1)

    # And after a restart, from the ledger plus the remaining records.
    with Exporter(store, config, tmp_path) as ex:
        assert crashes(ex.scrape()) == expected


def test_interrupted_retirement_counts_once(tmp_path):
    """A vacuum that died after writing the ledger (records still there, ids pending)."""
    store, config = setup_store(tmp_path)
    for _ in range(2):
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    recs = [json.loads(p.read_text()) for p in store.glob("*/*/*.json")]
    ledger = {"schema": 1, "pending": [recs[0]["id"]],
              "series": [{"hostname": "web-1", "executable": "/usr/bin/ruby", "signal": "SEGV",
                          "core_present": True, "count": 1, "first": 1, "last": 1}]}
    (store / ".ledger.json").write_text(json.dumps(ledger))
    with Exporter(store, config, tmp_path) as ex:
        assert crashes(ex.scrape()) == {("web-1", "/usr/bin/ruby", "SEGV", "true"): 2}


def test_records_removed_by_hand_do_not_lower_the_counter(tmp_path):
    store, config = setup_store(tmp_path)
    for _ in range(2):
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    with Exporter(store, config, tmp_path) as ex:
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 2)
        next(store.glob("*/*/*.json")).unlink()
        ex.wait_for(lambda m: value(m, "processcore_records") == 1, timeout=2)
        assert value(ex.scrape(), "processcore_coredumps_total") == 2
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 3, timeout=1)
        assert "would drop by 1" in ex.log()


def test_cardinality_cap_folds_into_other(tmp_path):
    store, config = setup_store(tmp_path, max_executables_per_host=2)
    exes = ["/usr/bin/a", "/usr/bin/b", "/usr/bin/c", "/usr/bin/d"]
    start = int(time.time()) - 60
    for i, exe in enumerate(exes):
        # Distinct crash times (the kernel's %t): the fold follows the earliest crash.
        crash(store, config, "web-1", SEGV, exe, when=start + i)
    crash(store, config, "db-2", SEGV, "/usr/bin/d")  # another host has its own cap
    expected = {
        ("web-1", "/usr/bin/a", "SEGV", "true"): 1,
        ("web-1", "/usr/bin/b", "SEGV", "true"): 1,
        ("web-1", "other", "SEGV", "true"): 2,
        ("db-2", "/usr/bin/d", "SEGV", "true"): 1,
    }
    with Exporter(store, config, tmp_path) as ex:
        m = ex.scrape()
        assert crashes(m) == expected
        assert value(m, "processcore_executables_folded", hostname="web-1") == 2
        assert value(m, "processcore_executables_folded", hostname="db-2") == 0
        # A new executable after start-up goes to "other"; a known one keeps its label.
        crash(store, config, "web-1", SEGV, "/usr/bin/e")
        crash(store, config, "web-1", SEGV, "/usr/bin/a")
        expected[("web-1", "other", "SEGV", "true")] += 1
        expected[("web-1", "/usr/bin/a", "SEGV", "true")] += 1
        m, _ = ex.wait_for(lambda m: crashes(m) == expected, timeout=1)
        assert value(m, "processcore_executables_folded", hostname="web-1") == 3
    # Same labels after a restart; and after the earliest executable's records are retired
    # (the ledger keeps its earliest crash time, so it keeps its place under the cap).
    retire(store, list(store.glob("web-1/usr!bin!a/*.json")))
    with Exporter(store, config, tmp_path) as ex:
        assert crashes(ex.scrape()) == expected


def test_malformed_and_foreign_files_are_counted_not_fatal(tmp_path):
    store, config = setup_store(tmp_path)
    crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    exe_dir = next(store.glob("web-1/*"))
    (exe_dir / "0000000000000bad.json").write_text('{"id": "0000000000000bad", "signal": ')  # partial
    (exe_dir / "0000000000000bae.json").write_text('{"id": "0000000000000bae", "signal": "x"}')  # wrong type
    (exe_dir / "notes.txt").write_text("hello")
    (store / "README").write_text("not a host")
    with Exporter(store, config, tmp_path) as ex:
        m = ex.scrape()
        # Records that cannot be read still count, by their place in the store.
        assert crashes(m) == {("web-1", "/usr/bin/ruby", "SEGV", "true"): 1,
                              ("web-1", "/usr/bin/ruby", "unknown", "false"): 2}
        assert value(m, "processcore_records_unreadable", reason="malformed") == 2
        assert value(m, "processcore_records_unreadable", reason="foreign") == 2
        # Live: another bad record, then a file written in place that becomes complete.
        (exe_dir / "0000000000000baf.json").write_text("[]")
        ex.wait_for(lambda m: value(m, "processcore_records_unreadable", reason="malformed") == 3, timeout=1)
        rec = json.loads([p for p in exe_dir.glob("*.json") if not p.name.startswith("0000")][0].read_text())
        rec["id"] = "0000000000000bad"
        (exe_dir / "0000000000000bad.json").write_text(json.dumps(rec))  # IN_CLOSE_WRITE: read again
        m, _ = ex.wait_for(
            lambda m: value(m, "processcore_records_unreadable", reason="malformed") == 2,
            timeout=1)
        # Counted once, where it was first counted: a counter never moves between series.
        assert value(m, "processcore_coredumps_total") == 4
        (exe_dir / "notes.txt").unlink()
        ex.wait_for(lambda m: value(m, "processcore_records_unreadable", reason="foreign") == 1, timeout=1)
        # Each skipped file is named in the log once, with its reason (the runbook points there).
        log = ex.log()
        for name, reason in [("0000000000000bae.json", "malformed"), ("0000000000000baf.json", "malformed"),
                             ("notes.txt", "foreign"), ("README", "foreign")]:
            lines = [l for l in log.splitlines() if "not counting" in l and name in l]
            assert len(lines) == 1 and reason in lines[0], log


def test_bad_arguments_and_missing_store(tmp_path):
    import subprocess
    exe = str(pctest.env_path("PC_EXPORTER"))
    r = subprocess.run([exe, "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown argument" in r.stderr
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("process-core-exporter ")
    conf = pctest.write_config(tmp_path / "c.conf", tmp_path / "missing")
    r = subprocess.run([exe, "--config", str(conf), "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "Failed to open store" in r.stderr


def test_log_format_and_level(tmp_path):
    """exporter-toolkit's --log.format and --log.level: one logfmt or JSON line per message,
    with its own timestamp when journald does not read stderr, and only from the level up."""
    import json
    import re
    import subprocess
    exe = str(pctest.env_path("PC_EXPORTER"))
    conf = pctest.write_config(tmp_path / "c.conf", tmp_path / "missing")
    base = [exe, "--config", str(conf), "--listen", "127.0.0.1:0"]  # a warning, then an error
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    r = subprocess.run(base, capture_output=True, text=True, timeout=10, env=env)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 2, r.stderr
    stamp = r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(stamp + r' level=warn msg="--listen is deprecated, use --web.listen-address"',
                        lines[0]), lines[0]
    assert re.fullmatch(stamp + r' level=error msg=".*Failed to open store.*"', lines[1]), lines[1]
    r = subprocess.run(base + ["--log.format=json"], capture_output=True, text=True, timeout=10,
                       env=env)
    entries = [json.loads(l) for l in r.stderr.splitlines()]
    assert [e["level"] for e in entries] == ["warn", "error"], r.stderr
    assert all(re.fullmatch(stamp[3:], e["ts"]) for e in entries), entries
    r = subprocess.run(base + ["--log.level", "error"], capture_output=True, text=True, timeout=10,
                       env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Failed to open store" in r.stderr and "deprecated" not in r.stderr
    # Under journald (JOURNAL_STREAM names stderr), the journal's own time is the only one.
    with open(tmp_path / "err", "w+") as err:
        st = os.fstat(err.fileno())
        subprocess.run(base, stderr=err, timeout=10,
                       env=dict(env, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"))
        err.seek(0)
        assert err.read().startswith("level=warn msg="), (tmp_path / "err").read_text()
    for bad in (["--log.level", "verbose"], ["--log.format", "text"]):
        r = subprocess.run([exe, *bad], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and bad[0] in r.stderr, r.stderr


def test_systemd_unit_verifies(tmp_path):
    import shutil
    import subprocess
    import pytest
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = (pctest.env_path("PC_SOURCE_DIR") / "systemd" / "process-core-exporter.service").read_text()
    # verify checks that ExecStart exists: point it at the built binary.
    unit = unit.replace("/usr/sbin/process-core-exporter", str(pctest.env_path("PC_EXPORTER")))
    path = tmp_path / "process-core-exporter.service"
    path.write_text(unit)
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for key in ["User=process-core", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                "RestrictAddressFamilies=", "SystemCallFilter=@system-service"]:
        assert key in unit


def test_kernel_log_losses_are_counted(tmp_path):
    """Lines the kernel logs when it skips a dump become processcore_kernel_dumps_lost_total;
    lines logged before the exporter started are not counted (it reads from the end)."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    store, config = setup_store(tmp_path, kernel_log=fifo)
    with Exporter(store, config, tmp_path) as ex:
        m = ex.scrape()
        # Every reason is there from the start, at 0: increase() then sees the first loss.
        for reason in ("pipe_limit", "pipe_failed", "other"):
            assert m[("processcore_kernel_dumps_lost_total",
                      frozenset({("reason", reason)}))] == 0, m
        with open(fifo, "w") as w:
            w.write("4,100,1,-;coredump: 17653(acc-crasher): over core_pipe_limit, skipping core dump\n"
                    "4,101,1,-;coredump: 17654(acc-crasher): over core_pipe_limit, skipping core dump\n"
                    "6,102,1,-;coredump: 9(x): |/usr/sbin/process-core pipe failed\n"
                    "4,103,1,-;coredump: 9(x): RLIMIT_CORE is set to 1, aborting core\n"
                    "6,104,1,-;evil[1]: segfault at 0; over core_pipe_limit\n")
        m, _ = ex.wait_for(
            lambda m: value(m, "processcore_kernel_dumps_lost_total", reason="pipe_limit") == 2,
            timeout=5)
        assert value(m, "processcore_kernel_dumps_lost_total", reason="pipe_failed") == 1
        assert value(m, "processcore_kernel_dumps_lost_total", reason="other") == 0


def ledger_of_series(store, n, hosts=500, exes=200):
    """A ledger with n distinct series within the default per-host caps (n / hosts executables
    per host), one crash each: what a large fleet's retired crashes look like."""
    series = []
    for i in range(n):
        series.append({"hostname": f"host-{i % hosts:04d}.example.com",
                       "executable": f"/opt/fleet/bin/service-{(i // hosts) % exes:04d}",
                       "signal": ["SEGV", "ABRT", "BUS", "ILL"][(i // (hosts * exes)) % 4],
                       "core_present": True, "count": 1 + i % 3,
                       "first": 1700000000 + i, "last": 1700000000 + i})
    (store / ".ledger.json").write_text(json.dumps({"schema": 1, "pending": [], "series": series}))
    return sum(s["count"] for s in series)


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0


def test_many_series_stay_within_the_memory_bound(tmp_path):
    """100,000 series within the default label caps: the global series cap and the streaming
    serialiser keep the peak RSS of scrapes (plain and gzip) well below the unit's
    MemoryMax=256M (it was 436 MiB after one scrape)."""
    import gzip
    store, config = setup_store(tmp_path)
    total = ledger_of_series(store, 100_000)
    with Exporter(store, config, tmp_path) as ex:
        # The peak is measured from here: the scrapes', over the state the scan left (the scan's
        # own transient peak comes from parsing the ledger, not from serving it).
        pathlib.Path(f"/proc/{ex.proc.pid}/clear_refs").write_text("5\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{ex.port}/metrics", timeout=60) as r:
            m = parse_metrics(r.read().decode())
        request = urllib.request.Request(f"http://127.0.0.1:{ex.port}/metrics",
                                         headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=60) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            gz = parse_metrics(gzip.decompress(r.read()).decode())
        peak = peak_rss_mib(ex.proc.pid)
    # No crash is lost: the series beyond the cap are counted under other/other.
    assert value(m, "processcore_coredumps_total") == total
    assert value(gz, "processcore_coredumps_total") == total
    own = [l for l in series(m, "processcore_coredumps_total") if ("hostname", "other") not in l]
    assert len(own) == 50_000
    assert value(m, "processcore_series_folded") == 50_000
    assert peak < 192, f"peak RSS {peak:.0f} MiB"


def test_global_series_cap_folds_into_other(tmp_path):
    store, config = setup_store(tmp_path, max_series=2)
    start = int(time.time()) - 60
    for i, (host, exe) in enumerate([("web-1", "/usr/bin/a"), ("web-2", "/usr/bin/b"),
                                     ("web-3", "/usr/bin/c"), ("web-4", "/usr/bin/d")]):
        crash(store, config, host, SEGV, exe, when=start + i)
    with Exporter(store, config, tmp_path) as ex:
        m = ex.scrape()
        assert crashes(m) == {("web-1", "/usr/bin/a", "SEGV", "true"): 1,
                              ("web-2", "/usr/bin/b", "SEGV", "true"): 1,
                              ("other", "other", "SEGV", "true"): 2}
        assert value(m, "processcore_series_folded") == 2
        crash(store, config, "web-5", ABRT, "/usr/bin/e")
        m, _ = ex.wait_for(lambda m: value(m, "processcore_series_folded") == 3, timeout=2)
        assert crashes(m)[("other", "other", "ABRT", "true")] == 1


def test_a_store_that_comes_back_is_logged_once_and_counted_again(tmp_path):
    """Moved away and back, then removed and re-created: each loss and each return is logged
    once, with the path escaped, the counts never drop, and counting resumes at once."""
    store, config = setup_store(tmp_path)
    for _ in range(2):
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    # The exporter's store has an ESC in its name, which its log lines must not carry raw.
    watched = tmp_path / "st\x1bore"
    store.rename(watched)
    # printable() writes ESC as \x1b, and logfmt then doubles the backslash.
    shown = str(tmp_path) + "/st\\\\x1bore"
    lost = f"Store '{shown}' was removed or moved; counts stay as they are until it is back"
    back = f"Store '{shown}' is back (re-created or moved back); counting again"
    with Exporter(watched, config, tmp_path) as ex:
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 2)
        watched.rename(store)  # moved away: a crash there is not the watched store's
        assert pctest.wait_until(lambda: lost in ex.log(), 5), ex.log()
        crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
        time.sleep(0.3)
        assert value(ex.scrape(), "processcore_coredumps_total") == 2
        store.rename(watched)  # moved back: found through the parent's watch, within a second
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 3, timeout=2)
        assert ex.log().count(lost) == 1 and ex.log().count(back) == 1, ex.log()
        # Counting again through inotify: a new crash shows up within a second.
        crash(watched, config, "web-1", SEGV, "/usr/bin/ruby")
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 4, timeout=1)

        # Removed and re-created empty: the counts stay, a new crash raises them by one.
        import shutil
        shutil.rmtree(watched)
        assert pctest.wait_until(lambda: ex.log().count(lost) == 2, 5), ex.log()
        pctest.make_store(tmp_path)
        pathlib.Path(tmp_path / "store").rename(watched)
        assert pctest.wait_until(lambda: ex.log().count(back) == 2, 5), ex.log()
        assert value(ex.scrape(), "processcore_coredumps_total") == 4
        crash(watched, config, "web-1", SEGV, "/usr/bin/ruby")
        ex.wait_for(lambda m: value(m, "processcore_coredumps_total") == 5, timeout=1)
        assert ex.log().count(lost) == 2 and ex.log().count(back) == 2, ex.log()
        assert "\x1b" not in ex.log()
