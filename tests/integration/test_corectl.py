"""corectl against a store written by the real handler (tests/lib/corefixture.py).

Golden files live in tests/golden/corectl_*.txt, made from real cores (see corefixture.py);
after an intended change of the output (or of what the handler records), regenerate them with
PC_UPDATE_GOLDEN=1 and review the diff.
"""
import atexit
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

import corefixture
import pctest

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden"


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    global CACHE_HOME
    CACHE_HOME = str(tmp_path_factory.mktemp("cache"))
    base = tmp_path_factory.mktemp("corectl")
    store, config, sent = corefixture.build_store(base)
    return store, config, sent


CACHE_HOME = None


def corectl(config, *args, input=None, check=False, env=None):
    # A private summary cache (never the tester's ~/.cache).
    full_env = dict(os.environ, TZ="UTC", NO_COLOR="", XDG_CACHE_HOME=CACHE_HOME or "/nonexistent")
    full_env.update(env or {})
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args],
                          input=input, capture_output=True, check=check, env=full_env)


def golden(name, text, store):
    # The fixture store lives in a fresh temporary directory: its path is the one varying part.
    text = text.replace(str(store), "<store>")
    path = GOLDEN / f"corectl_{name}.txt"
    if os.environ.get("PC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path} (PC_UPDATE_GOLDEN=1 to update)"


@pytest.mark.parametrize("name,args", [
    ("list", ["list"]),
    ("list_filtered", ["list", "--exe", "app", "--signal", "segv", "-n", "1"]),
    ("list_since", ["list", "--since", "2025-11-22T03:00:00Z", "-r"]),
    ("list_host", ["list", "--host", "web2"]),
    ("groups", ["groups"]),
    ("info", ["info", "c0ffee00a", "ID=0123", "ID=fedc"]),
])
def test_golden(fixture, name, args):
    store, config, _ = fixture
    r = corectl(config, *args)
    assert r.returncode == 0, r.stderr
    golden(name, r.stdout.decode(), store)


def test_json_is_the_record_schema(fixture):
    store, config, _ = fixture
    r = corectl(config, "list", "--json", check=True)
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(corefixture.CRASHES)
    on_disk = {d["id"]: d for d in pctest.records(store)}
    for line in lines:
        rec = json.loads(line)
        disk = on_disk[rec["id"]]
        disk.pop("_path")
        assert rec == disk
    info = corectl(config, "info", "--json", "0123456789abcdef", check=True)
    assert json.loads(info.stdout)["id"] == "0123456789abcdef"
    groups = [json.loads(l) for l in corectl(config, "groups", "--json", check=True).stdout.splitlines()]
    assert sum(g["count"] for g in groups) == len(corefixture.CRASHES)
    assert groups[0]["grouped_by"] == "signature" and groups[0]["signature"] == "1" * 16
    assert groups[0]["count"] == 2
    # The non-ELF core has no crash section: grouped by executable + signal, and labelled so.
    fallback = [g for g in groups if g["grouped_by"] == "executable+signal"]
    assert len(fallback) == 1 and fallback[0]["signature"] is None
    assert fallback[0]["executables"] == ["/tmp/evil"]


def test_hostile_names_never_reach_the_terminal_raw(fixture):
    _, config, _ = fixture
    out = corectl(config, "list", check=True).stdout
    assert b"\x1b" not in out and b"evil\\x1b[31mred" in out


def test_id_errors(fixture):
    _, config, _ = fixture
    r = corectl(config, "info", "c0ffee00")
    assert r.returncode == 2 and b"ambiguous" in r.stderr
    assert b"c0ffee00a1b2c3d4" in r.stderr and b"c0ffee00b2c3d4e5" in r.stderr
    r = corectl(config, "info", "99999999")
    assert r.returncode == 3 and b"No record" in r.stderr
    r = corectl(config, "info", "ID=99")
    assert r.returncode == 3 and b"No record" in r.stderr
    r = corectl(config, "info", "ID=xyz")
    assert r.returncode == 2
    r = corectl(config, "list", "--store", "/nonexistent/store")
    assert r.returncode == 5 and b"does not exist" in r.stderr
    r = corectl(config, "list", "--since", "yesterdayish")
    assert r.returncode == 2


def ids_of(listing):
    """The ids column of a list without legend (TIME is four words: "Sat 2025-11-22 02:53:20 UTC")."""
    return [line.split()[4] for line in listing.decode().splitlines()]


@pytest.mark.parametrize("matches,expected", [
    (["5000002"], ["7e57ab1e"]),                                 # a PID
    (["5000001", "5000002"], ["c0ffee00a", "7e57ab1e"]),          # one field: OR
    (["app"], ["c0ffee00a", "7e57ab1e", "c0ffee00b"]),           # executable name
    (["pc_crasher"], ["c0ffee00a", "7e57ab1e", "c0ffee00b", "01234567"]),  # comm
    (["/usr/bin/app", "HOST=web1"], ["c0ffee00a", "7e57ab1e"]),  # path AND field
    (["COREDUMP_PID=5000004"], ["01234567"]),                    # coredumpctl's field names
    (["SIGNAL=abrt"], ["c0ffee00b"]),
    (["ID=7e57"], ["7e57ab1e"]),
    (["c0ffee00b2c3d4e5"], ["c0ffee00b"]),                       # a whole id
])
def test_positional_matches(fixture, matches, expected):
    _, config, _ = fixture
    r = corectl(config, "list", "--no-legend", *matches)
    assert r.returncode == 0, r.stderr
    assert [i[:len(e)] for i, e in zip(ids_of(r.stdout), expected)] == expected
    assert len(ids_of(r.stdout)) == len(expected)


def test_nothing_matched_is_exit_1(fixture):
    _, config, _ = fixture
    for verb in ("list", "groups", "info", "dump", "debug"):
        r = corectl(config, verb, "no-such-program")
        assert r.returncode == 1 and b"No crashes found" in r.stderr, (verb, r.stderr)
        assert r.stdout == b""
    r = corectl(config, "list", "--json", "99999")
    assert r.returncode == 1 and r.stdout == b""
    r = corectl(config, "list", "COLOUR=red")
    assert r.returncode == 2 and b"unknown match field" in r.stderr


def test_options_belong_to_their_verb(fixture):
    _, config, _ = fixture
    for args in (["vacuum", "--json"], ["list", "--dry-run"], ["list", "-o", "x"],
                 ["dump", "--json"], ["install", "--exe", "app"], ["groups", "--debugger", "gdb"]):
        r = corectl(config, *args)
        assert r.returncode == 2, (args, r.stderr)
    r = corectl(config, "dump", "--help", check=True)
    assert b"--output" in r.stdout and b"--dry-run" not in r.stdout and b"MATCH" in r.stdout
    r = corectl(config, "--help", check=True)
    for verb in (b"list", b"info", b"dump", b"debug", b"groups", b"vacuum", b"install"):
        assert verb in r.stdout
    # No verb lists, with list's options.
    r = corectl(config, "--host", "web2", "--no-legend", check=True)
    assert ids_of(r.stdout) == ["c0ffee00b"]


def test_newest_one_legend_and_json_modes(fixture):
    _, config, _ = fixture
    r = corectl(config, "list", "-1", check=True).stdout.decode().splitlines()
    assert len(r) == 2 and r[0].startswith("TIME") and "fedcba98" in r[1]
    r = corectl(config, "list", "--no-legend", check=True).stdout.decode().splitlines()
    assert len(r) == len(corefixture.CRASHES) and not r[0].startswith("TIME")
    pretty = corectl(config, "list", "--json=pretty", "app", check=True).stdout.decode()
    objects, decoder, pos = [], json.JSONDecoder(), 0
    while pos < len(pretty.rstrip()):
        obj, pos = decoder.raw_decode(pretty, pos)
        objects.append(obj)
        pos += 1
    assert [o["id"] for o in objects] == ["c0ffee00a1b2c3d4", "7e57ab1e00000002", "c0ffee00b2c3d4e5"]
    assert "\n  \"id\"" in pretty
    short = corectl(config, "list", "--json=short", "app", check=True).stdout.splitlines()
    assert [json.loads(l)["id"] for l in short] == [o["id"] for o in objects]
    assert corectl(config, "list", "--json=off", "-1", check=True).stdout.startswith(b"TIME")
    g = corectl(config, "groups", "--json=pretty", "-1", check=True).stdout
    assert json.loads(g)["count"] >= 1


def test_info_dump_debug_take_the_newest_match(fixture, tmp_path):
    _, config, sent = fixture
    def records_shown(text):
        return [l.split()[1] for l in text.splitlines() if l.lstrip().startswith("ID: ")]
    r = corectl(config, "info", check=True).stdout.decode()
    assert records_shown(r) == ["fedcba9876543210"]
    r = corectl(config, "info", "app", check=True).stdout.decode()
    assert records_shown(r) == ["c0ffee00a1b2c3d4", "7e57ab1e00000002", "c0ffee00b2c3d4e5"]
    r = corectl(config, "info", "app", "-1", "--json", check=True).stdout
    assert json.loads(r)["id"] == "c0ffee00b2c3d4e5"
    r = corectl(config, "dump", "HOST=web1", check=True)
    assert r.stdout == sent["7e57ab1e00000002"]
    assert b"Dumping 7e57ab1e00000002" in r.stderr and b"(the newest of 2)" in r.stderr
    r = corectl(config, "dump", "/usr/bin/app", "--until", "2025-11-22T02:54:00Z", check=True)
    assert r.stdout == sent["c0ffee00a1b2c3d4"]
    r = corectl(config, "dump", "--since", "2025-11-22 03:00 UTC", "-o", str(tmp_path / "c"),
                check=True)
    assert (tmp_path / "c").read_bytes() == sent["fedcba9876543210"]
    gdb, tmpdir = fake_gdb(tmp_path)
    r = corectl(config, "debug", "--debugger", str(gdb), "5000002", env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    assert b"Debugging 7e57ab1e00000002" in r.stderr and gdb_args(gdb) is not None


def run_on_terminal(args, env):
    """Runs corectl with stdout on a pseudo-terminal; returns (exit status, terminal output)."""
    import pty
    import select
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(pctest.env_path("PC_CORECTL")), *args], stdout=follower,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=10), out


