"""The store's owner against root's corectl and the exporter, and hostile input to the handler.

Each test plants what a hostile store owner (the `process-core` user, or anyone who took it
over) or a hostile crasher can write, runs the real binaries, and asserts they neither follow,
hang, crash, forge output nor lose counts. The kernel end-to-end attacks are in
tests/e2e/test_hostile.py.
"""
import json
import os
import pathlib
import shutil
import stat
import struct
import subprocess
import tempfile

import pytest

import corefixture
import pcexporter
import pctest

ESC = b"\x1b"


def corectl(config, *args, env=None, timeout=30):
    full_env = dict(os.environ, TZ="UTC", NO_COLOR="", XDG_CACHE_HOME="/nonexistent")
    full_env.update(env or {})
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args],
                          capture_output=True, env=full_env, timeout=timeout)


def record_path(store, rid):
    return next(pathlib.Path(store).glob(f"*/*/{rid}.json"))


def edit_record(store, rid, edit):
    path = record_path(store, rid)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # in place: keeps the owner
    return path


@pytest.fixture
def fixture(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    return store, config


def test_symlinked_record_is_not_followed(fixture, tmp_path):
    """ln -s /etc/shadow <id>.json: root's corectl must not read (or show) the target."""
    store, config = fixture
    secret = tmp_path / "secret"
    secret.write_text(json.dumps({"id": "5ec7e75ec7e75ec7", "hostname": "SECRET-CONTENT"}))
    victim = record_path(store, "7e57ab1e00000002")
    victim.unlink()
    victim.symlink_to(secret)
    for args in (["list"], ["list", "--json"], ["groups"]):
        r = corectl(config, *args)
        assert r.returncode == 0, r.stderr
        assert b"SECRET-CONTENT" not in r.stdout + r.stderr
        assert b"malformed" in r.stderr
    r = corectl(config, "info", "7e57ab1e00000002")
    assert r.returncode == 1 and b"symbolic link" in r.stderr, r.stderr
    assert b"SECRET-CONTENT" not in r.stdout + r.stderr


def test_fifo_and_symlink_do_not_stop_vacuum(fixture):
    """A FIFO or a symlink in place of a record: skipped and reported; the rest is vacuumed."""
    store, config = fixture
    fifo = record_path(store, "7e57ab1e00000002")
    fifo.unlink()
    os.mkfifo(fifo)
    link = record_path(store, "0123456789abcdef")
    link.unlink()
    link.symlink_to("/etc/passwd")
    # max_use = 1 byte: every core with a readable record must go.
    conf = pathlib.Path(config).with_name("vacuum.conf")
    pctest.write_config(conf, store, max_use=1)
    r = corectl(conf, "vacuum", timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"skipping 2 malformed or foreign entries" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.path.islink(link)
    assert not list(pathlib.Path(store).glob("*/*/c0ffee00a1b2c3d4.core.zst"))


@pytest.mark.parametrize("where", ["record", "crash"])
def test_deep_json_is_skipped_not_fatal(fixture, tmp_path, where):
    """10^5 nested '[' in a record: corectl warns and goes on; info reports it; nothing crashes.
    (Within the readers' size limit, so that the depth check is what stops it.)"""
    store, config = fixture
    path = record_path(store, "7e57ab1e00000002")
    deep = "[" * 100_000 + "]" * 100_000
    if where == "record":
        path.write_text(deep)
    else:  # valid at the top, deep inside: the summary reader accepts it, the full reader must not
        text = path.read_text()
        path.write_text(text[:text.rindex("}")] + ', "x": ' + deep + "}")
    for args in (["list"], ["groups"], ["list", "--json"], ["info", "7e57ab1e00000002"],
                 ["vacuum", "--dry-run"]):
        r = corectl(config, *args)
        assert r.returncode in (0, 1), (args, r.returncode, r.stderr[-300:])
    r = corectl(config, "info", "7e57ab1e00000002")
    assert r.returncode == 1 and b"nested deeper than 64 levels" in r.stderr, r.stderr
    r = corectl(config, "list")
    assert r.returncode == 0 and b"c0ffee00" in r.stdout
    with pcexporter.Exporter(store, config, tmp_path) as ex:
        m, _ = ex.wait_for(lambda m: pcexporter.value(m, "processcore_records") >= 4)
        assert ex.proc.poll() is None
        if where == "record":
            assert pcexporter.value(m, "processcore_records_unreadable") >= 1


def test_deep_ledger_is_reported_not_fatal(fixture, tmp_path):
    store, config = fixture
    (pathlib.Path(store) / ".ledger.json").write_text("[" * 1_000_000)
    r = corectl(config, "vacuum", "--dry-run")
    assert r.returncode == 0, r.stderr
    with pcexporter.Exporter(store, config, tmp_path) as ex:
        m, _ = ex.wait_for(lambda m: pcexporter.value(m, "processcore_records") >= 1)
        assert ex.proc.poll() is None
        assert "nested deeper than 64 levels" in ex.log()


def test_wrongly_typed_fields_do_not_abort_info(fixture):
    """crash.symbol.name = 1 made `corectl info` abort with rc 134."""
    store, config = fixture

    def edit(d):
        d["crash"]["symbol"] = {"name": 1, "offset": ["x"], "verified": "yes"}
    edit_record(store, "c0ffee00a1b2c3d4", edit)
    r = corectl(config, "info", "c0ffee00a1b2c3d4")
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert b"Symbol: 1+" in r.stdout.replace(b"  ", b""), r.stdout


def test_store_text_never_reaches_the_terminal_raw(fixture):
    """Escape sequences in every field the store owner controls come out escaped."""
    store, config = fixture
    title = "\x1b]0;PWNED\x07\u009b31m\u202e"

    def edit(d):
        d["crash"]["signature"] = "\x1b[2J" + "a" * 20
        d["crash"]["symbol"] = {"name": title, "offset": title}
        d["store"] = {"host": title, "executable": title}
        d["mappings"] = [{"path": title,
                          "findings": [title, {"k": title}, {"kind": "replaced", "detail": title}]}]
        d["handler"]["warnings"] = [title]
        d["container"] = {title: title}
    edit_record(store, "c0ffee00a1b2c3d4", edit)
    for args in (["list"], ["groups"], ["info", "c0ffee00a1b2c3d4"], ["info", "fedcba98"]):
        r = corectl(config, *args)
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert ESC not in out and b"\x07" not in out and b"\xc2\x9b" not in out, out
        assert "\u202e".encode() not in out
    info = corectl(config, "info", "c0ffee00a1b2c3d4").stdout
    assert b"\\x1b" in info and b"! replaced: \\x1b]0;PWNED\\x07" in info, info


def test_info_refuses_a_record_whose_id_names_another(fixture):
    store, config = fixture
    edit_record(store, "c0ffee00a1b2c3d4", lambda d: d.update(id="\x1b]0;x\x07"))
    r = corectl(config, "info", "c0ffee00a1b2c3d4")
    assert r.returncode == 1 and b"names another id" in r.stderr, r.stderr
    assert ESC not in r.stdout + r.stderr


def test_debug_warning_escapes_the_executable(fixture, tmp_path):
    store, config = fixture
    gdb = tmp_path / "gdb"
    gdb.write_text("#!/bin/sh\nexit 0\n")
    gdb.chmod(0o755)
    edit_record(store, "c0ffee00a1b2c3d4",
                lambda d: d.update(executable="/nonexistent/\x1b]0;TITLE\x07x", executable_deleted=True))
    r = corectl(config, "debug", "c0ffee00a1b2c3d4", "--debugger", str(gdb),
                env={"TMPDIR": str(tmp_path)})
    assert b"is deleted since the crash" in r.stderr, r.stderr
    assert ESC not in r.stderr and b"\\x1b]0;TITLE\\x07" in r.stderr


def test_exporter_logs_escape_record_text(tmp_path):
    """Record-supplied hostnames and executables never forge a line in the exporter's log."""
    store, config = pcexporter.setup_store(tmp_path)
    pcexporter.crash(store, config, "h\nFORGED line\x1b[31m", 11, "/usr/bin/app")
    rec = pctest.records(store)[0]
    with pcexporter.Exporter(store, config, tmp_path) as ex:
        ex.wait_for(lambda m: sum(pcexporter.crashes(m).values()) == 1)
        # A record removed outside the ledger makes the exporter log the series' labels.
        os.unlink(rec["_path"])
        pctest.wait_until(lambda: ex.scrape() and "would drop" in ex.log(), timeout=10)
        log = ex.log()
    assert "would drop" in log, log
    # The label as printable() writes it, inside a logfmt value (whose own escaping doubles the
    # backslash): one line, no raw ESC.
    assert "\x1b" not in log and "\nFORGED" not in log and "\\\\x0aFORGED line\\\\x1b[31m" in log


def test_hostnames_are_capped(tmp_path):
    """Distinct hostnames beyond max_hosts fold into hostname="other"; no crash is lost."""
    store, config = pcexporter.setup_store(tmp_path, max_hosts=5)
    pcexporter.crash(store, config, "host-0", 11, "/usr/bin/app")
    template = pctest.records(store)[0]
    src = pathlib.Path(template.pop("_path"))
    hosts = 40
    for i in range(1, hosts):
        rec = dict(template, hostname=f"host-{i}", id=f"{i:016x}", time=f"2026-01-01T00:00:{i:02d}Z")
        d = pathlib.Path(store) / f"host-{i}" / src.parent.name
        d.mkdir(parents=True)
        (d / f"{i:016x}.json").write_text(json.dumps(rec))
    with pcexporter.Exporter(store, config, tmp_path) as ex:
        m, _ = ex.wait_for(lambda m: sum(pcexporter.crashes(m).values()) == hosts)
        labels = {k[0] for k in pcexporter.crashes(m)}
        assert len(labels) == 6 and "other" in labels, labels
        folded = {k: v for k, v in pcexporter.crashes(m).items() if k[0] == "other"}
        assert list(folded.values()) == [hosts - 5], folded
        assert pcexporter.value(m, "processcore_hosts_folded") == hosts - 5
        # A new host after the cap is counted, under "other".
        pcexporter.crash(store, config, "late-host", 11, "/usr/bin/app")
        m, _ = ex.wait_for(lambda m: sum(pcexporter.crashes(m).values()) == hosts + 1)
        assert pcexporter.value(m, "processcore_hosts_folded") == hosts - 4
        assert len({k[0] for k in pcexporter.crashes(m)}) == 6


def many_notes_core(segments=16, desc=16 << 20):
    """An ELF core whose PT_NOTE headers all cover one note with a `desc`-byte descriptor."""
    nt_file = 0x46494C45  # a note the scanner buffers whole (up to 16 MiB)
    note = struct.pack("<III", 5, desc, nt_file) + b"CORE\0\0\0\0" + b"\0" * desc
    phoff, phnum = 64, segments
    notes_off = phoff + phnum * 56
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 0, notes_off, 0, 0, len(note), 0, 4) * phnum
    return ehdr + ph + note


def test_overlapping_note_segments_stay_within_the_memory_budget(tmp_path):
    """16 PT_NOTE headers over one 16 MiB note raised the handler to 279 MiB RSS."""
    store, config = pcexporter.setup_store(tmp_path)
    core = tmp_path / "core"
    core.write_bytes(many_notes_core())
    with open(core, "rb") as stdin:
        proc = subprocess.Popen([str(pctest.env_path("PC_HANDLER")), "--store", str(store),
                                 "--config", str(config), "--", "h", "11", "!usr!bin!app"],
                                stdin=stdin)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    rss_mib = usage.ru_maxrss / 1024
    assert rss_mib < 150, f"handler peak RSS {rss_mib:.0f} MiB"
    rec = pctest.records(store)[0]
    assert any("overlapping note segments" in w for w in rec["crash"]["warnings"]), rec["crash"]


def open_store(base):
    """A store any user can write: the default store user may or may not exist on this host."""
    store = pctest.make_store(base)
    store.chmod(0o1777)
    return store


def test_config_others_can_write_is_ignored(tmp_path):
    """A config writable by others saying user = root must not make root-owned cores."""
    if not pctest.is_root():
        pytest.skip("needs root: the handler drops privileges only as root")
    store = open_store(tmp_path)
    conf = tmp_path / "evil.conf"
    conf.write_text(f"store = {store}\nuser = root\nmax_core_size = 1G\n")
    conf.chmod(0o666)
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(conf), "--store", str(store),
                    "--", "h", "11", "!usr!bin!app"],
                   input=corefixture.elf_core(), check=True, timeout=30)
    rec = pctest.records(store)[0]
    assert any("ignoring" in w and "writable by group or others" in w
               for w in rec["handler"]["warnings"]), rec["handler"]["warnings"]
    for f in pathlib.Path(store).glob("*/*/*"):
        assert f.stat().st_uid != 0, f"{f} is owned by root"


