"""Shared helpers for process-core's integration and end-to-end tests.

Paths to the built binaries come from the environment CTest sets (see tests/CMakeLists.txt):
PC_HANDLER, PC_EXPORTER, PC_CORECTL, PC_CRASHER, PC_BUILD_DIR, PC_SOURCE_DIR.
"""
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

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
    """One lock for everything that changes machine-wide state (core_pattern, /dev/log)."""
    with open(LOCK_PATH, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
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

    try:
        _on_signals(restore)
        pathlib.Path(CORE_PATTERN).write_text(pattern + "\n")
        if pathlib.Path(CORE_PATTERN).read_text().rstrip("\n") != pattern:
            raise RuntimeError("core_pattern did not take the value written")
        yield previous
    finally:
        restore()
        _off_signals()


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


@contextlib.contextmanager
def sysctl(path, value):
    """Sets a /proc/sys file for the duration, restoring the previous value (machine_lock())."""
    previous = pathlib.Path(path).read_text()
    try:
        pathlib.Path(path).write_text(f"{value}\n")
        yield previous.rstrip("\n")
    finally:
        pathlib.Path(path).write_text(previous)


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
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [l for l in list(self.lines) if predicate(l)]
            if found:
                return found
            time.sleep(0.05)
        return []

    def __exit__(self, *exc):
        if self._sock is not None:
            self.active = False
            self._thread.join(timeout=2)
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/dev/log")


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


def records(store):
    """All records in a store, parsed, with their paths."""
    out = []
    for path in pathlib.Path(store).glob("*/*/*.json"):
        data = json.loads(path.read_text())
        data["_path"] = str(path)
        out.append(data)
    return out


def wait_for_records(store, count, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = records(store)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return records(store)


def record_for(store, pid, timeout=30.0):
    """The record of the crash of `pid`, waited for; fails the test when none comes in time."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in records(store):
            if r["pid"] == pid:
                return r
        time.sleep(0.05)
    raise AssertionError(f"no record for pid {pid} in {store}: {records(store)}")


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


def gcore(argv, settle=0.3):
    """Starts `argv` (which must sleep), dumps it with gcore and kills it. Returns (core bytes, pid)."""
    proc = subprocess.Popen(argv)
    try:
        time.sleep(settle)
        with tempfile.TemporaryDirectory() as tmp:
            prefix = os.path.join(tmp, "core")
            subprocess.run(["gcore", "-o", prefix, str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            data = pathlib.Path(f"{prefix}.{proc.pid}").read_bytes()
        return data, proc.pid
    finally:
        proc.kill()
        proc.wait()


def zstd_decompress(path):
    return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
