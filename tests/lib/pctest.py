"""Shared helpers for process-core's integration and end-to-end tests.

Paths to the built binaries come from the environment CTest sets (see tests/CMakeLists.txt):
PC_HANDLER, PC_EXPORTER, PC_CORECTL, PC_CRASHER, PC_BUILD_DIR, PC_SOURCE_DIR.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

import machine_journal

CORE_PATTERN = "/proc/sys/kernel/core_pattern"
LOCK_PATH = "/run/lock/process-core-tests.lock" if os.path.isdir("/run/lock") else "/tmp/process-core-tests.lock"


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the tests through ctest")
    return pathlib.Path(value)


def is_root():
    return os.geteuid() == 0


def can_set_core_pattern():
    return is_root() and os.access(CORE_PATTERN, os.W_OK)


@contextlib.contextmanager
def machine_lock():
    """One lock for everything that changes machine-wide state (core_pattern, /dev/log). Whatever
    a killed holder left changed is put back first (machine_journal)."""
    with open(LOCK_PATH, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            machine_journal.undo_leftovers()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_signal_stack = []


def _on_signals(restore):
    """Runs restore() before the process dies of SIGTERM/SIGINT/SIGHUP, then whatever handled the
    signal before (an outer restore, and finally the default action). Undone by _off_signals()."""
    old_handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    _signal_stack.append(old_handlers)

    def on_signal(signo, frame):
        restore()
        old = old_handlers[signo]
        if callable(old):
            old(signo, frame)
        else:
            signal.signal(signo, signal.SIG_DFL)
            os.kill(os.getpid(), signo)

    for s in _SIGNALS:
        signal.signal(s, on_signal)


def _off_signals():
    for s, h in _signal_stack.pop().items():
        signal.signal(s, h)


@contextlib.contextmanager
def core_pattern(pattern):
    """Sets core_pattern for the duration, always restoring the previous one, even on SIGTERM.

    Must be used inside machine_lock()."""
    if len(pattern) > 127:
        raise ValueError(f"core_pattern longer than 127 characters: {pattern!r}")
    previous = pathlib.Path(CORE_PATTERN).read_text().rstrip("\n")

    def restore(*_):
        pathlib.Path(CORE_PATTERN).write_text(previous + "\n")

    kept = machine_journal.add("values", values={CORE_PATTERN: previous + "\n"})
    try:
        _on_signals(restore)
        pathlib.Path(CORE_PATTERN).write_text(pattern + "\n")
        if pathlib.Path(CORE_PATTERN).read_text().rstrip("\n") != pattern:
            raise RuntimeError("core_pattern did not take the value written")
        yield previous
    finally:
        restore()
        _off_signals()
        machine_journal.forget(kept)


# The recommended core_pattern arguments (packaging/sysctl/50-process-core.conf).
RECOMMENDED_ARGS = "-P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"


def allow_cores():
    """preexec_fn for crashing children: the kernel skips the dump entirely when RLIMIT_CORE is
    1, and the CI shell may have set 0, so give them an explicit unlimited one."""
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


class KernelRig:
    """A copy of the built handler, its store and configurations under a short directory of its
    own (core_pattern holds at most 127 characters)."""

    def __init__(self, work):
        self.work = work
        self.handler = work / "h"
        self.store = make_store(work)
        self.log = None  # a SyslogCapture when asked for

    def config(self, name="c", **keys):
        """Writes the configuration `name` in the rig's directory; returns its path."""
        return write_config(self.work / name, self.store, **keys)

    def pattern(self, config="c", args=RECOMMENDED_ARGS):
        """The core_pattern that runs the rig's handler with configuration `config`."""
        return f"|{self.handler} --config={self.work}/{config} {args}"

    def handlers_running(self):
        """Pids of the rig's handlers still running."""
        pids = []
        for d in pathlib.Path("/proc").iterdir():
            if d.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(d / "exe") == str(self.handler):
                        pids.append(int(d.name))
        return pids


