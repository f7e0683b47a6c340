"""corectl, often root, on inputs a crashing user made: the record's strings, the files its core
names, the debug files a debuginfod server returns, and the summary cache under a user's HOME.

The stores are written by the real handler from real cores of pc_crasher (gdb's gcore, see
corefixture.py). gcore leaves out the first page of each mapped file, where a kernel core has
the build-ids: the tests put the files' build-ids into the record, as the handler records them
from a kernel core.
"""
import http.server
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading

import pytest

import corefixture
import pctest


def corectl(config, *args, env=None, timeout=120, cache=None):
    full_env = dict(os.environ, TZ="UTC", NO_COLOR="1")
    full_env.update({"XDG_CACHE_HOME": cache} if cache else {"CORECTL_CACHE": "0"})
    for key in ("DEBUGINFOD_URLS", "TMPDIR"):
        full_env.pop(key, None)
    full_env.update(env or {})
    # A session of its own: a debugger left waiting (on a FIFO) is killed with it on a timeout.
    proc = subprocess.Popen([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def build_id(path):
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True).stdout
    found = re.search(r"Build ID: ([0-9a-f]+)", out)
    return found.group(1) if found else None


def the_record(store):
    paths = list(pathlib.Path(store).glob("*/*/*.json"))
    assert len(paths) == 1, paths
    return paths[0]


def edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # in place: keeps the owner


def crash_store(base, core, exe, uid=1000):
    """A store with one record of `core` (of executable `exe`), written by the real handler, with
    the mapped files' build-ids recorded. Returns (store, config, record path)."""
    base = pathlib.Path(base)
    store = pctest.make_store(base)
    config = pctest.write_config(base / "corectl.conf", store)
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(config), "-P4242",
                    f"-u{uid}", f"-g{uid}", "-t1763780000", "-d1", "--", "host", "11",
                    str(exe).replace("/", "!")], input=core, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = the_record(store)

    def add_build_ids(data):
        for m in data["mappings"]:
            m["build_id"] = build_id(m["path"])
    edit(record, add_build_ids)
    return store, config, record


def fake_gdb(where):
    """A 'gdb' that writes its uid, its arguments (one a line) and whether it can read the core."""
    where = pathlib.Path(where)
    gdb = where / "gdb"
    gdb.write_text("#!/bin/sh\n"
                   f"id -u > {where}/out/uid\n"
                   f"printf '%s\\n' \"$@\" > {where}/out/args\n"
                   "for last; do :; done\n"
                   f"head -c4 \"$last\" > {where}/out/core-head 2> {where}/out/core-head.err || true\n")
    gdb.chmod(0o755)
    (where / "out").mkdir()
    (where / "out").chmod(0o777)  # the debugger may run as another user
    return gdb, where / "out"


def core_head(out):
    """The first bytes of the core the fake gdb got, with why it could not read it, if so."""
    head = (out / "core-head").read_bytes()
    return head or (out / "core-head.err").read_bytes() + (out / "args").read_bytes()


