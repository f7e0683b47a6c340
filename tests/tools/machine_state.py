#!/usr/bin/python3
"""The machine the suite runs on, before and after: `snapshot FILE` records it, `check FILE`
fails (exit 1, with a line per difference) when the suite left it otherwise.

CTest runs `snapshot` as the setup of a fixture every test requires and `check` as its cleanup,
so the check runs after the last test whatever the order or parallelism. What is compared:
- special files: /dev/null and its kin must still be the same character devices, and no new
  regular file may appear in /dev (zsh's `compinit -d /dev/null` once `mv`ed its dump over
  /dev/null, which then kept whatever was written to it);
- kernel settings the suite changes: core_pattern, core_pipe_limit, suid_dumpable, pipe limits;
- the logging sockets (/dev/log, the journal's), which tests stand in for;
- mount points (a fixture that leaves a mount behind);
- processes the suite started and left running: every test's environment carries
  PC_BUILD_DIR, and a daemon a test started inherits it;
- the installed package and its state: dpkg's package set, /etc/process-core, the sysctl drop-in,
  the users and groups, the store's files (names, types, modes, owners, sizes, mtimes).
"""
import hashlib
import json
import os
import stat
import sys

SPECIAL_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                 "/dev/tty", "/dev/ptmx")
SYSCTLS = ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_pipe_limit",
           "/proc/sys/kernel/core_uses_pid", "/proc/sys/fs/suid_dumpable",
           "/proc/sys/fs/pipe-max-size", "/proc/sys/kernel/kptr_restrict")
SOCKETS = ("/dev/log", "/run/systemd/journal/socket", "/run/systemd/journal/dev-log")
HASHED_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
                "/etc/sysctl.d/50-process-core.conf")
TREES = ("/etc/process-core", "/var/lib/process-core")
# Bounds so that a huge store cannot make the check itself the slow test.
MAX_TREE_ENTRIES = 200_000


def file_kind(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFCHR:
        return f"char {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} {stat.S_IMODE(st.st_mode):o}"
    if kind == stat.S_IFSOCK:
        return "socket"
    if kind == stat.S_IFREG:
        return f"regular file of {st.st_size} bytes"
    return stat.filemode(st.st_mode)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "backslashreplace").strip()
    except OSError as e:
        return f"unreadable: {e.strerror}"


def sha256_of(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return "absent"
    except OSError as e:
        return f"unreadable: {e.strerror}"


def dev_regular_files():
    names = []
    for entry in os.scandir("/dev"):
        if entry.is_file(follow_symlinks=False):
            names.append(entry.name)
    return sorted(names)


def mount_points():
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.add(fields[4])
    return sorted(points)


def dpkg_packages():
    status = "/var/lib/dpkg/status"
    packages = {}
    name = version = state = None

    def add(name, version, state):
        # A purged package may linger in the status file as "not-installed": that is absent.
        if name and state and not state.endswith("not-installed"):
            packages[name] = f"{version} {state}"

    try:
        with open(status, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Package: "):
                    name = line[9:].strip()
                elif line.startswith("Version: "):
                    version = line[9:].strip()
                elif line.startswith("Status: "):
                    state = line[8:].strip()
                elif line == "\n":
                    add(name, version, state)
                    name = version = state = None
        add(name, version, state)
    except OSError:
        pass
    return packages


def tree(root):
    entries = {}
    if not os.path.isdir(root):
        return entries
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            entries[path] = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {size} {st.st_mtime_ns}"
            if len(entries) >= MAX_TREE_ENTRIES:
                return entries
    return entries


def suite_processes(marker):
    """Live processes whose environment carries the suite's marker, except this one and its
    ancestors (the check runs under ctest, which does not carry it)."""
    me = os.getpid()
    found = []
    needle = marker.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read(1 << 20).split(b"\0")
            if needle not in environ:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read(300).replace(b"\0", b" ").decode("utf-8", "backslashreplace")
        except OSError:
            continue
        found.append(f"{pid} {cmdline.strip()}")
    return found


def take():
    return {
        "special_files": {p: file_kind(p) for p in SPECIAL_FILES},
        "dev_regular_files": dev_regular_files(),
        "sysctls": {p: read_text(p) for p in SYSCTLS},
        "sockets": {p: file_kind(p) for p in SOCKETS},
        "mounts": mount_points(),
        "files": {p: sha256_of(p) for p in HASHED_FILES},
        "packages": dpkg_packages(),
        "trees": {root: tree(root) for root in TREES},
    }


def differences(before, after):
    out = []
    for section in ("special_files", "sysctls", "sockets", "files", "packages", "trees"):
        b, a = before[section], after[section]
        for key in sorted(set(b) | set(a)):
            if section == "trees":
                bt, at = b.get(key, {}), a.get(key, {})
                changed = sorted(p for p in set(bt) | set(at) if bt.get(p) != at.get(p))
                for path in changed[:20]:
                    out.append(f"{path}: {bt.get(path, 'absent')} -> {at.get(path, 'absent')}")
                if len(changed) > 20:
                    out.append(f"{key}: {len(changed) - 20} more entries changed")
            elif b.get(key) != a.get(key):
                out.append(f"{section} {key}: {b.get(key, 'absent')!r} -> {a.get(key, 'absent')!r}")
    for section in ("dev_regular_files", "mounts"):
        new = sorted(set(after[section]) - set(before[section]))
        gone = sorted(set(before[section]) - set(after[section]))
        out += [f"{section}: new {x}" for x in new] + [f"{section}: gone {x}" for x in gone]
    return out


def main(argv):
    if len(argv) != 3 or argv[1] not in ("snapshot", "check"):
        print("usage: machine_state.py snapshot|check FILE", file=sys.stderr)
        return 2
    path = argv[2]
    if argv[1] == "snapshot":
        with open(path, "w") as f:
            json.dump(take(), f)
        return 0
    with open(path) as f:
        before = json.load(f)
    problems = differences(before, take())
    marker = os.environ.get("PC_SUITE_MARKER")
    if marker:
        problems += [f"left running: {p}" for p in suite_processes(marker)]
    for line in problems:
        print(f"machine state changed by the suite: {line}")
    if not problems:
        print("machine state: as the suite found it")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