def test_pager_on_a_terminal_only(fixture, tmp_path):
    _, config, _ = fixture
    paged = tmp_path / "paged"
    env = dict(os.environ, TZ="UTC", NO_COLOR="1", XDG_CACHE_HOME=CACHE_HOME,
               CORECTL_PAGER=f"cat > {paged}", PAGER="false")
    status, out = run_on_terminal(["--config", str(config), "list"], env)
    assert status == 0
    assert b"TIME" in paged.read_bytes() and b"TIME" not in out
    paged.unlink()
    status, out = run_on_terminal(["--config", str(config), "list", "--no-pager"], env)
    assert status == 0 and b"TIME" in out and not paged.exists()
    # $PAGER when CORECTL_PAGER is not set; "cat" means no pager at all.
    env.pop("CORECTL_PAGER")
    env["PAGER"] = f"cat > {paged}"
    status, out = run_on_terminal(["--config", str(config), "info"], env)
    assert status == 0 and b"fedcba9876543210" in paged.read_bytes()
    env["PAGER"] = "cat"
    status, out = run_on_terminal(["--config", str(config), "groups"], env)
    assert status == 0 and b"SIGNATURE" in out
    # Not a terminal: never paged.
    env["PAGER"] = f"cat > {paged}"
    paged.unlink()
    r = corectl(config, "list", env={"PAGER": f"cat > {paged}"})
    assert r.returncode == 0 and b"TIME" in r.stdout and not paged.exists()