@pytest.fixture
def shared_dir():
    """A directory every user may enter (pytest's tmp_path is root's only when root runs it)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="pcc-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def segv_core():
    return corefixture.crasher_core("segv")


def test_debug_escapes_what_the_record_says(tmp_path, shared_dir, segv_core):
    """An executable's name with an escape sequence reached root's terminal in a warning."""
    store, config, record = crash_store(tmp_path, segv_core, pctest.env_path("PC_CRASHER"))
    evil = tmp_path / "app\x1b]0;owned\x07\x1b[2J"
    shutil.copy("/bin/true", evil)
    edit(record, lambda d: d.update(executable=str(evil), mappings=d["mappings"] + [
        {"path": str(evil), "start": "0x1000", "build_id": "ab" * 20, "findings": []}]))
    gdb, out = fake_gdb(shared_dir)
    r = corectl(config, "debug", "--debugger", str(gdb))
    assert r.returncode == 0, r.stderr
    assert b"build-id" in r.stderr and b"\\x1b]0;owned" in r.stderr, r.stderr
    assert b"\x1b" not in r.stderr and b"\x07" not in r.stderr


def test_gdb_gets_no_scripts_no_network_and_a_private_sysroot(tmp_path, shared_dir, segv_core):
    store, config, _ = crash_store(tmp_path, segv_core, pctest.env_path("PC_CRASHER"))
    gdb, out = fake_gdb(shared_dir)
    r = corectl(config, "debug", "--debugger", str(gdb))
    assert r.returncode == 0, r.stderr
    args = (out / "args").read_text().splitlines()
    options = [a for a in args[:args.index("--")] if a != "-nh"]
    assert ["-iex", "set auto-load off"] == options[0:2], args
    assert ["-iex", "set debuginfod enabled off"] == options[2:4], args
    sysroot = [a for a in options if a.startswith("set sysroot ")]
    assert len(sysroot) == 1, args
    root = sysroot[0][len("set sysroot "):]
    # The executable is the private copy, the core the private one.
    exe, core = args[args.index("--") + 1:]
    assert exe == root + str(pctest.env_path("PC_CRASHER")), args
    assert core.startswith(str(pathlib.Path(root).parent)) and core.endswith("/core")
    assert core_head(out) == b"\x7fELF"
    assert not pathlib.Path(root).exists()  # removed afterwards
    r = corectl(config, "debug", "--debuginfod", "--debugger", str(gdb))
    assert r.returncode == 0, r.stderr
    assert "set debuginfod enabled on" in (out / "args").read_text().splitlines()


def test_gdb_as_root_skips_the_init_files_of_a_users_home(tmp_path, shared_dir, segv_core):
    """`sudo -E corectl debug` on a root-only core: gdb, as root, ran the user's ~/.gdbinit."""
    if not pctest.is_root():
        pytest.skip("needs root")
    store, config, record = crash_store(tmp_path, segv_core, pctest.env_path("PC_CRASHER"))
    edit(record, lambda d: d["core"].update(access="root"))
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    gdb, out = fake_gdb(shared_dir)
    r = corectl(config, "debug", "--debugger", str(gdb), env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert (out / "uid").read_text() == "0\n"
    assert (out / "args").read_text().splitlines()[0] == "-nh"
    r = corectl(config, "debug", "--debugger", str(gdb), env={"HOME": "/root"})
    assert r.returncode == 0, r.stderr
    assert "-nh" not in (out / "args").read_text().splitlines()


def test_gdb_never_opens_a_fifo_the_crasher_left(tmp_path, segv_core):
    """The core's link map names a library of the crasher's own directory, which became a FIFO
    after the crash: gdb, as root, waited on it for ever. Only copies of checked files reach gdb
    now, and the backtrace still shows the crash site."""
    libs = tmp_path / "libs"
    libs.mkdir()
    shutil.copy("/usr/lib/x86_64-linux-gnu/libstdc++.so.6", libs / "libstdc++.so.6")
    crasher = pctest.env_path("PC_CRASHER")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "core")
        subprocess.run(["gdb", "-nx", "-batch", "-ex", "run", "-ex", f"gcore {path}",
                        "--args", str(crasher), "segv"],
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LD_LIBRARY_PATH": str(libs)},
                       cwd=tmp, capture_output=True, timeout=120)
        core = pathlib.Path(path).read_bytes()
    store, config, record = crash_store(tmp_path, core, crasher)
    assert str(libs / "libstdc++.so.6") in record.read_text()
    (libs / "libstdc++.so.6").unlink()
    os.mkfifo(libs / "libstdc++.so.6")
    r = corectl(config, "debug", "--debugger", "gdb -nx -batch -ex bt", timeout=90)
    out = r.stdout.decode(errors="replace")
    assert "pc_crash_null_write" in out, out + r.stderr.decode(errors="replace")
    assert b"not giving the debugger" in r.stderr and b"libstdc++" in r.stderr


