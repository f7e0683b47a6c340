"""A Debian 12 machine booted with systemd-nspawn, to test the shipped units under a real systemd.

The tree is built once with debootstrap from the mirror in this machine's apt sources and cached
under /var/tmp/process-core-nspawn/, one tree per package list (a new list builds a new tree and
drops the old ones). A boot never changes it: the container runs on an overlay of it
(--volatile=overlay, the changes in a tmpfs that goes with the container).

    with nspawn.Machine(packages) as m:        # booted to `running`, stopped and cleaned up after
        m.install_deb(deb)                     # the package, with its maintainer scripts
        r = m.run_unit(["cat", "/etc/hostname"], User="process-core")  # a transient unit inside

Commands run through nsenter have the host's full rights (every capability, no seccomp, no
namespaces but the container's): they set things up and read results, and every check of what
a unit may do runs as a unit inside (`run_unit`, `systemctl start`). A crash inside goes to the
host's core_pattern: nothing here crashes anything.
"""
import contextlib
import fcntl
import glob
import hashlib
import os
import pathlib
import re
import shlex
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pctest

CACHE = pathlib.Path("/var/tmp/process-core-nspawn")
SUITE = "bookworm"
# What every tree holds: systemd as PID 1 (with a bus for systemctl and systemd-run) and the
# tools the tests prepare stores with.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "acl")
BOOT_TIMEOUT = 120   # seconds, a bound on a boot that normally takes about one
STOP_TIMEOUT = 60
DEBOOTSTRAP_TIMEOUT = 900


class Unavailable(Exception):
    """This host cannot build or boot the machine (the tests skip, saying why)."""


def _run(argv, timeout=None, check=True, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, **kw)


def mirror():
    """The Debian mirror that serves SUITE in this machine's apt sources (one-line or deb822)."""
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list")),
             *sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    for path in files:
        try:
            text = pathlib.Path(path).read_text()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.lstrip().startswith("#"):
                        key, value = line.split(":", 1)
                        fields[key.strip().lower()] = value.split()
                if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                        and "main" in fields.get("components", []) and fields.get("uris")):
                    return fields["uris"][0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                    return words[1]
    raise Unavailable(f"no '{SUITE} main' source in this machine's apt sources")


def real_package(name):
    """`name`, or for a virtual package (shlibs name some, e.g. libspdlog1.10-fmt9) the package
    that provides it, from this machine's apt cache: debootstrap installs real packages only."""
    text = _run(["apt-cache", "showpkg", name], check=False).stdout
    versions = text.split("Versions:", 1)[-1].split("Reverse Depends:", 1)[0].strip()
    providers = text.split("Reverse Provides:", 1)[-1].split()
    return providers[0] if not versions and providers else name


def deb_depends(deb):
    """The real packages a .deb depends on (first alternative of each, versions dropped)."""
    field = _run(["dpkg-deb", "--field", str(deb), "Depends"]).stdout
    names = []
    for item in field.replace("\n", " ").split(","):
        first = item.split("|")[0].strip()
        if first:
            names.append(real_package(re.split(r"[\s(:]", first, maxsplit=1)[0]))
    return names


def check_host():
    """Raises Unavailable unless this host can build and boot the machine."""
    if not pctest.is_root():
        raise Unavailable("needs root (debootstrap, systemd-nspawn)")
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"needs {tool} (packages debootstrap, systemd-container)")


def tree(packages):
    """The cached tree for `packages`, built first when there is none (serialised by a lock)."""
    check_host()
    wanted = sorted(set(BASE_PACKAGES) | set(packages))
    key = hashlib.sha256(("\n".join([SUITE, *wanted])).encode()).hexdigest()[:16]
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = CACHE / f"{SUITE}-{key}"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".packages").is_file():
            return root
        source = mirror()
        for old in CACHE.glob(f"{SUITE}-*"):  # other package lists, and half-built trees
            shutil.rmtree(old, ignore_errors=True)
        partial = CACHE / f"{SUITE}-{key}.partial"
        try:
            r = _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(wanted),
                      SUITE, str(partial), source], timeout=DEBOOTSTRAP_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise Unavailable(f"debootstrap from {source} did not finish in {DEBOOTSTRAP_TIMEOUT} s")
        if r.returncode != 0:
            log = partial / "debootstrap" / "debootstrap.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            shutil.rmtree(partial, ignore_errors=True)
            raise Unavailable(f"debootstrap from {source} failed: {tail}{r.stderr[-2000:]}")
        (partial / ".packages").write_text("\n".join(wanted) + "\n")
        os.rename(partial, root)
        return root


def fingerprint(top):
    """Every entry of a tree with its type, mode, owner, size and mtime: a boot must change none."""
    out = {}
    for dirpath, dirs, names in os.walk(top):
        for n in dirs + names:
            st = os.lstat(os.path.join(dirpath, n))
            out[os.path.join(dirpath, n)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                             st.st_mtime_ns)
    return out