def test_dump_is_byte_identical(fixture, tmp_path):
    _, config, sent = fixture
    for fixed in ("c0ffee00a1b2c3d4", "7e57ab1e00000002", "fedcba9876543210"):
        r = corectl(config, "dump", fixed[:10], check=True)
        assert r.stdout == sent[fixed]
        out = tmp_path / f"{fixed}.core"
        corectl(config, "dump", fixed, "-o", str(out), check=True)
        assert out.read_bytes() == sent[fixed]
        assert out.stat().st_mode & 0o777 == 0o600
    # A truncated core dumps what was stored (its first max_core_size bytes), with a note.
    r = corectl(config, "dump", "0123456789abcdef", check=True)
    assert r.stdout == sent["0123456789abcdef"][:4096] and b"truncated" in r.stderr
    # No core: says why.
    r = corectl(config, "dump", "c0ffee00b")
    assert r.returncode == 1 and b"rlimit" in r.stderr


def test_dump_reports_corruption(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    core = next(store.glob("web1/*/c0ffee00a1b2c3d4.core.zst"))
    data = bytearray(core.read_bytes())
    data[len(data) // 2] ^= 0xFF
    core.write_bytes(bytes(data))
    out = tmp_path / "out.core"
    r = corectl(config, "dump", "c0ffee00a", "-o", str(out))
    assert r.returncode == 1 and b"corrupted" in r.stderr, r.stderr
    assert not out.exists()


def fake_gdb(tmp_path):
    """A 'gdb' that writes its arguments, one a line, to gdb_args(gdb). It lives where every
    user may run it: root's corectl runs the debugger as the crash's owner (uid 1000 here)."""
    shared = pathlib.Path(tempfile.mkdtemp(prefix="pcc-", dir="/var/tmp"))
    shared.chmod(0o777)
    atexit.register(shutil.rmtree, shared, True)
    gdb = shared / "gdb"
    gdb.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shared}/gdb-args\n")
    gdb.chmod(0o755)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(mode=0o700)
    return gdb, tmpdir


def gdb_args(gdb):
    """The fake gdb's arguments after the safety options corectl adds for gdb."""
    path = gdb.parent / "gdb-args"
    if not path.exists():
        return None
    args = path.read_text().splitlines()
    return args[args.index("--"):] if "--" in args else args[args.index("--core"):]


def edit_record(store, rid, **fields):
    path = next(store.glob(f"*/*/{rid}.json"))
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))  # in place: keeps the owner


