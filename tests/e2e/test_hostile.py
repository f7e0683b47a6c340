"""Hostile crashes through the real kernel, by an unprivileged user (uid nobody).

Each test is an attack that once worked: a crash whose mapped files make the handler (root's
helper, outside the crasher's cgroup) burn CPU, a file name that decodes into another program's
path, a hostname with escape sequences or the shape of an option. Needs root and a writable
core_pattern (exit 77 otherwise); holds the machine lock and restores the pattern.
"""
import json
import os
import pathlib
import resource
import shutil
import struct
import subprocess
import sys
import time

import pytest

import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)

NOBODY = 65534


@pytest.fixture(scope="module")
def kernel():
    with pctest.kernel_rig("pch-", rate_limit_burst=0) as rig:
        yield rig.store, rig.work


def as_nobody():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def crash_as_nobody(argv, timeout=120):
    proc = subprocess.Popen([str(a) for a in argv], preexec_fn=as_nobody,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}: {err.decode()}"
    return proc.pid


def build_id_page(build_id):
    """An ELF header page whose one PT_NOTE holds a GNU build-id note."""
    note = struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 4, 120, 0, 0, len(note), len(note), 4)
    return ehdr + ph + note


def note_bomb(path):
    """An ELF file with 65535 PT_NOTE headers, each over the same 64 KiB of empty notes."""
    count, size = 0xFFFF, 64 << 10
    notes_off = 64 + count * 56
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 56, count, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 4, notes_off, 0, 0, size, size, 4)
    path.write_bytes(ehdr + ph * count + b"\0" * size)
    path.chmod(0o755)


MAPPER = """
import mmap, os, signal, sys
fake = bytes.fromhex(sys.argv[1])
keep = []
for p in sys.argv[2:]:
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    m[:len(fake)] = fake  # the core shows this build-id; the file on disk has 65535 note headers
    keep.append(m)
os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_mapped_note_bombs_cost_little(kernel):
    """8 hard links of a 65535-PT_NOTE file, mapped by the crasher: took the handler 40 s."""
    store, work = kernel
    d = work / "bomb"
    d.mkdir(mode=0o755)
    note_bomb(d / "lib0.so")
    links = [d / "lib0.so"]
    for i in range(1, 8):
        os.link(d / "lib0.so", d / f"lib{i}.so")
        links.append(d / f"lib{i}.so")
    fake = build_id_page(bytes(range(20)))
    start = time.monotonic()
    pid = crash_as_nobody([sys.executable, "-c", MAPPER, fake.hex(), *links])
    r = pctest.record_for(store, pid, timeout=120)
    elapsed = time.monotonic() - start
    assert r["handler"]["duration_ms"] < 5000, r["handler"]
    assert elapsed < 30
    # The checks still ran: each path has the core's build-id and none on disk.
    replaced = {m["path"] for m in r["mappings"]
                if any(f["kind"] == "replaced" for f in m.get("findings", []))}
    assert replaced == {str(p) for p in links}, r["mappings"]


def test_bang_in_a_file_name_is_not_a_path(kernel):
    """<dir>/a!..!..!..!usr!bin!passwd was recorded as /usr/bin/passwd's crash."""
    store, work = kernel
    target = work / "a!..!..!..!usr!bin!passwd"
    shutil.copy2(pctest.env_path("PC_CRASHER"), target)
    os.chmod(target, 0o755)
    pid = crash_as_nobody([target, "segv"])
    r = pctest.record_for(store, pid, timeout=120)
    assert r["executable"] == str(target)
    assert r["executable_raw"] == str(target).replace("/", "!")
    assert r["uid"] == NOBODY
    assert "passwd" in r["store"]["executable"] and ".." not in r["store"]["executable"].split("!")


SET_HOSTNAME = """
import os, socket, sys
socket.sethostname(sys.argv[1].encode("utf-8", "surrogateescape"))
os.execv(sys.argv[2], sys.argv[2:])
"""


def in_own_uts(hostname, *argv):
    """argv run as nobody in a user + UTS namespace of its own, with `hostname`."""
    return ["unshare", "--user", "--map-root-user", "--uts", sys.executable, "-c", SET_HOSTNAME,
            hostname, *map(str, argv)]


@pytest.mark.parametrize("hostname", [
    "\x1b]0;TITLE\x07evil",
    "--store=/tmp/pc-hostile-elsewhere",
    "--config=/etc/shadow",
    "h\nJan  1 00:00:00 host sshd[1]: Accepted password for root",
])
def test_hostname_is_data(kernel, hostname):
    """A container's hostname is recorded as it is, never used as an option or raw text."""
    store, work = kernel
    elsewhere = pathlib.Path("/tmp/pc-hostile-elsewhere")
    pid = crash_as_nobody(in_own_uts(hostname, pctest.env_path("PC_CRASHER"), "segv"))
    r = pctest.record_for(store, pid, timeout=120)
    # The kernel writes '/' in %h as '!' (cn_esc_printf), like in %E.
    assert r["hostname"] == hostname.replace("/", "!")
    assert not elsewhere.exists()
    env = dict(os.environ, XDG_CACHE_HOME="/nonexistent", NO_COLOR="")
    for args in (["list"], ["info", r["id"]], ["groups"]):
        out = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(work / "c"), *args],
                             capture_output=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert b"\x1b" not in out.stdout + out.stderr and b"\x07" not in out.stdout
        assert b"\nJan  1" not in out.stdout


def test_minimal_pattern_hostname_is_no_option(kernel):
    """|process-core --config=… %h %s %E: a hostname --store=… stays a hostname."""
    store, work = kernel
    with pctest.core_pattern(f"|{work}/h --config={work}/c %h %s %E"):
        pid = crash_as_nobody(in_own_uts("--store=/tmp/pc-hostile-elsewhere",
                                         pctest.env_path("PC_CRASHER"), "abort"))
        found = pctest.wait_until(lambda: [
            r for r in pctest.records(store)
            if r["hostname"] == "--store=!tmp!pc-hostile-elsewhere" and r["signal_name"] == "ABRT"],
            timeout=60)
    assert found, pctest.records(store)
    assert not pathlib.Path("/tmp/pc-hostile-elsewhere").exists()
    assert pid > 0


def test_options_expanded_from_specifiers_are_ignored(kernel):
    """From the kernel, --config counts only as core_pattern spells it, not as %h expands it:
    the expanded one is ignored and the pattern's own --config stays in force."""
    store, work = kernel
    with pctest.core_pattern(f"|{work}/h --config={work}/c --config=%h --store={store} "
                             "-P%P -F%F -- %h %s %E"):
        pid = crash_as_nobody(in_own_uts("evil.conf", pctest.env_path("PC_CRASHER"), "segv"))
        r = pctest.record_for(store, pid, timeout=120)
    assert r["hostname"] == "evil.conf"
    assert any("ignored --config 'evil.conf'" in w for w in r["handler"]["warnings"]), r["handler"]