@pytest.mark.parametrize("user", ["root", "0", ""])
def test_config_refuses_root_as_the_store_user(tmp_path, user):
    if not pctest.is_root():
        pytest.skip("needs root: the handler drops privileges only as root")
    store = open_store(tmp_path)
    conf = pctest.write_config(tmp_path / "c.conf", store, user=user)
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(conf),
                    "--", "h", "11", "!usr!bin!app"],
                   input=corefixture.elf_core(), check=True, timeout=30)
    recs = pctest.records(store)
    assert recs
    # The default user may not exist here: then the handler continues as nobody (or logs the
    # record to syslog when nobody cannot write the store). Either way, nothing root-owned.
    for f in pathlib.Path(store).glob("*/*/*"):
        assert f.stat().st_uid != 0, f"{f} is owned by root"
    for r in recs:
        assert any("for 'user'" in w for w in r["handler"]["warnings"]), r["handler"]["warnings"]


def test_hostname_options_stay_positional(tmp_path):
    """%h first (the minimal pattern): a hostname shaped like an option stays the hostname."""
    store, config = pcexporter.setup_store(tmp_path)
    other = tmp_path / "other-store"
    other.mkdir()
    for host in ("--store=" + str(other), "--config=/etc/shadow", "--", "-P1"):
        subprocess.run([str(pctest.env_path("PC_HANDLER")), "--store", str(store), "--config", str(config),
                        "--", host, "11", "!usr!bin!app"], input=b"x" * 100, check=True, timeout=30)
    assert sorted(r["hostname"] for r in pctest.records(store)) == sorted(
        ["--store=" + str(other), "--config=/etc/shadow", "--", "-P1"])
    assert not list(other.iterdir())