def test_root_debugs_a_users_crash_as_that_user(tmp_path, shared_dir, segv_core):
    if not pctest.is_root():
        pytest.skip("needs root")
    store, config, record = crash_store(tmp_path, segv_core, pctest.env_path("PC_CRASHER"),
                                        uid=65534)
    gdb, out = fake_gdb(shared_dir)
    r = corectl(config, "debug", "--debugger", str(gdb))
    assert r.returncode == 0, r.stderr
    assert (out / "uid").read_text() == "65534\n"
    assert core_head(out) == b"\x7fELF"  # the copy is theirs to read
    # A root-only core (a setuid program's) is not handed to its user.
    edit(record, lambda d: d["core"].update(access="root"))
    r = corectl(config, "debug", "--debugger", str(gdb))
    assert r.returncode == 0, r.stderr
    assert (out / "uid").read_text() == "0\n"


def test_a_debugger_run_as_the_user_does_not_hold_roots_terminal(tmp_path, shared_dir,
                                                                 segv_core):
    """With root's terminal as its controlling terminal, a process the user can trace could
    type into root's shell (TIOCSTI) after corectl ends."""
    if not pctest.is_root():
        pytest.skip("needs root")
    import fcntl
    import pty
    import termios
    store, config, _ = crash_store(tmp_path, segv_core, pctest.env_path("PC_CRASHER"), uid=65534)
    gdb, out = fake_gdb(shared_dir)
    with gdb.open("a") as f:
        f.write(f"if (exec 3</dev/tty) 2>{out}/tty-err; then echo ctty; else echo none; fi > {out}/tty\n"
                f"cat > {out}/input\n")
    leader, follower = pty.openpty()

    def on_the_terminal():
        os.setsid()
        fcntl.ioctl(follower, termios.TIOCSCTTY, 0)
    env = dict(os.environ, TZ="UTC", NO_COLOR="1", CORECTL_CACHE="0")
    proc = subprocess.Popen([str(pctest.env_path("PC_CORECTL")), "--config", str(config), "debug",
                             "--debugger", str(gdb)], stdin=follower, stdout=follower,
                            stderr=follower, env=env, preexec_fn=on_the_terminal)
    os.close(follower)
    try:
        pctest.wait_until(lambda: (out / "tty").exists() and (out / "tty").read_text(),
                          what="the fake gdb's check of its terminal")
        os.write(leader, b"typed\n\x04")  # the debugger still reads the terminal
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert (out / "uid").read_text() == "65534\n"
    assert (out / "tty").read_text() == "none\n"
    assert (out / "input").read_text() == "typed\n"


class FakeDebuginfod(http.server.BaseHTTPRequestHandler):
    """Answers every /buildid/<id>/{debuginfo,executable} with the same file, whatever the id."""
    body = b""

    def do_GET(self):
        if not re.fullmatch(r"/buildid/[0-9a-f]+/(debuginfo|executable)", self.path):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def debuginfod(tmp_path):
    FakeDebuginfod.body = pathlib.Path(pctest.env_path("PC_CRASHER")).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeDebuginfod)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"DEBUGINFOD_URLS": f"http://127.0.0.1:{server.server_address[1]}",
           "DEBUGINFOD_CACHE_PATH": str(tmp_path / "debuginfod-cache"),
           "DEBUGINFOD_TIMEOUT": "20"}
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("asked", ["real", "other"])
def test_debuginfod_answers_must_carry_the_build_id_asked_for(tmp_path, segv_core, debuginfod,
                                                              asked):
    """A server that answers every build-id with pc_crasher: its symbols name a frame only when
    the frame's module is that pc_crasher."""
    crasher = pctest.env_path("PC_CRASHER")
    store, config, record = crash_store(tmp_path, segv_core, crasher)
    wanted = build_id(crasher) if asked == "real" else "0123456789abcdef0123456789abcdef01234567"

    def unnamed(data):
        frame = data["crash"]["stacks"][0]["frames"][0]
        frame.update(build_id=wanted, symbol=None, file=None, line=None)
        data["crash"].update(symbol=None, signature_chain=None)
    edit(record, unnamed)
    r = corectl(config, "info", env=debuginfod)
    assert r.returncode == 0, r.stderr
    named = b"pc_crash_null_write" in r.stdout
    if asked == "real":
        assert named, r.stdout
    else:
        assert not named, r.stdout
        assert b"ignoring it" in r.stderr and wanted.encode() in r.stderr, r.stderr


