"""Where the handler's one line per crash goes: the journal with structured fields when journald
runs, syslog otherwise, and /dev/kmsg when neither is reachable (one complete line, the short
form when the whole line does not fit)."""
import json
import os
import pathlib
import subprocess
import textwrap

import pytest

import pctest
from test_handler import only, recommended

MESSAGE_ID = "dbba4d8a928544e79ac34a21f9399051"
COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"  # systemd-coredump's catalog entry


def needs_root():
    if not pctest.is_root():
        pytest.skip("needs root (/dev/kmsg, mount namespaces)")


def read_kmsg_after(fd):
    """The kernel log records written since `fd` was opened at the end, as (priority, text)."""
    out = []
    while True:
        try:
            rec = os.read(fd, 8192).decode("utf-8", "replace")
        except BlockingIOError:
            return out
        except OSError:  # EPIPE: a record was overwritten while we read; go on with the next
            continue
        prefix, _, text = rec.partition(";")
        out.append((int(prefix.split(",")[0]), text.split("\n")[0]))


def test_crash_line_reaches_kmsg_without_a_logger(run_handler, real_core):
    needs_root()
    data, pid = real_core
    with pctest.machine_lock():
        if os.path.exists("/dev/log") or os.path.exists("/run/systemd/journal/socket"):
            pytest.skip("a logger runs here: the line goes to it, not to /dev/kmsg")
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            _, recs = run_handler(recommended(pid), stdin=data)
            r = only(recs)
            lines = [(p, t) for p, t in read_kmsg_after(fd)
                     if r["id"] in t and "crashed with" in t]
        finally:
            os.close(fd)
    assert len(lines) == 1, lines
    priority, text = lines[0]
    assert priority == (3 << 3) | 6  # daemon.info
    assert text.startswith("process-core[")
    assert f"Process {pid} (/usr/bin/crasher) of host web01 crashed with SIGSEGV" in text


def test_long_crash_line_reaches_kmsg_whole_in_its_short_form(run_handler, real_core):
    """The kernel keeps about 1000 bytes per record: a longer crash line goes to /dev/kmsg as its
    short form, never cut mid-line."""
    needs_root()
    data, pid = real_core
    exe = "!opt" + "".join("!" + c * 200 for c in "abcdef") + "!crasher"
    with pctest.machine_lock():
        if os.path.exists("/dev/log") or os.path.exists("/run/systemd/journal/socket"):
            pytest.skip("a logger runs here: the line goes to it, not to /dev/kmsg")
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            _, recs = run_handler(recommended(pid, exe=exe), stdin=data)
            r = only(recs)
            lines = [t for _, t in read_kmsg_after(fd) if r["id"] in t and "crashed with" in t]
        finally:
            os.close(fd)
    assert len(r["executable"]) > 1000
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"]: Process {pid} (crasher) crashed with SIGSEGV: core "
                             f"{r['core']['reason']}; record {r['id']}"), lines[0]


JOURNAL_SCRIPT = textwrap.dedent("""\
    set -u
    # A private /run (and journal directory): nothing here is seen by the rest of the machine.
    mount -t tmpfs -o mode=0755 tmpfs /run
    if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
    mkdir -p /run/systemd/journal /run/log/journal
    /lib/systemd/systemd-journald >"$WORK/journald.log" 2>&1 &
    journald=$!
    for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
    if [ ! -S /run/systemd/journal/socket ]; then kill $journald; exit 77; fi
    "$@" <"$WORK/core"
    rc=$?
    for _ in $(seq 100); do
      journalctl -D /run/log/journal -o json MESSAGE_ID=%s >"$WORK/journal.json" 2>/dev/null
      [ -s "$WORK/journal.json" ] && break
      sleep 0.05
    done
    # While journald still runs: what a test wants to ask the journal (e.g. coredumpctl).
    if [ -n "${AFTER:-}" ]; then bash -c "$AFTER" >"$WORK/after.out" 2>"$WORK/after.err"; fi
    kill $journald; wait $journald
    exit $rc
""" % MESSAGE_ID)