def test_debug_ends_the_debuggers_options_and_cleans_up(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    gdb, tmpdir = fake_gdb(tmp_path)
    # A root-only core: the debugger runs as the caller, in the caller's TMPDIR.
    edit_record(store, "c0ffee00a1b2c3d4", executable="/bin/true",
                core=dict(json.loads(next(store.glob("*/*/c0ffee00a1b2c3d4.json")).read_text())["core"],
                          access="root"))
    r = corectl(config, "debug", "c0ffee00a", "--debugger", str(gdb), env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    args = gdb_args(gdb)
    assert args[0] == "--" and args[1].endswith("/sysroot/bin/true") and len(args) == 3, args
    assert pathlib.Path(args[2]).name == "core" and args[2].startswith(str(tmpdir) + "/corectl-")
    assert list(tmpdir.iterdir()) == []


def test_debug_refuses_an_executable_that_is_an_option(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    gdb, tmpdir = fake_gdb(tmp_path)
    edit_record(store, "c0ffee00a1b2c3d4", executable=f"--eval-command=shell touch {tmp_path}/pwned")
    r = corectl(config, "debug", "c0ffee00a", "--debugger", str(gdb), env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 1 and b"not an absolute path" in r.stderr, r.stderr
    assert gdb_args(gdb) is None
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("verb", ["debug", "dump"])
def test_record_id_must_match_its_file(tmp_path, verb):
    """A record's own "id" could name a path; dump and debug use the id of the file instead."""
    store, config, _ = corefixture.build_store(tmp_path)
    gdb, tmpdir = fake_gdb(tmp_path)
    victim = tmp_path / "victim.core"
    victim.write_text("precious")
    edit_record(store, "c0ffee00a1b2c3d4", id="../" * 30 + str(tmp_path / "victim")[1:])
    args = ["--debugger", str(gdb)] if verb == "debug" else ["-o", str(tmp_path / "out")]
    r = corectl(config, verb, "c0ffee00a1b2c3d4", *args, env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 1 and b"names another id" in r.stderr, r.stderr
    assert victim.read_text() == "precious"
    assert gdb_args(gdb) is None


def test_debug_ignores_a_tmpdir_others_can_write(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    gdb, _ = fake_gdb(tmp_path)
    edit_record(store, "c0ffee00a1b2c3d4",
                core=dict(json.loads(next(store.glob("*/*/c0ffee00a1b2c3d4.json")).read_text())["core"],
                          access="root"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could swap our directory
    r = corectl(config, "debug", "c0ffee00a", "--debugger", str(gdb), env={"TMPDIR": str(shared)})
    assert r.returncode == 0, r.stderr
    assert gdb_args(gdb)[-1].startswith("/var/tmp/corectl-")
    assert list(shared.iterdir()) == []


def test_unreadable_store_is_an_error_not_an_empty_list(fixture):
    if not pctest.is_root():
        pytest.skip("needs root to run corectl as another user")
    store, config, _ = fixture
    # The store's directories are 0750 and owned by the store user: a third user may not read.
    r = subprocess.run(["setpriv", "--reuid=12345", "--regid=12345", "--clear-groups",
                        str(pctest.env_path("PC_CORECTL")), "--store", str(store), "list"],
                       capture_output=True)
    assert r.returncode == 4 and b"Permission denied" in r.stderr, r.stderr


def fake_proc(base, pattern="core"):
    proc = pathlib.Path(base) / "proc"
    (proc / "kernel").mkdir(parents=True)
    (proc / "fs").mkdir()
    (proc / "kernel" / "core_pattern").write_text(pattern + "\n")
    # 16 is what systemd-coredump ships: install replaces it with 0, uninstall restores it.
    (proc / "kernel" / "core_pipe_limit").write_text("16\n")
    (proc / "fs" / "suid_dumpable").write_text("0\n")
    return proc


def needs_root():
    # install and uninstall trust only a state directory and file owned by root.
    if not pctest.is_root():
        pytest.skip("needs root: the saved settings must be root's")


@pytest.fixture
def safe_handler():
    """A root-owned copy of the handler in a root-owned 0755 directory (install checks both),
    under a short path: the core_pattern must fit in 127 characters."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="pc-"))
    d.chmod(0o755)
    handler = d / "process-core"
    handler.write_bytes(pctest.env_path("PC_HANDLER").read_bytes())
    handler.chmod(0o755)
    yield handler
    shutil.rmtree(d)


def run_corectl(*args):
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), *args], capture_output=True)


def test_install_on_a_fake_proc_tree(tmp_path, safe_handler):
    needs_root()
    proc = fake_proc(tmp_path, "|/usr/share/apport/apport -p%p -s%s -c%c")
    handler = safe_handler
    args = ["--handler", str(handler), "--sysctl-dir", str(tmp_path / "sysctl.d"),
            "--state-dir", str(tmp_path / "state"), "--proc-sys", str(proc)]
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "install", "--kernel-release",
                        "6.1.0-28-amd64", *args], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert b"older than 6.16" in r.stdout
    pattern = (proc / "kernel" / "core_pattern").read_text().strip()
    assert pattern == f"|{handler} -P%P -I%I -u%u -g%g -t%t -c%c -d%d -- %h %s %E"
    assert (proc / "kernel" / "core_pipe_limit").read_text().strip() == "0"
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "uninstall", *args], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == "|/usr/share/apport/apport -p%p -s%s -c%c"
    assert (proc / "kernel" / "core_pipe_limit").read_text().strip() == "16"
    assert not (tmp_path / "sysctl.d" / "50-process-core.conf").exists()


@pytest.mark.parametrize("soft,warns", [("0", True), ("unlimited", False)])
def test_install_warns_when_pid_1_has_no_core_limit(tmp_path, safe_handler, soft, warns):
    """PID 1's soft RLIMIT_CORE is what most processes inherit (the fake /proc/sys's ../1/limits
    stands for /proc/1/limits)."""
    needs_root()
    proc = fake_proc(tmp_path)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        f"Max core file size        {soft:<21}unlimited            bytes     \n")
    r = run_corectl("install", *install_args(tmp_path, safe_handler, proc))
    assert r.returncode == 0, r.stderr
    assert (b"PID 1's soft RLIMIT_CORE is 0" in r.stdout) == warns, r.stdout
    assert (b"honour_rlimit_core = no" in r.stdout) == warns


def install_args(tmp_path, handler, proc):
    return ["--handler", str(handler), "--sysctl-dir", str(tmp_path / "sysctl.d"),
            "--state-dir", str(tmp_path / "state"), "--proc-sys", str(proc),
            "--kernel-release", "6.18.0"]


def write_state(state_dir, mode=0o600, settings=None):
    state_dir.mkdir(mode=0o755, exist_ok=True)
    path = state_dir / ".previous-sysctl.json"
    path.write_text(json.dumps({"settings": settings or {"kernel.core_pattern": "|/tmp/evil"}}))
    path.chmod(mode)
    return path


@pytest.mark.parametrize("case", ["dir_of_store_user", "dir_group_writable", "file_of_store_user",
                                  "file_world_writable", "file_is_symlink", "file_is_fifo"])
def test_uninstall_refuses_settings_others_could_write(tmp_path, case, safe_handler):
    """The saved settings go into the kernel as root: only root may have written them."""
    needs_root()
    handler = safe_handler
    ours = f"|{handler} -P%P -- %h %s %E"
    proc = fake_proc(tmp_path, ours)
    state = tmp_path / "state"
    if case == "file_is_symlink":
        state.mkdir(mode=0o755)
        write_state(tmp_path / "elsewhere")
        (state / ".previous-sysctl.json").symlink_to(tmp_path / "elsewhere" / ".previous-sysctl.json")
    elif case == "file_is_fifo":
        state.mkdir(mode=0o755)
        os.mkfifo(state / ".previous-sysctl.json", 0o600)
    else:
        path = write_state(state, mode=0o666 if case == "file_world_writable" else 0o600)
        if case == "dir_of_store_user":
            shutil.chown(state, user="nobody")
        elif case == "dir_group_writable":
            state.chmod(0o775)
        elif case == "file_of_store_user":
            shutil.chown(path, user="nobody")
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "uninstall",
                        *install_args(tmp_path, handler, proc)], capture_output=True, timeout=20)
    assert r.returncode != 0 and b"Refusing to use" in r.stderr or \
        case == "file_is_symlink" and r.returncode != 0, r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == ours


def test_default_state_dir_is_root_only():
    r = run_corectl("--help")
    assert b"/etc/process-core" in r.stdout + r.stderr
    assert b"/var/lib/process-core)" not in r.stdout + r.stderr


def test_uninstall_leaves_a_pattern_that_is_no_longer_ours(tmp_path, safe_handler):
    needs_root()
    handler = safe_handler
    proc = fake_proc(tmp_path, "core")
    args = install_args(tmp_path, handler, proc)
    r = run_corectl("install", *args)
    assert r.returncode == 0, r.stderr
    state = json.loads((tmp_path / "state" / ".previous-sysctl.json").read_text())
    assert state["installed"] == (proc / "kernel" / "core_pattern").read_text().strip()
    assert (tmp_path / "state" / ".previous-sysctl.json").stat().st_mode & 0o777 == 0o600
    # An administrator points the kernel elsewhere; a prefix of our handler's path is not ours.
    other = f"|{handler}-other %p"
    (proc / "kernel" / "core_pattern").write_text(other + "\n")
    r = run_corectl("uninstall", *args)
    assert r.returncode == 0, r.stderr
    assert b"not process-core's, leaving it" in r.stdout
    assert (proc / "kernel" / "core_pattern").read_text().strip() == other
    assert (proc / "kernel" / "core_pipe_limit").read_text().strip() == "16"


def test_install_over_another_installation_gives_its_pattern_back(tmp_path, safe_handler):
    """A build tree's handler installed over a package's: uninstall restores the package's."""
    needs_root()
    package = "|/usr/sbin/process-core -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"
    proc = fake_proc(tmp_path, package)
    args = install_args(tmp_path, safe_handler, proc)
    r = run_corectl("install", *args)
    assert r.returncode == 0, r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().startswith(f"|{safe_handler} ")
    r = run_corectl("uninstall", *args)
    assert r.returncode == 0, r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == package


def test_reinstall_of_the_same_handler_without_state_saves_core(tmp_path, safe_handler):
    """Its own pattern, found without saved state, is not what uninstall should restore."""
    needs_root()
    proc = fake_proc(tmp_path, f"|{safe_handler} -P%P -- %h %s %E")
    args = install_args(tmp_path, safe_handler, proc)
    assert run_corectl("install", *args).returncode == 0
    assert run_corectl("uninstall", *args).returncode == 0
    assert (proc / "kernel" / "core_pattern").read_text().strip() == "core"


def test_failed_install_puts_everything_back(tmp_path, safe_handler):
    needs_root()
    handler = safe_handler
    proc = fake_proc(tmp_path, "core")
    # A "kernel" that refuses the last setting (an immutable file; /proc/sys entries are
    # regular files, so a stand-in must be one too): the two written before it are put back.
    refused = proc / "fs" / "suid_dumpable"
    if subprocess.run(["chattr", "+i", str(refused)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported here")
    try:
        sysctl = tmp_path / "sysctl.d"
        sysctl.mkdir()
        (sysctl / "50-process-core.conf").write_text("# an earlier, working install\n")
        r = run_corectl("install", *install_args(tmp_path, handler, proc))
        assert r.returncode != 0 and b"suid_dumpable" in r.stderr, r.stderr
        assert (sysctl / "50-process-core.conf").read_text() == "# an earlier, working install\n"
        assert (proc / "kernel" / "core_pattern").read_text().strip() == "core"
        assert (proc / "kernel" / "core_pipe_limit").read_text().strip() == "16"
        assert refused.read_text().strip() == "0"
    finally:
        subprocess.run(["chattr", "-i", str(refused)], capture_output=True)


@pytest.mark.parametrize("case", ["handler_of_store_user", "handler_group_writable",
                                  "dir_world_writable"])
def test_install_refuses_a_handler_others_could_replace(tmp_path, case, safe_handler):
    needs_root()
    handler = safe_handler
    if case == "handler_of_store_user":
        shutil.chown(handler, user="nobody")
    elif case == "handler_group_writable":
        handler.chmod(0o775)
    else:
        handler.parent.chmod(0o777)
    proc = fake_proc(tmp_path, "core")
    r = run_corectl("install", *install_args(tmp_path, handler, proc))
    assert r.returncode == 1 and b"Refusing the handler" in r.stderr, r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == "core"


def test_install_refuses_a_pattern_the_kernel_would_cut(tmp_path):
    proc = fake_proc(tmp_path)
    long_dir = tmp_path / ("d" * 80)
    long_dir.mkdir(mode=0o755)
    long_dir.chmod(0o755)
    handler = long_dir / "process-core"
    handler.write_bytes(pctest.env_path("PC_HANDLER").read_bytes())
    handler.chmod(0o755)
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "install", "--handler", str(handler),
                        "--sysctl-dir", str(tmp_path / "s"), "--state-dir", str(tmp_path / "st"),
                        "--proc-sys", str(proc)], capture_output=True)
    assert r.returncode == 1 and b"127" in r.stderr
    assert (proc / "kernel" / "core_pattern").read_text().strip() == "core"


def backdate(store, seconds=3600):
    past = time.time() - seconds
    for d in [store, *store.glob("*"), *store.glob("*/*")]:
        os.utime(d, (past, past))


NO_INDEX = {"CORECTL_INDEX": "0"}


def test_summary_cache_follows_the_store(tmp_path):
    global CACHE_HOME
    CACHE_HOME = str(tmp_path / "cache")
    (tmp_path / "s").mkdir()
    store, config, _ = corefixture.build_store(tmp_path / "s")
    backdate(store)
    # The cache answers where the store's index cannot be read: here, without one.
    first = corectl(config, "list", check=True, env=NO_INDEX).stdout
    assert list((tmp_path / "cache" / "process-core").glob("corectl-*")), "no cache written"
    assert corectl(config, "list", check=True, env=NO_INDEX).stdout == first
    # A new crash in a cached directory shows up (the directory's mtime changed).
    handler = pctest.env_path("PC_HANDLER")
    subprocess.run([str(handler), "--config", str(config), "-t1763790000", "--", "web1", "11",
                    "!usr!bin!app"], input=corefixture.elf_core(), check=True)
    assert len(corectl(config, "list", check=True, env=NO_INDEX).stdout.splitlines()) == len(first.splitlines()) + 1
    # Removing a record (another directory changes too) is seen as well.
    next(store.glob("db1/*/0123456789abcdef.json")).unlink()
    assert b"0123456" not in corectl(config, "list", check=True, env=NO_INDEX).stdout


def test_vacuum_removes_cores_keeps_records(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    # Records count toward max_use: room for all of them and 300 bytes of cores.
    records = sum(p.stat().st_blocks * 512 for p in store.glob("*/*/*.json"))
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() +
                                    f"max_use = {records + 300}\nkeep_free = 0\n")
    r = corectl(config, "vacuum", "--dry-run", check=True)
    assert b"Would remove core" in r.stdout
    assert len(list(store.glob("*/*/*.core.zst"))) == 4
    r = corectl(config, "vacuum", check=True)
    out = r.stdout.decode()
    # web1/app has two cores: its oldest goes first, before any one-off core.
    assert out.splitlines()[0].startswith("Removing core c0ffee00a1b2c3d4"), out
    recs = {d["id"]: d for d in pctest.records(store)}
    assert len(recs) == len(corefixture.CRASHES)  # records are kept
    gone = [i for i, d in recs.items() if d["core"].get("removed")]
    assert gone and all(recs[i]["core"]["present"] for i in gone)
    assert not any(list(store.glob(f"*/*/{i}.core.zst")) for i in gone)
    listing = corectl(config, "list", check=True).stdout.decode()
    assert "removed" in listing
    r = corectl(config, "dump", gone[0])
    assert r.returncode == 1 and b"removed by retention" in r.stderr


def test_vacuum_weighs_runtime_reports_with_their_cores(tmp_path):
    """A runtime's report beside a core counts toward max_use and goes with that core: the store
    fits max_use without the report, not with it."""
    store, config, _ = corefixture.build_store(tmp_path)
    rid = "0123456789abcdef"  # db1's dbd: its one core, cut at 4 KiB
    record_path = next(store.glob(f"*/*/{rid}.json"))
    report = record_path.with_name(f"{rid}.report")
    report.write_bytes(os.urandom(4 << 20))
    data = json.loads(record_path.read_text())
    data["runtime_report"] = {"runtime": "jvm", "path": "hs_err_pid5000004.log",
                              "stored": str(report.relative_to(store)), "size": 4 << 20,
                              "file_size": 4 << 20, "truncated": False}
    record_path.write_text(json.dumps(data))
    files = sum(p.stat().st_blocks * 512 for p in store.glob("*/*/*")
                if p.name.endswith((".json", ".core.zst")))
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() +
                                    f"max_use = {files + (1 << 20)}\nkeep_free = 0\n")
    r = corectl(config, "vacuum", check=True)
    out = r.stdout.decode()
    # The heaviest one goes: the dbd crash, its small core and 4 MiB report; nothing else.
    assert out.splitlines()[0].startswith(f"Removing core {rid}"), out
    assert "Removed 0 record(s) and 1 core(s)" in out, out
    assert not report.exists() and not list(store.glob(f"*/*/{rid}.core.zst"))
    assert len(list(store.glob("*/*/*.core.zst"))) == 3
    after = json.loads(record_path.read_text())
    assert after["core"]["removed"] and after["runtime_report"]["removed"] == after["core"]["removed"]
    info = corectl(config, "info", rid, check=True).stdout.decode()
    assert "removed with the core by retention" in info, info


def test_vacuum_retires_records_through_the_ledger(tmp_path):
    store, config, _ = corefixture.build_store(tmp_path)
    pathlib.Path(config).write_text(pathlib.Path(config).read_text() + "max_records = 3\n")
    r = corectl(config, "vacuum", check=True)
    assert r.stdout.count(b"Retiring record") == 2, r.stdout
    assert len(pctest.records(store)) == 3
    ledger = json.loads((store / ".ledger.json").read_text())
    assert ledger, "the ledger keeps the retired crashes counted"


def test_root_under_sudo_pages_only_with_less(fixture, tmp_path):
    """A pager from a user's environment could run commands as root: under sudo corectl takes
    only less (in its secure mode), and prints directly when there is no less."""
    if not pctest.is_root():
        pytest.skip("needs root")
    _, config, _ = fixture
    paged = tmp_path / "paged"
    bindir = tmp_path / "bin"  # a PATH without less
    bindir.mkdir()
    env = dict(os.environ, TZ="UTC", NO_COLOR="1", XDG_CACHE_HOME=CACHE_HOME, SUDO_UID="1000",
               CORECTL_PAGER=f"cat > {paged}", PATH=str(bindir))
    status, out = run_on_terminal(["--config", str(config), "list"], env)
    assert status == 0 and b"TIME" in out
    assert not paged.exists(), "a pager from the environment ran as root"


def test_unreadable_records_are_listed_from_their_place(tmp_path):
    """A crash cannot hide from `corectl list` by making its record unreadable or huge."""
    store, config, _ = corefixture.build_store(tmp_path)
    exe_dir = next(p for p in store.glob("*/*") if p.is_dir())
    (exe_dir / "00000000000000b1.json").write_text('{"id": "00000000000000b1", "signal": ')
    huge = {"id": "00000000000000b2", "mappings": [{"path": "/" + "x" * 4000}] * 1000}
    (exe_dir / "00000000000000b2.json").write_text(json.dumps(huge))
    r = corectl(config, "list")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    broken = [l for l in out.splitlines() if "00000000000000b1" in l]
    assert len(broken) == 1 and "unknown" in broken[0], out
    assert "/opt/db/bin/dbd" in broken[0] or "/usr/bin/app" in broken[0], out
    assert "00000000000000b2" in out, out
    assert b"malformed" in r.stderr


# --- coredumpctl's habits: TIME read back, -q, -F, UNIT=, -A ----------------------------------

@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/Sao_Paulo"])
def test_list_times_read_back_with_since_and_until(fixture, tz):
    """TIME is "Sat 2025-11-22 02:53:20 UTC" (or CET, or -0300 where the zone has no word for
    an abbreviation): -S and -U take it back, to the second."""
    _, config, _ = fixture
    env = {"TZ": tz}
    listing = corectl(config, "list", "--no-legend", env=env, check=True).stdout.decode()
    rows = [line.split() for line in listing.splitlines()]
    assert rows and all(len(r[0]) == 3 and r[3] == {"UTC": "UTC", "Europe/Berlin": "CET",
                                                    "America/Sao_Paulo": "-0300"}[tz]
                        for r in rows), rows
    for row in rows:
        when = " ".join(row[:4])
        r = corectl(config, "list", "--no-legend", "-S", when, "-U", when, env=env)
        assert r.returncode == 0, r.stderr
        assert ids_of(r.stdout) == [row[4]], (when, r.stdout)


def test_quiet_leaves_out_headers_and_notes(fixture, tmp_path):
    _, config, sent = fixture
    plain = corectl(config, "list", check=True).stdout.decode().splitlines()
    assert corectl(config, "list", "-q", check=True).stdout.decode().splitlines() == plain[1:]
    assert corectl(config, "--quiet", "groups", check=True).stdout.decode().splitlines() == \
        corectl(config, "groups", "--no-legend", check=True).stdout.decode().splitlines()
    r = corectl(config, "dump", "-q", "HOST=web1", check=True)
    assert r.stdout == sent["7e57ab1e00000002"] and r.stderr == b"", r.stderr
    r = corectl(config, "list", "-q", "--host", "nowhere")
    assert r.returncode == 1 and r.stderr == b"" and r.stdout == b""
    # Warnings and errors stay.
    r = corectl(config, "info", "-q", "ffffffffffff")
    assert r.returncode == 3 and r.stderr, r.stderr


def test_field_prints_one_field_of_each_crash(fixture):
    store, config, _ = fixture
    def field(*args):
        r = corectl(config, "list", *args)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().splitlines()
    assert field("-F", "COREDUMP_PID") == ["5000001", "5000002", "5000003", "5000004", "5000005"]
    assert field("app", "-F", "COREDUMP_EXE") == ["/usr/bin/app"] * 3
    assert field("app", "--field=COREDUMP_SIGNAL_NAME") == ["SIGSEGV", "SIGSEGV", "SIGABRT"]
    assert field("app", "-F", "COREDUMP_SIGNAL", "-r") == ["6", "11", "11"]
    assert field("-F", "COREDUMP_UID", "-n", "2") == ["0", "1001"]
    assert field("-F", "id", "--exe", "dbd") == ["0123456789abcdef"]
    assert field("-F", "crash.signature", "--host", "web1") == ["1" * 16] * 2
    assert field("-F", "COREDUMP_TIMESTAMP", "-1") == [str((corefixture.BASE_TIME + 7200) * 10**6)]
    # The stored core's path while it is there: none for the crash that kept no core.
    paths = field("-F", "COREDUMP_FILENAME", "app")
    assert len(paths) == 2 and all(pathlib.Path(p).is_file() and p.startswith(str(store))
                                   for p in paths), paths
    # Hostile names stay escaped, one line each; objects come as JSON.
    assert field("-F", "COREDUMP_HOSTNAME", "--exe", "/tmp/evil") == ["evil\\x1b[31mred"]
    assert json.loads(field("-F", "core", "-1")[0])["reason"] == "not_elf"
    # A crash without the field prints nothing.
    assert field("-F", "crash.no_such_key") == []
    for bad in (["-F", "COREDUMP_NOPE"], ["-F", "Exe"], ["-F", "a..b"], ["-F", "id", "--json"]):
        r = corectl(config, "list", *bad)
        assert r.returncode == 2, (bad, r.stderr)


def test_unit_matches(tmp_path):
    """UNIT=, COREDUMP_UNIT= and _SYSTEMD_UNIT= select by the record's container.unit."""
    store, config, _ = corefixture.build_store(tmp_path)
    edit_record(store, "c0ffee00a1b2c3d4", container={"unit": "app.service", "cgroup": "/x"})
    edit_record(store, "0123456789abcdef", container={"unit": "db.service"})
    for match in ("UNIT=app.service", "COREDUMP_UNIT=app.service", "_SYSTEMD_UNIT=app.service",
                  "unit=app.service"):
        r = corectl(config, "list", "--no-legend", match)
        assert r.returncode == 0, r.stderr
        assert ids_of(r.stdout) == ["c0ffee00a"], (match, r.stdout)
    r = corectl(config, "list", "--no-legend", "UNIT=app.service", "UNIT=db.service")
    assert ids_of(r.stdout) == ["c0ffee00a", "012345678"], r.stdout
    r = corectl(config, "list", "UNIT=app.service", "--host", "web2")
    assert r.returncode == 1
    r = corectl(config, "list", "-F", "COREDUMP_UNIT", check=True)
    assert r.stdout.decode().splitlines() == ["app.service", "db.service"]
    r = corectl(config, "info", "_SYSTEMD_UNIT=db.service", "--json", check=True)
    assert json.loads(r.stdout)["id"] == "0123456789abcdef"
    r = corectl(config, "vacuum", "--dry-run", "UNIT=app.service", check=True)
    assert [l.split()[3] for l in r.stdout.decode().splitlines()
            if l.startswith("Would remove core")] == ["c0ffee00a1b2c3d4"], r.stdout
    r = corectl(config, "list", "UNIT=")
    assert r.returncode == 2


def test_debugger_arguments_come_after_the_safety_options(fixture, tmp_path):
    _, config, _ = fixture
    gdb, tmpdir = fake_gdb(tmp_path)
    r = corectl(config, "debug", "--debugger", str(gdb), "-A",
                "-batch -ex 'thread apply all bt' -ex \"p \\\"x\\\"\" a\\ b", "5000002",
                env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    args = (gdb.parent / "gdb-args").read_text().splitlines()
    mine = args.index("-batch")
    assert "set auto-load off" in args[:mine] and args[:mine].count("-iex") >= 4, args
    # /usr/bin/app is not on this machine: the core alone follows, as "--core CORE".
    end = args.index("--") if "--" in args else args.index("--core")
    assert args[mine:end] == ["-batch", "-ex", "thread apply all bt", "-ex", 'p "x"', "a b"], args
    assert len(args) - end in (2, 3), args
    r = corectl(config, "debug", "--debugger", str(gdb), "--debugger-arguments=-ex 'bt", "5000002",
                env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 2 and b"unterminated" in r.stderr, r.stderr


# --- --file: a core that is not in the store --------------------------------------------------

def test_info_on_a_core_file_outside_the_store(fixture, tmp_path):
    _, config, _ = fixture
    core = tmp_path / "core"
    core.write_bytes(corefixture.crasher_core("segv"))
    # No store is read: a configuration pointing nowhere does not matter.
    r = corectl(config, "--store", str(tmp_path / "no-store"), "info", "--file", str(core))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for want in ("Signal: 11 (SEGV), si_code 1 (SEGV_MAPERR)", "Comm: pc_crasher",
                 "Symbol: pc_crash_null_write", f"Core file: {core}",
                 "Record: - (a core not in the store)", "Thread ", "Mapped files:"):
        assert want in out, (want, out)
    # The same analysis as the handler's: the record the handler wrote for this kind of core.
    rec = json.loads(corectl(config, "info", "--file", str(core), "--json", check=True).stdout)
    stored = json.loads(corectl(config, "info", "c0ffee00a1b2c3d4", "--json", check=True).stdout)
    assert rec["signal"] == 11 and rec["comm"] == "pc_crasher" and rec["core"]["compression"] == "none"
    assert rec["crash"]["signature_chain"] == stored["crash"]["signature_chain"].replace(
        "<offset>", rec["crash"]["signature_chain"].split("+")[-1])
    assert [f.get("symbol") is not None for f in rec["crash"]["stacks"][0]["frames"]] == \
        [f.get("symbol") is not None for f in stored["crash"]["stacks"][0]["frames"]]


def test_dump_and_debug_on_a_core_file(fixture, tmp_path):
    _, config, _ = fixture
    core = tmp_path / "core"
    core.write_bytes(corefixture.crasher_core("abort"))
    out = tmp_path / "out"
    r = corectl(config, "dump", "--file", str(core), "-o", str(out))
    assert r.returncode == 0 and out.read_bytes() == core.read_bytes(), r.stderr
    assert corectl(config, "dump", "--file", str(core), check=True).stdout == core.read_bytes()
    gdb, tmpdir = fake_gdb(tmp_path)
    r = corectl(config, "debug", "--file", str(core), "--debugger", str(gdb), "-A", "-batch",
                env={"TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    args = (gdb.parent / "gdb-args").read_text().splitlines()
    assert "set auto-load off" in args and args[args.index("-batch") + 1] == "--", args
    assert args[-2].endswith("/sysroot" + str(pctest.env_path("PC_CRASHER"))), args
    assert args[-1].startswith(str(tmpdir)) and list(tmpdir.iterdir()) == []


def test_core_files_that_are_no_cores(fixture, tmp_path):
    store, config, _ = fixture
    text = tmp_path / "text"
    text.write_text("not a core\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    stored = next(store.glob("web1/*/c0ffee00a1b2c3d4.core.zst"))
    for path, status, why in ((text, 1, b"not an ELF core"), (fifo, 2, b"not a regular file"),
                              (stored, 2, b"zstd-compressed"), (tmp_path / "none", 1, b"No such file")):
        for verb in ("info", "dump", "debug"):
            r = corectl(config, verb, "--file", str(path), "-o" if verb == "dump" else "--no-pager",
                        *([str(tmp_path / "o")] if verb == "dump" else []))
            assert r.returncode == status and why in r.stderr, (verb, path, r.stderr)
    assert not (tmp_path / "o").exists()
    r = corectl(config, "info", "--file", str(text), "app")
    assert r.returncode == 2 and b"--file names the one core" in r.stderr
    assert corectl(config, "list", "--file", str(text)).returncode == 2


def test_core_file_names_are_escaped(fixture, tmp_path):
    _, config, _ = fixture
    core = tmp_path / "core"
    core.write_bytes(corefixture.elf_core(files=(b"/tmp/lib\x1b]0;pwned\x07.so",)))
    r = corectl(config, "info", "--file", str(core))
    assert r.returncode == 0, r.stderr
    assert b"\x1b" not in r.stdout and b"/tmp/lib\\x1b]0;pwned\\x07.so" in r.stdout, r.stdout
