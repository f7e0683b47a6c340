"""Where the handler's one line per crash goes: the journal with structured fields when journald
runs, syslog otherwise, and /dev/kmsg when neither is reachable (it is never lost)."""
import json
import os
import subprocess
import textwrap

import pytest

import pctest
from test_handler import only, recommended

MESSAGE_ID = "dbba4d8a928544e79ac34a21f9399051"


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