def test_crash_fields_in_the_journal(handler, tmp_path, store, real_core):
    needs_root()
    if not os.access("/lib/systemd/systemd-journald", os.X_OK):
        pytest.skip("systemd-journald is not installed")
    data, pid = real_core
    (tmp_path / "core").write_bytes(data)
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           JOURNAL_SCRIPT, "journal", str(handler), "--config", str(conf),
                           *recommended(pid)],
                          env=dict(os.environ, WORK=str(tmp_path)), capture_output=True,
                          text=True, timeout=120)
    if proc.returncode == 77:
        pytest.skip("systemd-journald does not start here: " +
                    (tmp_path / "journald.log").read_text(errors="replace")[-500:])
    assert proc.returncode == 0, proc.stderr
    r = only(pctest.records(store))
    entries = [json.loads(l) for l in (tmp_path / "journal.json").read_text().splitlines()]
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["SYSLOG_IDENTIFIER"] == "process-core"
    assert e["PRIORITY"] == "6"
    assert e["PROCESS_CORE_RECORD_ID"] == r["id"]
    assert e["PROCESS_CORE_HOSTNAME"] == "web01"
    assert e["PROCESS_CORE_EXECUTABLE"] == "/usr/bin/crasher"
    assert e["PROCESS_CORE_SIGNAL"] == "11" and e["PROCESS_CORE_SIGNAL_NAME"] == "SEGV"
    assert e["PROCESS_CORE_PID"] == str(pid)
    assert e["PROCESS_CORE_CORE"] == r["core"]["reason"]
    assert e["PROCESS_CORE_RECORD"].endswith(f"{r['id']}.json")
    if "signature" in r.get("crash", {}):
        assert e["PROCESS_CORE_SIGNATURE"] == r["crash"]["signature"]
    assert f"Process {pid} (/usr/bin/crasher) of host web01 crashed with SIGSEGV" in e["MESSAGE"]
    # systemd-coredump's fields and catalog id, for coredumpctl and queries made for it.
    assert sorted(e["MESSAGE_ID"]) == sorted([MESSAGE_ID, COREDUMP_MESSAGE_ID]), e["MESSAGE_ID"]
    assert e["COREDUMP_PID"] == str(pid) and e["COREDUMP_UID"] == "1000"
    assert e["COREDUMP_GID"] == "1001"
    assert e["COREDUMP_SIGNAL"] == "11" and e["COREDUMP_SIGNAL_NAME"] == "SIGSEGV"
    assert e["COREDUMP_EXE"] == "/usr/bin/crasher" and e["COREDUMP_HOSTNAME"] == "web01"
    assert e["COREDUMP_COMM"] == r["comm"]
    assert e["COREDUMP_TIMESTAMP"] == "1700000000000000"  # %t, in microseconds
    if r["core"]["present"]:
        assert e["COREDUMP_FILENAME"] == f"{store}/{r['core']['path']}"


def coredumpctl(cache):
    """systemd-coredump's coredumpctl, from its Debian package unpacked (not installed: the
    package would take core_pattern over). None when the package cannot be had."""
    tool = cache / "root/usr/bin/coredumpctl"
    if tool.exists():
        return tool
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "_apt", str(cache)], capture_output=True)
    got = subprocess.run(["apt-get", "download", "-q", "systemd-coredump"], cwd=cache,
                         capture_output=True, text=True)
    debs = list(cache.glob("systemd-coredump_*.deb"))
    if got.returncode != 0 or not debs:
        return None
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(cache / "root")], check=True)
    return tool if tool.exists() else None


def test_coredumpctl_finds_the_crash(handler, tmp_path, store, real_core):
    """coredumpctl reads process-core's crash line like one of systemd-coredump's: list and info
    show it, and dump decompresses the stored core (a zstd frame) back to the kernel's bytes."""
    needs_root()
    if not os.access("/lib/systemd/systemd-journald", os.X_OK):
        pytest.skip("systemd-journald is not installed")
    tool = coredumpctl(pathlib.Path("/var/tmp/process-core-coredumpctl"))
    if tool is None:
        pytest.skip("systemd-coredump's package could not be downloaded (apt-get download)")
    data, pid = real_core
    (tmp_path / "core").write_bytes(data)
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    after = (f"{tool} -D /run/log/journal --no-pager --no-legend list; echo ===; "
             f"{tool} -D /run/log/journal --no-pager info {pid}; echo ===; "
             f"{tool} -D /run/log/journal --no-pager dump {pid} -o {tmp_path}/dumped")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           JOURNAL_SCRIPT, "journal", str(handler), "--config", str(conf),
                           *recommended(pid)],
                          env=dict(os.environ, WORK=str(tmp_path), AFTER=after),
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 77:
        pytest.skip("systemd-journald does not start here")
    assert proc.returncode == 0, proc.stderr
    r = only(pctest.records(store))
    assert r["core"]["present"], r["core"]
    out = (tmp_path / "after.out").read_text()
    err = (tmp_path / "after.err").read_text()
    listed, info, _ = out.split("===\n")
    line = listed.strip().splitlines()
    assert len(line) == 1, (out, err)
    fields = line[0].split()
    # TIME (weekday, date, time, zone), PID, UID, GID, SIG, COREFILE, EXE, SIZE
    assert fields[4:10] == [str(pid), "1000", "1001", "SIGSEGV", "present", "/usr/bin/crasher"], line
    assert f"PID: {pid}" in info and "Signal: 11 (SEGV)" in info, info
    assert f"Storage: {store}/{r['core']['path']}" in info, info
    assert "Hostname: web01" in info, info
    assert (tmp_path / "dumped").read_bytes() == data, err