@pytest.fixture(scope="module")
def parser_hook(tmp_path_factory):
    """tests/programs/analysis_hook.c: attacker code in libdw, where the debug file is parsed."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler for the preloaded hook")
    return pctest.build_analysis_hook(tmp_path_factory.mktemp("hook"))


def hook_env(tmp_path, parser_hook, mode):
    """The environment that preloads the hook into corectl, and what the hook checks: a file
    it must not read, one it may, the directory it tries to plant a file in, the ids the
    sandboxed child must have."""
    secret = tmp_path / "secret"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    readable = tmp_path / "readable"
    readable.write_text("anyone's\n")
    readable.chmod(0o644)
    uid, gid = (65533, 65533) if pctest.is_root() else (os.getuid(), os.getgid())
    return dict(LD_PRELOAD=str(parser_hook), PC_HOOK_MODE=mode, PC_HOOK_SECRET=str(secret),
                PC_HOOK_PATH=str(readable), PC_HOOK_DIR=str(tmp_path), PC_HOOK_UID=str(uid),
                PC_HOOK_GID=str(gid),
                PC_HOOK_STORE_UID="0" if pctest.is_root() else "4000000000")


@pytest.mark.parametrize("mode", ["exit", "ids"])
def test_debuginfod_answers_are_parsed_in_a_sandboxed_child(tmp_path, segv_core, debuginfod,
                                                            parser_hook, mode):
    """The server's debug file is parsed by libdw in a sandboxed child, not in corectl (which
    root may run): code it makes libdw run (the preloaded hook, at dwfl_begin) ends that child,
    not corectl, and reaches nothing: no file by path, no network, no fork; run by root, the
    child is the dedicated analysis uid with no groups."""
    crasher = pctest.env_path("PC_CRASHER")
    store, config, record = crash_store(tmp_path, segv_core, crasher)
    wanted = build_id(crasher)

    def unnamed(data):
        frame = data["crash"]["stacks"][0]["frames"][0]
        frame.update(build_id=wanted, symbol=None, file=None, line=None)
        data["crash"].update(symbol=None, signature_chain=None)
    edit(record, unnamed)
    env = dict(debuginfod, **hook_env(tmp_path, parser_hook, mode))
    r = corectl(config, "info", env=env)
    assert r.returncode == 0, r.stderr
    # Without root the caller's supplementary groups cannot be dropped (the hook's bit 4).
    status = 100 + (4 if mode == "ids" and not pctest.is_root() and os.getgroups() else 0)
    assert f"was not read: exited with status {status}\n".encode() in r.stderr, r.stderr
    assert b"pc_crash_null_write" not in r.stdout, r.stdout
    assert not (tmp_path / "planted-by-hook").exists()


@pytest.mark.parametrize("mode", ["exit", "ids"])
def test_a_core_file_is_analysed_in_a_sandboxed_child(tmp_path, segv_core, parser_hook, mode):
    """`corectl info --file CORE` unwinds a core nobody vetted with libdw: code a hostile core or
    module makes libdw run (the preloaded hook, at dwfl_begin) ends the sandboxed child and
    reaches nothing, as in the handler; corectl says the analysis failed and shows the notes'."""
    core = tmp_path / "core"
    core.write_bytes(segv_core)
    env = hook_env(tmp_path, parser_hook, mode)
    config = pctest.write_config(tmp_path / "c.conf", tmp_path / "no-store")
    r = corectl(config, "info", "--file", str(core), "--json", env=env)
    assert r.returncode == 0, r.stderr
    status = 100 + (4 if mode == "ids" and not pctest.is_root() and os.getgroups() else 0)
    rec = json.loads(r.stdout)
    assert rec["handler"]["analysis"] == f"exited with status {status}", rec["handler"]
    assert rec["signal"] == 11  # the notes' crash site is still there
    assert not (tmp_path / "planted-by-hook").exists()


