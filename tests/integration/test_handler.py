"""The real process-core binary, fed real cores with kernel-style argv."""
import contextlib
import fcntl
import os
import pathlib
import re
import shutil
import stat
import subprocess
import time

import pytest

import corefixture
import pctest
from conftest import all_files

RECOMMENDED = ["-P{pid}", "-I{pid}", "-u1000", "-g1001", "-t1700000000",
               "-c18446744073709551615", "-d1", "--"]


def recommended(pid, host="web01", signal="11", exe="!usr!bin!crasher"):
    return [a.format(pid=pid) for a in RECOMMENDED] + [host, signal, exe]


def only(records):
    assert len(records) == 1, records
    return records[0]


def test_real_core_is_stored_byte_identical(run_handler, real_core, store):
    data, pid = real_core
    proc, recs = run_handler(recommended(pid), stdin=data)
    assert proc.returncode == 0, proc.stderr
    r = only(recs)
    assert r["hostname"] == "web01"
    assert r["executable"] == "/usr/bin/crasher"
    assert (r["signal"], r["signal_name"]) == (11, "SEGV")
    assert (r["pid"], r["tid"], r["uid"], r["gid"]) == (pid, pid, 1000, 1001)
    assert r["time"] == "2023-11-14T22:13:20Z"
    assert r["dump_mode"] == 1 and r["rlimit_core"] == 2**64 - 1
    core = r["core"]
    assert core["present"] and core["reason"] == "stored" and not core["truncated"]
    assert core["size"] == len(data)
    core_path = pathlib.Path(store) / core["path"]
    assert core["stored_size"] == core_path.stat().st_size < len(data)
    assert pctest.zstd_decompress(core_path) == data
    assert r["_path"] == str(pathlib.Path(store) / "web01" / "usr!bin!crasher" / f"{r['id']}.json")
    # Cores hold process memory: the store user, and through an ACL entry the crashing user
    # (%u, dump mode 1) only. Records: also the store's group (the exporter).
    acl = subprocess.run(["getfacl", "-cn", str(core_path)], capture_output=True,
                         check=True).stdout.decode().split()
    expected = ["user::rw-", "user:1000:r--", "group::---", "mask::r--", "other::---"]
    assert sorted(acl) == sorted(expected), f"core readable beyond the store user: {acl}"
    for p in (core_path, pathlib.Path(r["_path"])):
        mode = p.stat().st_mode
        assert mode & (stat.S_IRWXO) == 0, f"{p} is readable by others"
        if pctest.is_root():
            assert p.stat().st_uid == 65534, "the handler did not drop to the store user"


def test_minimal_form(run_handler, real_core, store):
    data, pid = real_core
    proc, recs = run_handler(["db-7", "6", "!opt!app!bin!server"], stdin=data)
    assert proc.returncode == 0
    r = only(recs)
    assert (r["hostname"], r["signal_name"], r["executable"]) == ("db-7", "ABRT",
                                                                 "/opt/app/bin/server")
    # No %P: the pid comes from the core's NT_PRPSINFO (the crasher's own pid namespace).
    assert r["pid"] == pid and r["dump_mode"] is None
    # Without %d the handler cannot rule out a privilege-changed process.
    assert r["core"]["access"] == "root"
    assert pctest.zstd_decompress(pathlib.Path(store) / r["core"]["path"]) == data


def test_executable_split_on_spaces_is_joined(run_handler, real_core):
    data, _ = real_core
    _, recs = run_handler(["h", "11", "!tmp!my", "crashy", "app"], stdin=data)
    r = only(recs)
    assert r["executable"] == "/tmp/my crashy app"
    assert r["store"]["executable"].startswith("tmp!my_crashy_app~")


def test_setuid_core_is_root_only(run_handler, real_core):
    data, pid = real_core
    _, recs = run_handler([a.replace("-d1", "-d2") for a in recommended(pid)], stdin=data)
    r = only(recs)
    assert r["dump_mode"] == 2 and r["core"]["access"] == "root"