def test_linked_store_directory_is_not_followed(fixture, tmp_path):
    """A <host> directory replaced by a link to elsewhere: its records are neither read nor shown."""
    store, config = fixture
    host = pathlib.Path(store) / "db1"
    outside = tmp_path / "outside"
    host.rename(outside)
    host.symlink_to(outside)
    r = corectl(config, "list")
    assert r.returncode == 0, r.stderr
    assert b"0123456789abcdef"[:8] not in r.stdout and b"dbd" not in r.stdout
    r = corectl(config, "info", "0123456789abcdef")
    assert r.returncode != 0 and b"dbd" not in r.stdout, r.stdout


# The one record size limit of every reader (common/store/record.hpp k_max_record_bytes): the
# handler's 256 KiB bound plus a 64 KiB margin.
READER_LIMIT = 256 * 1024 + 64 * 1024


def test_one_record_size_limit_for_every_reader(fixture, tmp_path):
    """A record of exactly the readers' limit is read; one byte more is listed and counted as
    unreadable (by its place in the store) by corectl and the exporter alike."""
    store, config = fixture
    for rid, size in (("7e57ab1e00000002", READER_LIMIT), ("0123456789abcdef", READER_LIMIT + 1)):
        path = record_path(store, rid)
        text = path.read_bytes().rstrip()
        path.write_bytes(text + b" " * (size - len(text)))  # still valid JSON
        assert path.stat().st_size == size
    r = corectl(config, "list")
    assert r.returncode == 0, r.stderr
    assert b"larger than %d bytes" % READER_LIMIT in r.stderr, r.stderr
    # TIME is four words ("Sat 2025-11-22 02:53:20 UTC"), then ID, HOST, EXECUTABLE, SIG.
    rows = {line.split()[4][:8]: line.split() for line in r.stdout.decode().splitlines()[1:]}
    assert rows["7e57ab1e"][7] == "SEGV", rows
    assert rows["01234567"][7] == "unknown", rows  # listed from its place in the store only
    assert corectl(config, "info", "7e57ab1e00000002").returncode == 0
    r = corectl(config, "info", "0123456789abcdef")
    assert r.returncode == 1 and b"larger than %d bytes" % READER_LIMIT in r.stderr, r.stderr
    with pcexporter.Exporter(store, config, tmp_path) as ex:
        m, _ = ex.wait_for(lambda m: pcexporter.value(m, "processcore_records") >= 5)
        assert pcexporter.value(m, "processcore_records_unreadable") == 1
        counted = pcexporter.crashes(m)
        assert counted[("db1", "/opt/db/bin/dbd", "unknown", "true")] == 1, counted
        assert counted[("web1", "/usr/bin/app", "SEGV", "true")] == 2, counted


