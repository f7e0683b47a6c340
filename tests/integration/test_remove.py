"""corectl remove: users remove their own crashes through the removal service, root any crash
directly; the exporter's counters never go down. The service is the real process-core-remove,
run as the store user once per connection on a socket the test listens on, as systemd's
process-core-remove.socket (Accept=yes) runs it; the requests come from real corectl processes
of other uids, and hostile ones straight from the socket."""
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import corefixture
import pcexporter
import pctest

ARGS = ["-P4242", "-I4242", "-u{uid}", "-g{uid}", "-t1700000000", "-c18446744073709551615",
        "-d1", "--", "web01", "11", "!usr!bin!crasher"]
STORE_USER = 65534  # nobody, as pctest.make_store and write_config use


def needs_root():
    if not pctest.is_root():
        pytest.skip("needs root: the handler drops to the store user, requests come from other uids")


def become(uid):
    def fn():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return fn


class Service:
    """A listening socket; each connection runs process-core-remove as the store user with the
    connection on its stdin (what process-core-remove@.service gets from systemd)."""

    def __init__(self, base, conf):
        self.path = str(base / "remove.sock")
        self.log = base / "remove.log"
        self.conf = conf
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(16)
        self.runs = []  # exit statuses of the instances
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, open(self.log, "a") as log:
                p = subprocess.Popen([str(pctest.env_path("PC_REMOVE")), "--config", str(self.conf)],
                                     stdin=conn.fileno(), stdout=subprocess.DEVNULL, stderr=log,
                                     preexec_fn=become(STORE_USER))
            threading.Thread(target=lambda: self.runs.append(p.wait(timeout=60)), daemon=True).start()

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def rig(handler):
    """A store with crashes of uid 3001 (two) and 3002 (one) and the service for it."""
    needs_root()
    base = pathlib.Path(tempfile.mkdtemp(prefix="pcr", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        store = pctest.make_store(base)
        conf = pctest.write_config(base / "pc.conf", store, rate_limit_burst=0)
        os.chmod(conf, 0o644)
        for uid in (3001, 3001, 3002):
            proc = subprocess.run([str(handler), "--config", str(conf),
                                   *[a.format(uid=uid) for a in ARGS]],
                                  input=corefixture.elf_core(auxv_ids=(uid, uid)),
                                  capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
        service = Service(base, conf)
        try:
            yield base, store, conf, service
        finally:
            service.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def corectl(conf, uid, *args, socket_path=None):
    env = {"PATH": os.environ["PATH"], "TZ": "UTC", "CORECTL_CACHE": "0"}
    if socket_path:
        env["PROCESS_CORE_REMOVE_SOCKET"] = socket_path
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(conf), "--no-pager",
                           *args], preexec_fn=become(uid) if uid else None, env=env,
                          capture_output=True, text=True, timeout=90)


def ids_of(store, uid):
    return sorted(r["id"] for r in pctest.records(store) if r["uid"] == uid)


def ask(path, data, shut=True, timeout=30):
    """Sends raw bytes to the service as the calling process; returns its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        with contextlib.suppress(OSError):
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
        return out


def ask_as(uid, path, data):
    """ask() from a child process running as `uid` (SO_PEERCRED names that uid)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            become(uid)()
            os.write(w, ask(path, data))
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out


def place(record):
    """<host>/<exe>/<id> of a record, as the protocol names a crash."""
    return "/".join(pathlib.Path(record["_path"]).parts[-3:-1] + (record["id"],))


def total(metrics):
    return sum(pcexporter.crashes(metrics).values())


def test_a_user_removes_their_own_crash_through_the_service_and_counters_stay(rig):
    base, store, conf, service = rig
    mine, theirs = ids_of(store, 3001), ids_of(store, 3002)
    view = store / ".by-user" / "3001"
    assert sorted(os.listdir(view)) == mine
    with pcexporter.Exporter(store, conf, base) as exporter:
        before, _ = exporter.wait_for(lambda m: total(m) == 3)
        r = corectl(conf, 3001, "remove", mine[0], socket_path=service.path)
        assert r.returncode == 0, r.stderr + service.log.read_text()
        assert f"Removed {mine[0]}" in r.stdout and "Removed 1 of 1" in r.stdout, r.stdout
        assert not list(store.rglob(f"{mine[0]}*")), "core and record are gone"
        assert sorted(os.listdir(view)) == mine[1:], "the view's link went with them"
        assert ids_of(store, 3001) == mine[1:] and ids_of(store, 3002) == theirs
        # The ledger counts the crash: the exporter's counter stays at 3 (also after a restart).
        # (once it has seen the core go: processcore_stored_bytes went down).
        stored = pcexporter.value(before, "processcore_stored_bytes")
        after, _ = exporter.wait_for(
            lambda m: pcexporter.value(m, "processcore_stored_bytes") < stored)
        assert pcexporter.crashes(after) == pcexporter.crashes(before)
    with pcexporter.Exporter(store, conf, base) as exporter:
        assert pcexporter.crashes(exporter.scrape()) == pcexporter.crashes(before)
    assert "uid 3001: removed" in service.log.read_text()

    # Another user's crash is not theirs: corectl does not even see it, the service refuses it.
    r = corectl(conf, 3001, "remove", theirs[0], socket_path=service.path)
    assert r.returncode in (3, 4), r.stdout + r.stderr
    assert ids_of(store, 3002) == theirs
    their_record = [x for x in pctest.records(store) if x["uid"] == 3002][0]
    answer = ask_as(3001, service.path,
                    f"process-core-remove 1\n{place(their_record)}\n\n".encode())
    assert answer == f"ok\nnot-yours {theirs[0]}\nend\n".encode()
    assert ids_of(store, 3002) == theirs
    # A uid with no crash at all, an id that does not exist.
    answer = ask_as(3003, service.path, f"process-core-remove 1\n{place(their_record)}\n"
                                        f"web01/usr!bin!crasher/0123456789abcdef\n\n".encode())
    assert answer == f"ok\nnot-yours {theirs[0]}\nnot-found 0123456789abcdef\nend\n".encode()
    assert ids_of(store, 3002) == theirs

    # Removing by match takes every crash of the user's that matches, and nobody else's.
    r = corectl(conf, 3001, "remove", "crasher", socket_path=service.path)
    assert r.returncode == 0 and "Removed 1 of 1" in r.stdout, r.stdout + r.stderr
    assert ids_of(store, 3001) == [] and ids_of(store, 3002) == theirs
    assert all(rc == 0 for rc in service.runs), service.runs


def test_root_removes_any_crash_directly(rig):
    base, store, conf, service = rig
    theirs = ids_of(store, 3002)
    with pcexporter.Exporter(store, conf, base) as exporter:
        before, _ = exporter.wait_for(lambda m: total(m) == 3)
        # No service needed: the socket named does not exist.
        r = corectl(conf, 0, "remove", "UID=3002", socket_path=str(base / "absent.sock"))
        assert r.returncode == 0, r.stderr
        assert f"Removed {theirs[0]}" in r.stdout
        assert ids_of(store, 3002) == [] and len(ids_of(store, 3001)) == 2
        assert not (store / ".by-user" / "3002" / theirs[0]).is_symlink()
        stored = pcexporter.value(before, "processcore_stored_bytes")
        after, _ = exporter.wait_for(
            lambda m: pcexporter.value(m, "processcore_stored_bytes") < stored)
        assert pcexporter.crashes(after) == pcexporter.crashes(before)
    # Everything the store user needs stays the store user's.
    assert (store / ".ledger.json").stat().st_uid == STORE_USER
    r = corectl(conf, 0, "remove", "0123456789abcdef")
    assert r.returncode == 3, r.stdout + r.stderr
    r = corectl(conf, 0, "remove")
    assert r.returncode == 2 and "remove takes the crashes" in r.stderr, r.stderr


def test_without_the_service_a_user_is_told_what_is_missing(rig):
    base, store, conf, _ = rig
    mine = ids_of(store, 3001)
    absent = str(base / "absent.sock")
    r = corectl(conf, 3001, "remove", mine[0], socket_path=absent)
    assert r.returncode == 1
    assert absent in r.stderr and "process-core-remove.socket" in r.stderr, r.stderr
    assert "sudo corectl remove" in r.stderr, r.stderr
    assert ids_of(store, 3001) == mine


def test_hostile_requests_are_refused_whole(rig):
    base, store, conf, service = rig
    mine = [x for x in pctest.records(store) if x["uid"] == 3001]
    hello = b"process-core-remove 1\n"
    cases = {
        b"GET / HTTP/1.0\r\n\r\n": b"error not a process-core-remove 1 request\n",
        hello + b"../../etc/passwd\n\n": b"error malformed crash on line 2\n",
        hello + b"web01/../0123456789abcdef\n\n": b"error malformed crash on line 2\n",
        hello + b"web01/usr!bin!crasher/0123456789ABCDEF\n\n": b"error malformed crash on line 2\n",
        hello + b"web01/usr!bin!crasher\0x/0123456789abcdef\n\n": b"error malformed crash on line 2\n",
        hello + b"\n": b"error no crash named\n",
        hello + (place(mine[0]) + "\n").encode() * 101 + b"\n": b"error more than 100 crashes\n",
        hello + b"x" * (70 << 10): b"error request larger than 65536 bytes\n",
        hello + (place(mine[0]) + "\n\nmore\n").encode(): b"error data after the request\n",
    }
    for request, expected in cases.items():
        assert ask_as(3001, service.path, request) == expected, request[:80]
    # Without an end (neither an empty line nor the end of the stream) the service gives up
    # after its deadline of 10 s, and nothing was removed.
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(service.path)
        s.sendall(hello)
        assert s.recv(4096) == b"error request not complete within 10 s\n"
    assert 9 < time.monotonic() - start < 20
    assert len(ids_of(store, 3001)) == 2
    # A record planted in its place by the store's owner (a link) is not followed.
    rec = pathlib.Path(mine[0]["_path"])
    link = rec.with_name("fedcba9876543210.json")
    link.symlink_to(rec.name)
    answer = ask_as(3001, service.path,
                    f"process-core-remove 1\n{place(mine[0]).rsplit('/', 1)[0]}/fedcba9876543210\n"
                    "\n".encode())
    assert answer == b"ok\nnot-yours fedcba9876543210\nend\n"
    assert link.is_symlink() and rec.exists()
    pctest.wait_until(lambda: len(service.runs) == len(cases) + 2, 20)
    assert service.runs == [0] * (len(cases) + 2), service.runs


def test_corectl_treats_the_service_answers_as_untrusted(rig):
    """A socket that answers garbage, too much, or never: corectl says so, bounded in time."""
    base, store, conf, _ = rig
    mine = ids_of(store, 3001)
    answers = [b"ok\nremoved 0000000000000000\nend\n",
               b"ok\n" + b"removed " + mine[0].encode() + b"\n" * 100000,
               b"error \x1b[31mred\x1b[0m\n"]
    for answer in answers:
        path = str(base / "fake.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o666)
        srv.listen(1)

        def reply():
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):
                    conn.sendall(answer)

        t = threading.Thread(target=reply, daemon=True)
        t.start()
        r = corectl(conf, 3001, "remove", mine[0], socket_path=path)
        t.join(10)
        srv.close()
        assert r.returncode == 1, r.stdout + r.stderr
        assert "\x1b" not in r.stderr and "Removed" not in r.stdout, r.stderr
        assert "Unexpected answer" in r.stderr or "refused the request: \\x1b[31mred" in r.stderr, r.stderr
    assert ids_of(store, 3001) == mine