def crash_together(argv, n, preexec=allow_cores, timeout=120):
    """Starts n crashers (pc_crasher segv-on-eof …) and, once all are ready, makes them crash at
    the same moment by closing their stdin; returns their pids once all died of SIGSEGV."""
    procs = [subprocess.Popen([str(a) for a in argv], preexec_fn=preexec, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(n)]
    for p in procs:
        assert p.stdout.readline() == b"ready\n"
    for p in procs:
        p.stdin.close()
    for p in procs:
        p.wait(timeout=timeout)
        p.stdout.close()
        assert p.returncode == -signal.SIGSEGV, p.returncode
    return {p.pid for p in procs}


@contextlib.contextmanager
def kernel_rig(prefix, syslog=False, install=True, **config_keys):
    """Real crashes through the kernel: under the machine lock and the kernel settings the
    package ships, a KernelRig whose handler core_pattern runs with configuration "c" made of
    `config_keys` (unless `install` is false: the test sets its own patterns). `syslog` captures
    /dev/log into rig.log. Everything is restored and removed afterwards."""
    work = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        shutil.copy2(env_path("PC_HANDLER"), work / "h")
        rig = KernelRig(work)
        with machine_lock(), contextlib.ExitStack() as stack:
            if syslog:
                rig.log = stack.enter_context(SyslogCapture())
            stack.enter_context(shipped_kernel_settings())
            if install:
                rig.config(**config_keys)
                stack.enter_context(core_pattern(rig.pattern()))
            yield rig
    finally:
        shutil.rmtree(work, ignore_errors=True)


def shipped_sysctl():
    """The kernel settings the package ships (packaging/sysctl/50-process-core.conf), as
    {"kernel.core_pipe_limit": "0", ...}, core_pattern aside (each test points it at its own
    handler)."""
    text = (pathlib.Path(__file__).resolve().parents[2] / "packaging" / "sysctl" /
            "50-process-core.conf").read_text()
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = (p.strip() for p in line.split("=", 1))
            if key != "kernel.core_pattern":
                out[key] = value
    return out


@contextlib.contextmanager
def shipped_kernel_settings():
    """Applies shipped_sysctl() for the duration, so that kernel end-to-end tests run under what
    users run; always restores the previous values, also on SIGTERM/SIGINT/SIGHUP (use inside
    machine_lock(); nested with core_pattern() either way, both restore on a signal)."""
    values = shipped_sysctl()
    paths = {k: pathlib.Path("/proc/sys") / k.replace(".", "/") for k in values}
    previous = {k: p.read_text() for k, p in paths.items()}
    kept = machine_journal.add("values", values={str(paths[k]): v for k, v in previous.items()})

    def restore():
        for k, p in paths.items():
            p.write_text(previous[k])

    try:
        _on_signals(restore)
        for k, p in paths.items():
            p.write_text(values[k] + "\n")
        yield values
    finally:
        restore()
        _off_signals()
        machine_journal.forget(kept)


@contextlib.contextmanager
def sysctl(path, value):
    """Sets a /proc/sys file for the duration, restoring the previous value (machine_lock())."""
    previous = pathlib.Path(path).read_text()
    kept = machine_journal.add("values", values={str(path): previous})
    try:
        pathlib.Path(path).write_text(f"{value}\n")
        yield previous.rstrip("\n")
    finally:
        pathlib.Path(path).write_text(previous)
        machine_journal.forget(kept)


class SyslogCapture:
    """Receives syslog datagrams on /dev/log while no syslog daemon owns it (root only).

    Use inside machine_lock(). `lines` holds the messages (without the <PRI> prefix)."""

    def __init__(self):
        self.lines = []
        self.active = False
        self._sock = None
        self._thread = None

    def __enter__(self):
        if not is_root() or os.path.exists("/dev/log"):
            return self  # a real syslog daemon (or none we may replace): nothing to capture
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._kept = machine_journal.add("socket", path="/dev/log")
        self._sock.bind("/dev/log")
        os.chmod("/dev/log", 0o666)
        self._sock.settimeout(0.2)
        self.active = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while self.active:
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            if text.startswith("<"):
                text = text[text.find(">") + 1:]
            self.lines.append(text)

    def wait_for(self, predicate, timeout=10.0):
        """The lines matching predicate, once there is one ([] after `timeout` seconds)."""
        return wait_until(lambda: [l for l in list(self.lines) if predicate(l)], timeout) or []

    def __exit__(self, *exc):
        if self._sock is not None:
            self.active = False
            self._thread.join(timeout=2)
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/dev/log")
            machine_journal.forget(self._kept)


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of `size` (e.g. "16m") mounted at `path` for the duration (root only)."""
    pathlib.Path(path).mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                   check=True)
    try:
        yield pathlib.Path(path)
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def bindfs(path):
    """A FUSE file system (bindfs, of a directory beside `path`) mounted at `path` for the
    duration (root only). FUSE file systems whose daemon has no tmpfile operation, bindfs among
    them, refuse O_TMPFILE with EOPNOTSUPP, as vfat, NFS or CIFS do."""
    path = pathlib.Path(path)
    backing = path.with_name(path.name + ".backing")
    backing.mkdir()
    path.mkdir()
    subprocess.run(["bindfs", str(backing), str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def records(store):
    """All records in a store, parsed, with their paths."""
    out = []
    for path in pathlib.Path(store).glob("*/*/*.json"):
        data = json.loads(path.read_text())
        data["_path"] = str(path)
        out.append(data)
    return out


def wait_until(condition, timeout=30.0, what=None, interval=0.02):
    """Polls condition() until it returns something true, and returns that. Past `timeout`
    seconds: the last value when `what` is None, else fails the test saying what never came."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not value and what is not None:
        raise AssertionError(f"{what}: not within {timeout} s")
    return value


def wait_for_records(store, count, timeout=30.0):
    """The records of `store` once there are at least `count` (all there are after `timeout`)."""
    wait_until(lambda: len(records(store)) >= count, timeout)
    return records(store)


def records_for(store, pids, timeout=30.0):
    """{pid: record} for the crashes of `pids`, waited for; fails the test when any is missing."""
    pids = set(pids)

    def mine():
        found = {r["pid"]: r for r in records(store) if r["pid"] in pids}
        return found if len(found) == len(pids) else None

    found = wait_until(mine, timeout)
    if not found:
        got = sorted(r["pid"] for r in records(store))
        raise AssertionError(f"no record within {timeout} s for pids {sorted(pids - set(got))} "
                             f"in {store}; records for {got}")
    return found


def record_for(store, pid, timeout=30.0):
    """The record of the crash of `pid`, waited for; fails the test when none comes in time."""
    return records_for(store, {pid}, timeout)[pid]


def open_files(pid, under):
    """{descriptor path in /proc: target} for the regular files process `pid` has open under the
    directory `under`: an unnamed O_TMPFILE shows as "<dir>/#<inode> (deleted)"."""
    out = {}
    fd_dir = pathlib.Path(f"/proc/{pid}/fd")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith(f"{under}/") and stat.S_ISREG(fd.stat().st_mode):
                    out[fd] = target
    return out


def make_store(base, owner="nobody"):
    """A store directory the handler can write after dropping to `owner`."""
    store = pathlib.Path(base) / "store"
    store.mkdir(mode=0o750)
    if is_root():
        shutil.chown(store, user=owner, group=None)
    return store


def write_config(path, store, **keys):
    # Capture slots and rate-limit locks of the test's own (the handler creates the directory),
    # so that tests running side by side never take each other's slots.
    keys.setdefault("runtime_dir", pathlib.Path(store).parent / "run")
    # Not root: the handler cannot drop privileges, and an empty user is refused, so none.
    user = keys.pop("user", "nobody" if is_root() else None)
    lines = [f"store = {store}"] + ([f"user = {user}"] if user is not None else [])
    lines += [f"{k} = {v}" for k, v in keys.items()]
    pathlib.Path(path).write_text("\n".join(lines) + "\n")
    return path


def gcore(argv):
    """Starts `argv` (which must write "ready" on stdout, then wait), dumps it with gcore and kills
    it. Returns (core bytes, pid)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        if proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"{argv} did not get ready")
        with tempfile.TemporaryDirectory() as tmp:
            prefix = os.path.join(tmp, "core")
            subprocess.run(["gcore", "-o", prefix, str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            data = pathlib.Path(f"{prefix}.{proc.pid}").read_bytes()
        return data, proc.pid
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def zstd_decompress(path):
    return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout


def kernel_file_core(crasher, work, threads):
    """A core of `crasher` running `threads` threads, written by the kernel to a file in `work`
    (core_pattern set under the machine lock and restored): (core bytes, pid)."""
    with machine_lock(), core_pattern(f"{work}/core.%p"):
        proc = subprocess.Popen([str(crasher), "thread", "--threads", str(threads)], cwd=work,
                                preexec_fn=allow_cores, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        proc.wait(timeout=60)
    assert proc.returncode < 0
    return (pathlib.Path(work) / f"core.{proc.pid}").read_bytes(), proc.pid


def stop_process(proc, log=None, timeout=20):
    """Stops a server a test started, by its PID: SIGTERM, then SIGKILL after `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if log is not None:
        log.close()


def _package_sources(top):
    """The files of the source tree a package is built from: not .git, build trees (/build*/ as
    in .gitignore, any directory with a CMakeCache.txt, obj-*, Testing) or Python caches."""
    def ignore(directory, names):
        skip = {n for n in names if n in (".git", "Testing", "__pycache__") or n.startswith("obj-")}
        if pathlib.Path(directory) == pathlib.Path(top):
            skip |= {n for n in names if n.startswith("build")}
        skip |= {n for n in names if (pathlib.Path(directory, n) / "CMakeCache.txt").exists()}
        return skip
    return ignore


def build_deb(out):
    """The Debian package of the tested source tree, built with `dpkg-buildpackage -us -uc -b`
    from a copy of it (the build writes into debian/ and next to the source); copies the .deb,
    its -dbgsym package, .changes and .buildinfo into `out` and returns the .deb. The packages
    are kept under PC_BUILD_DIR/deb and reused while the sources are the same; ccache, when
    there, makes a rebuild of little changed sources quick (the copy is always at the same
    path, which the compiler's command lines name)."""
    source = env_path("PC_SOURCE_DIR")
    work = env_path("PC_BUILD_DIR") / "deb"
    work.mkdir(exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        copy = work / "process-core"
        ignore = _package_sources(source)
        digest = hashlib.sha256()
        for root, dirs, names in os.walk(source):
            dirs[:] = sorted(set(dirs) - ignore(root, dirs))
            for n in sorted(set(names) - ignore(root, names)):
                path = pathlib.Path(root, n)
                digest.update(f"{path.relative_to(source)}\0{path.stat().st_mode & 0o111}\0".encode())
                if not path.is_symlink():
                    digest.update(path.read_bytes())
        stamp = work / "source.sha256"
        built = sorted(work.glob("process-core*_*.deb"))
        if not (stamp.exists() and stamp.read_text() == digest.hexdigest() and len(built) == 2):
            stamp.unlink(missing_ok=True)
            for old in work.glob("process-core*_*"):
                old.unlink()
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy, symlinks=True, ignore=ignore)
            env = dict(os.environ)
            if shutil.which("ccache"):
                env.setdefault("CMAKE_CXX_COMPILER_LAUNCHER", "ccache")
            # Niced: the suite's parallel tests run beside it (tests/CMakeLists.txt).
            r = subprocess.run(["nice", "-n", "10", "dpkg-buildpackage", "-us", "-uc", "-b",
                                f"-j{os.cpu_count()}"],
                               cwd=copy, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            (work / "build.log").write_text(r.stdout)
            assert r.returncode == 0, "dpkg-buildpackage failed:\n" + r.stdout[-6000:]
            stamp.write_text(digest.hexdigest())
            shutil.rmtree(copy)  # the copy and its objects (ccache keeps what a rebuild needs)
        for f in work.glob("process-core*_*"):
            if f.suffix in (".deb", ".changes", ".buildinfo"):
                shutil.copy2(f, out)
    found = list(pathlib.Path(out).glob("process-core_*.deb"))
    assert len(found) == 1, found
    return found[0]


def gdb_threads(exe, core, debug_dir=None, timeout=180):
    """[(tid, [function names gdb unwinds, innermost first])] from gdb's Python API
    (tests/lib/gdb_frames.py), in gdb's thread order: the first is the core's first NT_PRSTATUS,
    the crashing thread. A signal frame is "<signal>". gdb's tail-call frames are left out: gdb
    infers them from DWARF call-site entries (a function that jumped to its callee left no frame
    on the stack), and no stack unwinder can see them."""
    import json
    script = pathlib.Path(__file__).resolve().parent / "gdb_frames.py"
    cmd = ["gdb", "-nx", "-batch"]
    if debug_dir:
        cmd += ["-iex", f"set debug-file-directory {debug_dir}:/usr/lib/debug"]
    cmd += ["-x", str(script), str(exe), str(core)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    line = next(l for l in out.splitlines() if l.startswith("GDB-FRAMES "))
    return [(t["tid"], ["<signal>" if f["type"] == "sigtramp" else (f["name"] or "??")
                        for f in t["frames"] if f["type"] != "tailcall"])
            for t in json.loads(line[len("GDB-FRAMES "):])]


def frame_names(frames):
    """The function names of a record's frames, as gdb_threads() gives gdb's."""
    return ["<signal>" if f["signal_frame"] else (f["symbol"]["name"] if f["symbol"] else "??")
            for f in frames]


def build_analysis_hook(out_dir):
    """tests/programs/analysis_hook.c built as a preloadable library in `out_dir`: attacker code
    in libdw (at dwfl_begin), for the tests of the sandboxed parsers."""
    out = pathlib.Path(out_dir) / "analysis_hook.so"
    src = env_path("PC_SOURCE_DIR") / "tests/programs/analysis_hook.c"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src), "-ldl"],
                   check=True)
    out.chmod(0o755)
    out.parent.chmod(0o755)
    return out


def crash_for_core(store, argv, env=None, cwd=None, timeout=180):
    """Runs argv until it dies of a signal; returns its record and the path of its core,
    decompressed beside the store (for gdb)."""
    proc = subprocess.Popen([str(a) for a in argv], preexec_fn=allow_cores, env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=timeout)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}"
    record = record_for(store, proc.pid, timeout=timeout / 2)
    core_zst = pathlib.Path(record["_path"]).parent / f"{record['id']}.core.zst"
    core = pathlib.Path(store).parent / f"{record['id']}.core"
    core.write_bytes(zstd_decompress(core_zst))
    return record, core