def test_coredumpctl_debug_runs_gdb_on_the_crash(handler, crasher, tmp_path, store, real_core):
    """coredumpctl debug on a process-core crash: coredumpctl finds the core by the journal's
    COREDUMP_FILENAME (our store, not /var/lib/systemd/coredump), decompresses the zstd frame
    itself and runs gdb on COREDUMP_EXE and that core: the backtrace reaches main."""
    needs_root()
    if not os.access("/lib/systemd/systemd-journald", os.X_OK):
        pytest.skip("systemd-journald is not installed")
    tool = coredumpctl(pathlib.Path("/var/tmp/process-core-coredumpctl"))
    if tool is None:
        pytest.skip("systemd-coredump's package could not be downloaded (apt-get download)")
    data, pid = real_core
    (tmp_path / "core").write_bytes(data)
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    # The crashed executable as the kernel names it (%E): the real one, for gdb to read.
    exe = str(crasher).replace("/", "!")
    after = (f"{tool} -D /run/log/journal --no-pager debug --debugger=gdb "
             f"-A '-batch -ex bt' {pid}; echo \"rc=$?\"")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           JOURNAL_SCRIPT, "journal", str(handler), "--config", str(conf),
                           *recommended(pid, exe=exe)],
                          env=dict(os.environ, WORK=str(tmp_path), AFTER=after),
                          capture_output=True, text=True, timeout=180)
    if proc.returncode == 77:
        pytest.skip("systemd-journald does not start here")
    assert proc.returncode == 0, proc.stderr
    r = only(pctest.records(store))
    assert r["core"]["present"] and r["core"]["path"].endswith(".core.zst"), r["core"]
    out = (tmp_path / "after.out").read_text()
    err = (tmp_path / "after.err").read_text()
    assert out.rstrip().endswith("rc=0"), (out, err)
    assert "#0 " in out and " in main " in out, (out, err)
    # coredumpctl's own header names our store's file as the storage it read.
    assert f"Storage: {store}/{r['core']['path']}" in err + out, (out, err)


STALLED_LOGGER_SCRIPT = textwrap.dedent("""\
    import os, socket, subprocess, sys
    # A private /run: the journal socket below is seen by nothing but this test's handler.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal")

    def stalled(path):
        # A logger that never reads (journald being dumped): its queue filled to the brim.
        # Senders until a new one finds the queue full at once (one sender alone may only fill
        # its own send buffer first).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        os.chmod(path, 0o666)  # as journald's: the handler writes as the store user
        fillers, sent = [], 0
        while len(fillers) < 1000:
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            filler.connect(path)
            fillers.append(filler)
            first = True
            while True:
                try:
                    filler.send(b"MESSAGE=filler\\n", socket.MSG_DONTWAIT)
                    sent += 1
                    first = False
                except BlockingIOError:
                    break
            if first:
                return (sock, fillers), sent
        return (sock, fillers), 0

    journal, sent = stalled("/run/systemd/journal/socket")
    # On systemd hosts /dev/log is journald's too (/run/systemd/journal/dev-log).
    dev_log, sent_log = stalled("/run/systemd/journal/dev-log")
    if os.path.exists("/dev/log"):
        subprocess.run(["mount", "--bind", "/run/systemd/journal/dev-log", "/dev/log"],
                       check=True)
        ours = False
    else:
        os.symlink("/run/systemd/journal/dev-log", "/dev/log")  # under the caller's machine lock
        ours = True
    try:
        with open(os.environ["WORK"] + "/core", "rb") as core:
            rc = subprocess.run(sys.argv[1:], stdin=core, timeout=60).returncode
    finally:
        if ours:
            os.unlink("/dev/log")
    sys.exit(rc if sent and sent_log else 77)
""")


@pytest.mark.parametrize("comm", ["systemd-journal", "crasher"])
def test_stalled_journal_never_blocks_the_crash_line(handler, tmp_path, store, real_core, comm):
    """The journal's sockets (its own and /dev/log) are read by journald, which may be the
    process being dumped: their queues then stay full until the handler is done. The handler
    still finishes, and its line goes to the kernel log instead."""
    needs_root()
    data, pid = real_core
    (tmp_path / "core").write_bytes(data)
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    args = [a for a in recommended(pid) if a != "--"]
    args = [str(handler), "--config", str(conf), f"-e{comm}", *args[:-3], "--", *args[-3:]]
    with pctest.machine_lock():
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "python3",
                                   "-c", STALLED_LOGGER_SCRIPT, *args],
                                  env=dict(os.environ, WORK=str(tmp_path)), capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode == 77:
                pytest.skip("the logger sockets' queues could not be filled")
            assert proc.returncode == 0, proc.stderr
            r = only(pctest.records(store))
            assert r["comm"] == comm
            lines = [t for _, t in read_kmsg_after(fd) if r["id"] in t and "crashed with" in t]
        finally:
            os.close(fd)
    assert len(lines) == 1, lines
    assert f"Process {pid} (/usr/bin/crasher) of host web01 crashed with SIGSEGV" in lines[0]