def test_empty_stdin(run_handler, store):
    proc, recs = run_handler(recommended(1), stdin=b"")
    r = only(recs)
    assert not r["core"]["present"] and r["core"]["reason"] == "empty"
    assert r["core"]["path"] is None
    assert all_files(store) == ["web01", "web01/usr!bin!crasher",
                                f"web01/usr!bin!crasher/{r['id']}.json"]


def test_non_elf_bytes_are_kept_and_flagged(run_handler, store):
    junk = b"this is not an ELF core\n" * 1000
    _, recs = run_handler(recommended(1), stdin=junk)
    r = only(recs)
    assert r["core"]["present"] and r["core"]["reason"] == "not_elf"
    assert pctest.zstd_decompress(pathlib.Path(store) / r["core"]["path"]) == junk


def test_core_cut_short_is_truncated(run_handler, real_core, store):
    data, pid = real_core
    cut = data[: len(data) // 2]
    _, recs = run_handler(recommended(pid), stdin=cut)
    r = only(recs)
    core = r["core"]
    assert core["present"] and core["truncated"] and core["reason"] == "truncated"
    assert core["size"] == len(cut)
    # gdb appends section headers the program headers do not cover: the expected size lies
    # between what was cut and the whole file.
    assert len(cut) < core["expected_size"] <= len(data)
    assert "ended after" in core["error"]
    assert pctest.zstd_decompress(pathlib.Path(store) / core["path"]) == cut


def test_rlimit_below_a_page_means_no_core(run_handler, real_core, store):
    data, pid = real_core
    args = [a.replace("-c18446744073709551615", "-c0") for a in recommended(pid)]
    _, recs = run_handler(args, stdin=data)
    r = only(recs)
    assert r["rlimit_core"] == 0
    assert not r["core"]["present"] and r["core"]["reason"] == "rlimit"
    # Not stored, so read only as far as the scanner looks (notes, build-ids, stack): the core
    # is still measured from its headers and its crash site found.
    assert 0 < r["core"]["size"] <= len(data)
    assert r["core"]["expected_size"] and r["crash"]["si_code_name"]
    assert not list(pathlib.Path(store).rglob("*.core.zst"))


def test_size_cap_stores_a_truncated_prefix(run_handler, real_core, store):
    data, pid = real_core
    _, recs = run_handler(recommended(pid), stdin=data, max_core_size="256K")
    core = only(recs)["core"]
    assert core["present"] and core["truncated"] and core["reason"] == "truncated"
    assert core["error"] == "cut at max_core_size"
    # Past the cap only the scanner reads on, and at most 32 MiB (its notes, build-ids, stack):
    # a cap below the notes never costs the crash site, and a big core is never drained.
    assert 256 * 1024 <= core["size"] <= len(data)
    assert only(recs)["crash"]["si_code_name"] and only(recs)["crash"]["stacks"]
    assert pctest.zstd_decompress(pathlib.Path(store) / core["path"]) == data[: 256 * 1024]


def test_rate_limit_per_executable(run_handler, real_core):
    data, pid = real_core
    for _ in range(3):
        _, recs = run_handler(recommended(pid), stdin=data, rate_limit_burst=2)
    reasons = sorted(r["core"]["reason"] for r in recs)
    assert reasons == ["rate_limited", "stored", "stored"]
    # A crasher that changes its hostname (a container can) is still the same executable.
    _, recs = run_handler(recommended(pid, host="elsewhere"), stdin=data, rate_limit_burst=2)
    assert [r["core"]["reason"] for r in recs if r["hostname"] == "elsewhere"] == ["rate_limited"]
    # Another executable is not affected.
    _, recs = run_handler(recommended(pid, exe="!usr!bin!other"), stdin=data, rate_limit_burst=2)
    assert [r["core"]["reason"] for r in recs if r["executable"] == "/usr/bin/other"] == ["stored"]


def test_quota_reached(run_handler, real_core):
    data, pid = real_core
    _, recs = run_handler(recommended(pid), stdin=data, max_use="1K")
    r = only(recs)
    assert not r["core"]["present"] and r["core"]["reason"] == "quota"


def long_mapped_files_core():
    """A core whose NT_FILE lists 100 mapped files with ~3 KB paths: 300 KB of mapping list, which
    a full record keeps up to k_record_max (256 KiB)."""
    return corefixture.elf_core(
        pid=5000001, files=[b"/" + (b"d" * 250 + b"/") * 12 + b"lib%03d.so" % i for i in range(100)])


def crash_loop(handler, conf, data, n):
    """`n` crashes of one executable through the real handler, each with `data` on stdin."""
    args = [a.format(pid=5000001) for a in RECOMMENDED] + ["web01", "11", "!usr!bin!loop"]
    for _ in range(n):
        subprocess.run([str(handler), "--config", str(conf), *args], input=data,
                       capture_output=True, timeout=60, check=True)


def test_long_mapped_files_make_a_large_record_when_there_is_room(handler, tmp_path, store):
    """The control for the test below: with room, this core's record is a large one."""
    conf = pctest.write_config(tmp_path / "pc.conf", store, keep_free=0, max_use="100%")
    crash_loop(handler, conf, long_mapped_files_core(), 1)
    r = only(pctest.records(store))
    assert r["core"]["reason"] == "stored"
    assert len(r["mappings"]) > 10
    assert pathlib.Path(r["_path"]).stat().st_size > 100 << 10


@pytest.mark.parametrize("limit,reason", [({"keep_free": "1000T"}, "disk_full"),
                                          ({"keep_free": 0, "max_use": "1K"}, "quota")])
def test_no_room_means_minimal_records(handler, tmp_path, store, limit, reason):
    """A store past keep_free (or max_use) and a crash loop of cores with long mapped-file names:
    every crash still gets a record with its identity and core.reason, but a minimal one, so that
    the records do not fill the disk the configuration says is full (they were 256 KiB each)."""
    conf = pctest.write_config(tmp_path / "pc.conf", store, rate_limit_burst=0, **limit)
    crash_loop(handler, conf, long_mapped_files_core(), 100)
    recs = pctest.records(store)
    assert len(recs) == 100
    sizes = [pathlib.Path(r["_path"]).stat().st_size for r in recs]
    for r in recs:
        assert r["core"]["reason"] == reason and not r["core"]["present"], r["core"]
        assert r["pid"] == 5000001 and r["signal_name"] == "SEGV" and r["uid"] == 1000
        assert r["executable"] == "/usr/bin/loop" and r["hostname"] == "web01"
        assert not r.get("mappings") and not r.get("crash"), r
        assert any(c.startswith("minimal record: " + reason) for c in r["handler"]["cut"])
    assert max(sizes) <= 16 << 10, max(sizes)
    assert sum(sizes) <= 100 * (16 << 10), sum(sizes)


def test_records_count_in_the_usage_estimate(run_handler, real_core, store):
    """Between two walks of the store, the handler's usage estimate (.usage, what max_use is
    checked against) grows by each record it writes, not only by each core."""
    data, pid = real_core
    usage = store / ".usage"
    usage.write_text(f"0 {int(time.time())}\n")
    if pctest.is_root():
        shutil.chown(usage, user="nobody")
    args = [a.replace("-c18446744073709551615", "-c0") for a in recommended(pid)]
    _, recs = run_handler(args, stdin=data)  # RLIMIT_CORE 0: a record and no core
    r = only(recs)
    assert r["core"]["reason"] == "rlimit"
    assert int(usage.read_text().split()[0]) == pathlib.Path(r["_path"]).stat().st_size


HOSTILE = [
    "..", ".", "/", "../../../../tmp/evil", "a/b", 'quo"te', "new\nline", "x" * 300,
    "bad\xff\xfeutf8", "-rf", "--", "$(reboot)", "",
]


@pytest.mark.parametrize("host", HOSTILE)
def test_hostile_hostnames_stay_inside_the_store(run_handler, real_core, store, tmp_path, host):
    data, pid = real_core
    raw = host.encode("latin-1") if "\xff" in host else host.encode()
    args = [a.encode() for a in recommended(pid)]
    args[-3] = raw
    proc, recs = run_handler(args, stdin=data[:8192])
    assert proc.returncode == 0, proc.stderr
    r = only(recs)
    parent = pathlib.Path(r["_path"]).parent
    assert parent.parent.parent == pathlib.Path(store)
    assert r["hostname"] == (raw.decode("utf-8", "replace") if host else os.uname().nodename)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pc.conf", "run", "store"]


@pytest.mark.parametrize("exe", [
    "!..!..!etc!passwd", "..", "!tmp!a b!c", '!tmp!"q"', "!tmp!new\nline", "!" + "y" * 400,
    "!bin!bad\xff", "!usr!bin!app (deleted)", "",
])
def test_hostile_executables_stay_inside_the_store(run_handler, store, tmp_path, exe):
    raw = exe.encode("latin-1")
    args = [a.encode() for a in recommended(1)]
    args[-1] = raw
    proc, recs = run_handler(args, stdin=b"\x7fELF" + b"\0" * 100)
    assert proc.returncode == 0, proc.stderr
    r = only(recs)
    assert pathlib.Path(r["_path"]).parent.parent.parent == pathlib.Path(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pc.conf", "run", "store"]
    if exe.endswith(" (deleted)"):
        assert r["executable"] == "/usr/bin/app" and r["executable_deleted"]


def test_unwritable_store_logs_the_whole_record(handler, tmp_path, real_core):
    data, pid = real_core
    store = tmp_path / "ro-store"
    store.mkdir()
    os.chmod(store, 0o555)  # root-owned when root: the dropped user cannot write it either
    conf = pctest.write_config(tmp_path / "pc.conf", store)
    with pctest.machine_lock(), pctest.SyslogCapture() as log:
        proc = subprocess.run([str(handler), "--config", str(conf), *recommended(pid)],
                              input=data, capture_output=True, timeout=60)
        assert proc.returncode == 1
        assert list(store.iterdir()) == []
        if log.active:
            lines = log.wait_for(lambda l: "record NOT written" in l)
            assert lines and '"hostname":"web01"' in lines[0], log.lines


def test_one_syslog_line_per_crash(run_handler, real_core):
    data, pid = real_core
    with pctest.machine_lock(), pctest.SyslogCapture() as log:
        if not log.active:
            pytest.skip("needs root and no syslog daemon on /dev/log to capture lines")
        _, recs = run_handler(recommended(pid), stdin=data)
        r = only(recs)
        lines = log.wait_for(lambda l: r["id"] in l and "crashed with SIGSEGV" in l)
        assert len(lines) == 1, log.lines
        assert f"Process {pid} (/usr/bin/crasher) of host web01" in lines[0]
        assert "core stored" in lines[0]


def test_tiny_tmpfs_that_fills_up(handler, tmp_path, crasher):
    if not pctest.is_root():
        pytest.skip("mounting a tmpfs needs root")
    with pctest.tmpfs(tmp_path / "tiny", "3m") as mnt:
        store = pctest.make_store(mnt)
        conf = pctest.write_config(tmp_path / "pc.conf", store, keep_free=0, max_use="100%")
        incompressible = os.urandom(6 << 20)  # bigger than the whole file system

        def run(stdin):
            subprocess.run([str(handler), "--config", str(conf), *recommended(1)],
                           input=stdin, capture_output=True, timeout=60)

        run(b"\x7fELF" + incompressible)
        recs = pctest.records(store)
        first = only(recs)["core"]
        assert first["present"] and first["truncated"] and first["reason"] == "truncated"
        # Reading stopped at the cut instead of draining the rest of the stream.
        assert first["size"] < len(incompressible) + 4
        # Fill the file system to within 512 KiB: the next crash gets a record and no core.
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        with open(mnt / "filler", "wb") as f:
            f.write(b"\0" * max(0, free - (512 << 10)))
        run(b"\x7fELF" + incompressible)
        recs = pctest.records(store)
        assert len(recs) == 2
        second = [r for r in recs if r["core"]["path"] != first["path"]][0]["core"]
        assert not second["present"] and second["reason"] == "disk_full"
        # Nothing but the records and the one core: no partial files.
        names = [p.name for p in store.rglob("*") if p.is_file() and p.name != ".usage"]
        assert sorted(n.split(".", 1)[1] for n in names) == ["core.zst", "json", "json"]


def test_help_does_not_read_stdin(handler):
    proc = subprocess.run([str(handler), "--help"], input=b"", capture_output=True, timeout=10)
    assert proc.returncode == 0 and b"core_pattern" in proc.stdout


def kill_mid_stream(handler, conf, store):
    """Starts the handler on a 4 MiB core and kills it (SIGKILL: the OOM killer, an admin) while
    its temporary core holds compressed data. Returns that file's path as /proc showed it."""
    proc = subprocess.Popen([str(handler), "--config", str(conf), *recommended(1)],
                            stdin=subprocess.PIPE)
    try:
        # Returns once the handler has read all but the last pipeful: it is streaming.
        proc.stdin.write(b"\x7fELF" + os.urandom(4 << 20))
        proc.stdin.flush()
        temporaries = pctest.wait_until(
            lambda: [target for fd, target in pctest.open_files(proc.pid, store).items()
                     if not target.endswith(".reserved") and fd.stat().st_size > 0],
            timeout=30, what="a temporary core with data in it")
    finally:
        proc.kill()
        proc.wait()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    assert len(temporaries) == 1, temporaries
    return temporaries[0]


def left_behind(store):
    return sorted(str(p.relative_to(store)) for p in pathlib.Path(store).rglob("*")
                  if p.is_file() and p.name != ".usage")


def test_handler_killed_mid_stream_leaves_nothing_with_o_tmpfile(handler, tmp_path):
    """On a file system with O_TMPFILE (tmpfs, ext4, xfs, btrfs) the partial core has no name:
    the kernel frees it with the killed handler."""
    if not pctest.is_root():
        pytest.skip("mounting a tmpfs and reading the handler's /proc/<pid>/fd need root")
    with pctest.tmpfs(tmp_path / "tmpfs", "64m") as mnt:
        store = pctest.make_store(mnt)
        conf = pctest.write_config(tmp_path / "pc.conf", store)
        temporary = kill_mid_stream(handler, conf, store)
        assert re.fullmatch(r".*/#\d+ \(deleted\)", temporary), temporary  # unnamed
        left = left_behind(store)
        # At most its rate-limit reservation (the uid it counts for), which no longer counts:
        # nobody holds its lock.
        assert all(p.endswith(".reserved") and (store / p).read_text() == "1000"
                   for p in left), left
        # The next capture of the executable finds it dead and removes it.
        subprocess.run([str(handler), "--config", str(conf), *recommended(2)], input=b"\x7fELF",
                       capture_output=True, timeout=60, check=True)
        assert not list(store.rglob("*.reserved"))
        assert not list(store.rglob(".#*"))
        assert len(pctest.records(store)) == 1


def test_handler_killed_mid_stream_leaves_a_hidden_temporary_without_o_tmpfile(handler, tmp_path):
    """Where the file system lacks O_TMPFILE (FUSE, vfat, NFS) the partial core has a hidden
    name that nothing takes for a core: no record points at it, and `corectl vacuum` removes
    it once it is older than any capture still under way."""
    if not pctest.is_root():
        pytest.skip("mounting a FUSE file system and reading /proc/<pid>/fd need root")
    if shutil.which("bindfs") is None:
        pytest.skip("needs bindfs (a FUSE file system without O_TMPFILE)")
    with pctest.bindfs(tmp_path / "fuse") as mnt:
        store = pctest.make_store(mnt)
        conf = pctest.write_config(tmp_path / "pc.conf", store)
        temporary = pathlib.Path(kill_mid_stream(handler, conf, store))
        m = re.fullmatch(r"\.#([0-9a-f]{16})\.core\.zst\.[0-9a-f]{12}", temporary.name)
        assert m and temporary.parent.parent.parent == store, temporary
        # Its partial core under the hidden name, and its empty, unlocked reservation.
        exe_dir = temporary.parent.relative_to(store)
        assert left_behind(store) == sorted([str(exe_dir / temporary.name),
                                             str(exe_dir / f".#{m[1]}.reserved")])
        assert temporary.stat().st_size > 0
        assert not pctest.records(store)
        # The next capture of the executable removes the dead reservation, not the temporary:
        # a capture still under way could own it.
        subprocess.run([str(handler), "--config", str(conf), *recommended(2)], input=b"\x7fELF",
                       capture_output=True, timeout=60, check=True)
        assert not list(store.rglob("*.reserved"))
        assert len(pctest.records(store)) == 1 and temporary.exists()
        # Vacuum leaves a young one alone and removes it once older than any capture can be.
        vacuum = [str(pctest.env_path("PC_CORECTL")), "--config", str(conf), "vacuum"]
        subprocess.run(vacuum, capture_output=True, timeout=60, check=True)
        assert temporary.exists()
        old = time.time() - 3600
        os.utime(temporary, (old, old))
        out = subprocess.run(vacuum, capture_output=True, text=True, timeout=60, check=True)
        assert f"Removing {exe_dir / temporary.name}" in out.stdout, out.stdout
        assert not temporary.exists()
        assert not list(store.rglob(".#*")) and len(pctest.records(store)) == 1


def test_hostname_cannot_forge_log_lines(run_handler, real_core):
    data, pid = real_core
    forged = "h\nJan  1 00:00:00 host sshd[1]: Accepted password for root"
    with pctest.machine_lock(), pctest.SyslogCapture() as log:
        if not log.active:
            pytest.skip("needs root and no syslog daemon on /dev/log to capture lines")
        _, recs = run_handler([*recommended(pid)[:-3], forged, "11", "!usr!bin!crasher"],
                              stdin=data[:65536])
        r = only(recs)
        lines = log.wait_for(lambda l: r["id"] in l and "crashed with" in l)
        assert len(lines) == 1 and "\n" not in lines[0].rstrip("\n")
        assert "host h\\x0aJan  1" in lines[0]
        assert not any(l.startswith("Jan  1 00:00:00 host sshd") for l in log.lines)


def test_missing_store_user_fails_closed(handler, tmp_path, real_core):
    """A configured user that does not exist never leaves the handler running as root."""
    if not pctest.is_root():
        pytest.skip("privilege dropping needs root")
    data, pid = real_core
    store = pctest.make_store(tmp_path)  # owned by nobody
    conf = pctest.write_config(tmp_path / "pc.conf", store, user="no-such-user-pc")
    proc = subprocess.run([str(handler), "--config", str(conf), *recommended(pid)], input=data,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0
    r = only(pctest.records(store))
    assert any("continuing as nobody" in w for w in r["handler"]["warnings"])
    for p in pathlib.Path(store).rglob("*"):
        assert p.stat().st_uid == 65534, f"{p} was created as uid {p.stat().st_uid}"


def test_concurrent_captures_share_a_small_disk(handler, tmp_path):
    """Two big crashes at once on a small file system: each budget was decided alone, so the
    handlers look at the free space again as they write; both keep a (cut) core, neither runs
    the disk out of space, and both records are written."""
    if not pctest.is_root():
        pytest.skip("mounting a tmpfs needs root")
    with pctest.tmpfs(tmp_path / "small", "16m") as mnt:
        store = pctest.make_store(mnt)
        conf = pctest.write_config(tmp_path / "pc.conf", store, keep_free=0, max_use="100%",
                                   rate_limit_burst=0)
        procs = [subprocess.Popen([str(handler), "--config", str(conf), *recommended(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
                 for n in (1, 2)]
        # Both have decided their budgets on an empty file system once their cores are open.
        pctest.wait_until(lambda: all(
            any(not f.endswith(".reserved") for f in pctest.open_files(p.pid, store).values())
            for p in procs), timeout=30, what="both handlers writing their cores")
        open_pipes = set(procs)

        def feed(p, data):
            # A handler that has cut its core closes the pipe instead of draining the rest.
            if p in open_pipes:
                try:
                    p.stdin.write(data)
                    p.stdin.flush()
                except BrokenPipeError:
                    open_pipes.discard(p)

        for p in procs:
            feed(p, b"\x7fELF")
        for _ in range(12):  # 12 MiB of incompressible data each: 24 MiB for 16 MiB of disk
            for p in procs:
                feed(p, os.urandom(1 << 20))
        for p in procs:
            with contextlib.suppress(BrokenPipeError):
                p.stdin.close()
            assert p.wait(timeout=60) == 0
        recs = pctest.records(store)
        assert len(recs) == 2
        for r in recs:
            core = r["core"]
            assert core["present"] and core["truncated"] and core["reason"] == "truncated", core
            assert core["size"] <= (12 << 20) + 4


def test_no_free_capture_slot_takes_the_lean_path(handler, tmp_path, store, real_core):
    """With every capture slot held, the crash is still recorded, without reading the core."""
    if not pctest.is_root():
        pytest.skip("slot files are root-only")
    data, pid = real_core
    run = tmp_path / "run"
    conf = pctest.write_config(tmp_path / "pc.conf", store, max_captures=1, runtime_dir=run)
    run.mkdir(mode=0o700)
    slot = os.open(run / "capture.0", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(slot, fcntl.LOCK_EX)
        r_fd, w_fd = os.pipe()
        os.write(w_fd, data[:65536])  # the kernel's first pipeful; the writer stays open
        start = time.time()
        proc = subprocess.run([str(handler), "--config", str(conf), *recommended(pid)],
                              stdin=r_fd, capture_output=True, timeout=30)
        os.close(r_fd)
        assert proc.returncode == 0, proc.stderr
        assert time.time() - start < 5
        # Our end of the pipe is the only reader left: the handler closed its copy at once.
        with pytest.raises(BrokenPipeError):
            os.write(w_fd, b"x")
        os.close(w_fd)
    finally:
        os.close(slot)
    r = only(pctest.records(store))
    assert r["core"]["reason"] == "busy" and not r["core"]["present"]
    assert r["core"]["size"] == 0 and "max_captures" in r["core"]["error"]
    assert not list(pathlib.Path(store).rglob("*.core.zst"))


def test_capture_timeout_ends_a_stream_that_never_ends(handler, tmp_path, store, real_core):
    """A core stream that stalls (or never ends) is cut at capture_timeout: the prefix is kept
    as a valid core, marked truncated, and the handler exits."""
    data, pid = real_core
    conf = pctest.write_config(tmp_path / "pc.conf", store, capture_timeout=2)
    r_fd, w_fd = os.pipe()
    proc = subprocess.Popen([str(handler), "--config", str(conf), *recommended(pid)],
                            stdin=r_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(r_fd)
    start = time.time()
    try:
        os.write(w_fd, data[:65536])  # then nothing more, and the pipe stays open
        assert proc.wait(timeout=20) == 0
    finally:
        os.close(w_fd)
    assert 1.5 < time.time() - start < 10
    core = only(pctest.records(store))["core"]
    assert core["present"] and core["truncated"] and core["reason"] == "truncated", core
    assert core["error"] == "cut at capture_timeout (2 s)"
    assert core["size"] == 65536
    assert pctest.zstd_decompress(pathlib.Path(store) / core["path"]) == data[:65536]