def test_root_keeps_no_cache_in_a_users_home(tmp_path):
    """`sudo -E corectl` as root with a user's HOME: root wrote its cache there."""
    if not pctest.is_root():
        pytest.skip("needs root")
    store, config, _ = corefixture.build_store(tmp_path)
    backdate(store)
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    r = corectl(config, "list", env={"HOME": str(home), "CORECTL_CACHE": "1",
                                     "XDG_CACHE_HOME": ""})
    assert r.returncode == 0, r.stderr
    assert list(home.iterdir()) == []
    r = corectl(config, "list", cache=str(home))
    assert r.returncode == 0 and list(home.iterdir()) == []


def backdate(store, seconds=10):
    # The cache skips directories changed in the last two seconds (see cli/cache.hpp).
    past = os.stat(store).st_mtime - seconds
    for d in [store, *store.glob("*"), *store.glob("*/*")]:
        os.utime(d, (past, past))


@pytest.mark.parametrize("link", [".cache", "process-core"])
def test_cache_follows_no_link_on_the_way(tmp_path, link):
    """A link anywhere on the cache's path (not only its last component) took root's cache
    writes to a directory of the link's maker's choosing."""
    store, config, _ = corefixture.build_store(tmp_path)
    backdate(store)
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    if link == ".cache":
        (home / ".cache").symlink_to(elsewhere)
    else:
        (home / ".cache").mkdir()
        (home / ".cache" / "process-core").symlink_to(elsewhere)
    r = corectl(config, "list", env={"HOME": str(home), "CORECTL_CACHE": "1",
                                     "XDG_CACHE_HOME": ""})
    assert r.returncode == 0, r.stderr
    assert list(elsewhere.rglob("*")) == []
    # Without links the same HOME keeps a cache.
    (home / ".cache").unlink() if link == ".cache" else (home / ".cache" / "process-core").unlink()
    r = corectl(config, "list", env={"HOME": str(home), "CORECTL_CACHE": "1",
                                     "XDG_CACHE_HOME": ""})
    assert r.returncode == 0, r.stderr
    assert list((home / ".cache" / "process-core").glob("corectl-*"))


@pytest.mark.parametrize("asked", ["real", "other"])
def test_debug_takes_debuginfods_executable_only_with_the_build_id_asked_for(
        tmp_path, shared_dir, segv_core, debuginfod, asked):
    """The executable on disk is not the one that crashed; the server (answering pc_crasher to
    every request) holds the crashed one only when the record's build-id is pc_crasher's."""
    crasher = pctest.env_path("PC_CRASHER")
    store, config, record = crash_store(tmp_path, segv_core, crasher)
    rebuilt = tmp_path / "app"
    shutil.copy("/bin/true", rebuilt)
    rebuilt.chmod(0o755)
    wanted = build_id(crasher) if asked == "real" else "0123456789abcdef0123456789abcdef01234567"

    def point_at_rebuilt(data):
        data["executable"] = str(rebuilt)
        data["core"]["access"] = "root"  # the caller runs the debugger (also without root)
        data["mappings"].append({"path": str(rebuilt), "start": "0x1000", "build_id": wanted,
                                 "findings": []})
    edit(record, point_at_rebuilt)
    gdb, out = fake_gdb(shared_dir)
    with gdb.open("a") as f:  # keeps the executable it was given
        f.write(f'after=; for a; do [ -n "$after" ] && {{ cp "$a" {out}/exe; break; }}; '
                f'[ "$a" = "--" ] && after=1; done\n')
    r = corectl(config, "debug", "--debugger", str(gdb), env=debuginfod)
    assert r.returncode == 0, r.stderr
    args = (out / "args").read_text().splitlines()
    exe = args[args.index("--") + 1]
    assert exe.endswith("/sysroot" + str(rebuilt)), args
    given = (out / "exe").read_bytes()
    if asked == "real":
        assert b"from debuginfod" in r.stderr, r.stderr
        assert given == pathlib.Path(crasher).read_bytes()
    else:
        assert b"from debuginfod" not in r.stderr and b"ignoring it" in r.stderr, r.stderr
        assert given == rebuilt.read_bytes()