def _children(pid):
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    kids = []
    for t in tasks:
        with contextlib.suppress(OSError):
            kids += [int(k) for k in pathlib.Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    return kids


def _container_init(nspawn_pid):
    """The host PID of the container's PID 1: the descendant of nspawn that is 1 in its own PID
    namespace."""
    todo = _children(nspawn_pid)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                    return pid
        todo += _children(pid)
    return None


class Machine:
    """A booted container over the cached tree for `packages`; a context manager."""

    def __init__(self, packages=(), binds=()):
        self.root = tree(packages)
        self.binds = list(binds)  # (host path, container path), read-only
        self.name = f"pc-test-{os.getpid()}"
        self.proc = None
        self.pid = None
        self.pidfd = None
        self.log = None
        # What nspawn makes on the host that was not there before: removed again when empty.
        self.made_dirs = [d for d in ("/run/systemd/nspawn/propagate", "/run/systemd/nspawn/locks",
                                      "/run/systemd/nspawn") if not os.path.exists(d)]

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        argv = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                "--volatile=overlay", "--private-network", "--system-call-filter=bpf",
                "--console=passive", f"--machine={self.name}", f"--directory={self.root}"]
        argv += [f"--bind-ro={host}:{inside}" for host, inside in self.binds]
        # Its own session: nothing of the test's terminal or signals reaches it; stopped by PID.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_running()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc):
        self._stop()
        return False

    def _wait_running(self):
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.pid is None:
            if self.proc.poll() is not None:
                raise Unavailable(f"systemd-nspawn exited with {self.proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                raise Unavailable(f"the container did not start: {self.output()}")
            pid = _container_init(self.proc.pid)
            if pid is not None:
                # Held from here on: the stop signals this process and no other with its PID.
                self.pidfd = os.pidfd_open(pid)
                self.pid = pid
            time.sleep(0.05)
        state = ""
        while time.monotonic() < deadline:
            # "offline" until the container's systemd listens on its private socket.
            left = max(1, int(deadline - time.monotonic()))
            state = self.sh(f"timeout {left} systemctl is-system-running --wait", check=False).stdout.strip()
            if state not in ("offline", ""):
                break
            time.sleep(0.1)
        if state != "running":
            failed = self.sh("systemctl --failed --no-legend --plain", check=False).stdout
            raise Unavailable(f"the container's systemd is '{state}', not running; failed units: "
                              f"{failed.strip() or 'none'}; {self.output()}")

    def _stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM asks nspawn for an orderly shutdown of the container's systemd.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.pidfd is not None:
            # nspawn gone but its container's PID 1 left (a SIGTERM before nspawn handled
            # signals): SIGKILL of a PID namespace's init ends every process in it.
            if not select.select([self.pidfd], [], [], 0)[0]:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                if not select.select([self.pidfd], [], [], STOP_TIMEOUT)[0]:
                    raise AssertionError(f"the container's PID 1 ({self.pid}) did not end")
            os.close(self.pidfd)
            self.pidfd = None
        # nspawn leaves its per-machine propagation directory behind where /run is not a tmpfs.
        with contextlib.suppress(OSError):
            os.rmdir(f"/run/systemd/nspawn/propagate/{self.name}")
        for made in self.made_dirs:
            with contextlib.suppress(OSError):
                os.rmdir(made)

    def output(self):
        """What systemd-nspawn and the container's console printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def nsenter(self, argv, check=True, input=None, timeout=120):
        """Runs `argv` inside the container with the host's full rights (setup and inspection)."""
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "--", *argv], input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{shlex.join(argv)} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def sh(self, script, check=True, timeout=120):
        """Runs a shell script inside the container, like nsenter()."""
        return self.nsenter(["sh", "-c", script], check=check, timeout=timeout)

    def run_unit(self, argv, timeout=120, **properties):
        """Runs `argv` as a transient service inside, with unit `properties` (name=value; a list
        value sets the property once per item), and waits for it: the check runs with exactly the
        rights that unit gets. Returns the CompletedProcess (its output is the unit's)."""
        opts = []
        for key, value in properties.items():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                opts += ["-p", f"{key}={v}"]
        return self.nsenter(["systemd-run", "--quiet", "--wait", "--pipe", "--collect",
                             "--service-type=exec", *opts, "--", *argv], check=False,
                            timeout=timeout)

    def show(self, unit, *props):
        """Unit properties as systemd reports them, {name: value}."""
        r = self.nsenter(["systemctl", "show", unit, *[f"--property={p}" for p in props]])
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def journal(self, unit):
        """The journal of `unit` inside, as text."""
        return self.nsenter(["journalctl", "--no-pager", "-o", "cat", "-u", unit], check=False).stdout

    def install_deb(self, deb_inside):
        """Installs the package at `deb_inside` (a path in the container), maintainer scripts
        and all. Refuses unless the kernel settings are read-only inside: postinst runs `corectl
        install`, and core_pattern is the host's."""
        probe = self.sh("test -w /proc/sys/kernel/core_pattern && echo writable || echo read-only")
        if probe.stdout.strip() != "read-only":
            raise AssertionError("the container could write the host's core_pattern")
        return self.nsenter(["env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", deb_inside],
                            timeout=300)