def test_vacuum_as_the_store_user_refuses_a_directory_it_cannot_read():
    """The hourly vacuum runs as the store user: a host directory it may not open (mode 000)
    is a failure to read the store, never a smaller store to decide on."""
    if not pctest.is_root():
        pytest.skip("needs root to run corectl as the store user")
    # The store user must reach the store and read the configuration: a base others may enter.
    base = pathlib.Path(tempfile.mkdtemp(prefix="pc-vacuum-"))
    try:
        base.chmod(0o755)
        store, _, _ = corefixture.build_store(base)
        conf = pctest.write_config(base / "vacuum.conf", store, max_use=1)
        conf.chmod(0o644)
        host = pathlib.Path(store) / "web2"
        host.chmod(0)
        cores = sorted(pathlib.Path(store).glob("*/*/*.core.zst"))
        r = subprocess.run(["setpriv", f"--reuid={os.stat(store).st_uid}",
                            f"--regid={os.stat(store).st_gid}", "--clear-groups",
                            str(pctest.env_path("PC_CORECTL")), "--config", str(conf), "vacuum"],
                           capture_output=True, timeout=30)
        host.chmod(0o750)
        assert r.returncode == 4, (r.returncode, r.stderr)
        assert b"Cannot read the whole store, not vacuuming" in r.stderr, r.stderr
        assert b"'web2': Permission denied" in r.stderr, r.stderr
        assert sorted(pathlib.Path(store).glob("*/*/*.core.zst")) == cores
        # The same vacuum with the directory readable again goes on to remove cores (max_use =
        # 1 byte: then records too; the fixture's root group makes keeping a record's group
        # fail, not the walk).
        r = subprocess.run(["setpriv", f"--reuid={os.stat(store).st_uid}",
                            f"--regid={os.stat(store).st_gid}", "--clear-groups",
                            str(pctest.env_path("PC_CORECTL")), "--config", str(conf), "vacuum"],
                           capture_output=True, timeout=30)
        assert b"not vacuuming" not in r.stderr, r.stderr
        assert b"Removing core" in r.stdout or b"Retiring record" in r.stdout, r.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
