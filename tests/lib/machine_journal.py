"""What the suite changed on this machine and has not put back yet, kept on disk, so that a run
killed outright (SIGKILL, a lost session, a power cut: no `finally`, no signal handler runs) is
undone by the next one.

Every change to machine-wide state is made under pctest.machine_lock(), and each helper that
makes one writes an entry here first — a kernel setting's previous value, a socket it binds, a
package it installs, an installation it sets aside — and removes it once it put things back.
The lock is released by the kernel when its holder dies, so whoever takes it next and finds
entries knows their writers are gone: machine_lock() undoes them, newest first (an inner change
before the outer one it was made under), and says so on stderr.

Entries are JSON files in JOURNAL, named so that they sort by the time they were made; the
directory exists only while it holds one (the machine state check compares /var/lib).
"""
import contextlib
import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

JOURNAL = pathlib.Path("/var/lib/process-core-tests")
_sequence = itertools.count()


def _usable():
    return os.geteuid() == 0


def add(kind, **fields):
    """Writes an entry (atomically); returns its path, for forget(). None where not root."""
    if not _usable():
        return None
    JOURNAL.mkdir(mode=0o700, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence):04d}.json"
    tmp = JOURNAL / f".{name}.tmp"
    tmp.write_text(json.dumps({"kind": kind, **fields}))
    os.replace(tmp, JOURNAL / name)
    return JOURNAL / name


def forget(entry):
    """Removes an entry once its change was put back (and the directory once it is empty)."""
    if entry is None:
        return
    entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: another entry, or an aside directory
        JOURNAL.rmdir()


@contextlib.contextmanager
def kept_values(paths):
    """For the duration, the journal holds the current contents of `paths` (/proc/sys files)."""
    entry = add("values", values={str(p): pathlib.Path(p).read_text() for p in paths})
    try:
        yield
    finally:
        forget(entry)


def dpkg_interrupted():
    """dpkg's own test: status changes logged but not folded in (it then refuses to run apt)."""
    updates = pathlib.Path("/var/lib/dpkg/updates")
    return updates.is_dir() and any(updates.iterdir())


def finish_dpkg():
    """Completes a dpkg run that was killed, as apt asks ("dpkg --configure -a")."""
    if dpkg_interrupted() or subprocess.run(["dpkg", "--audit"], capture_output=True,
                                            text=True).stdout.strip():
        subprocess.run(["dpkg", "--force-confold", "--configure", "-a"], capture_output=True)


def kill_programs(exes):
    """SIGKILLs every process running one of `exes` and waits for it to be gone."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe in exes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.02)


def _undo(entry):
    kind = entry["kind"]
    if kind == "values":
        for path, value in entry["values"].items():
            pathlib.Path(path).write_text(value)
    elif kind == "socket":
        path = entry["path"]
        with contextlib.suppress(FileNotFoundError):
            if not os.path.isdir(path):  # a socket or a symlink to one; never a directory
                os.unlink(path)
    elif kind == "package":
        finish_dpkg()
        kill_programs(entry.get("programs", []))
        subprocess.run(["dpkg", "--purge", entry["name"]], capture_output=True)
    elif kind == "installation":
        import host_installation  # only needed where a package test was killed
        host_installation.put_back(pathlib.Path(entry["dir"]))
    else:
        raise ValueError(f"unknown journal entry kind {kind!r}")


def undo_leftovers():
    """Undoes what a killed run left, newest first. Call with the machine lock held."""
    if not _usable() or not JOURNAL.is_dir():
        return
    for path in sorted(JOURNAL.glob("*.json"), reverse=True):
        try:
            entry = json.loads(path.read_text())
            print(f"machine_journal: a killed test run left {entry['kind']} "
                  f"({path.name}): putting it back", file=sys.stderr)
            _undo(entry)
        except Exception as e:  # one bad entry must not keep the others from being undone
            # Kept: what it records is still changed, the next run tries again, and the machine
            # state check (which compares /var/lib) fails this one rather than forget it.
            print(f"machine_journal: could not undo {path.name}, kept for the next run: {e}",
                  file=sys.stderr)
            continue
        forget(path)
