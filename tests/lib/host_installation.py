"""This machine's own process-core installation (packaging/install.sh), set aside while a test
installs and purges packages of its own, and put back exactly afterwards.

The installed package is repacked with dpkg-repack, its store moved aside (a rename keeps every
inode, owner and time), /etc/process-core and the sysctl drop-in copied, then it is purged.
Afterwards the user and group are put back as they were, lines of the account files at their
places (the store's files are owned by their ids), the repacked package is installed again, and
the store, configuration, kernel settings and exporter are put back. All of it is kept in a
directory of the machine journal, so that a run killed in between is put back by the next one
(machine_journal.undo_leftovers()).
"""
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import machine_journal

SETTINGS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_pipe_limit",
            "/proc/sys/fs/suid_dumpable"]
STORE = "/var/lib/process-core"
ETC = "/etc/process-core"
DROPIN = "/etc/sysctl.d/50-process-core.conf"
EXPORTER = "/usr/sbin/process-core-exporter"
INIT = "/etc/init.d/process-core-exporter"
UNIT = "process-core-exporter.service"


def installed():
    return subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "process-core"],
                          capture_output=True, text=True).stdout == "install ok installed"


def unit_state(verb):
    if not os.path.isdir("/run/systemd/system"):
        return None
    return subprocess.run(["systemctl", verb, UNIT], capture_output=True, text=True).stdout.strip()


def init_script_status():
    """The exit status of the init script's status action (0: running), where systemd is not."""
    if os.path.isdir("/run/systemd/system") or not os.path.exists(INIT):
        return None
    return subprocess.run([INIT, "status"], capture_output=True).returncode


ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")


def account_lines():
    """process-core's lines in the account files, with their positions: put back as they were
    (systemd-sysusers wrote them; useradd would write other fields)."""
    lines = {}
    for path in ACCOUNT_FILES:
        with contextlib.suppress(FileNotFoundError):
            for i, line in enumerate(pathlib.Path(path).read_text().splitlines(keepends=True)):
                if line.startswith("process-core:"):
                    lines[path] = [i, line]
    return lines


def restore_account_lines(saved):
    """Inserts the saved lines where they were, into files that lack them (written in place:
    owner and mode stay)."""
    for path, (index, line) in saved.items():
        with open(path, "r+") as f:
            lines = f.read().splitlines(keepends=True)
            if any(l.startswith("process-core:") for l in lines):
                continue
            lines.insert(min(index, len(lines)), line)
            f.seek(0)
            f.write("".join(lines))
            f.truncate()


def enablement_links():
    """deb-systemd-helper's links for the package, with their mtimes (it makes them anew)."""
    links = {}
    for root, dirs, names in os.walk("/etc/systemd/system"):
        for n in dirs + names:
            path = os.path.join(root, n)
            if "process-core" in path and os.path.islink(path):
                links[path] = os.lstat(path).st_mtime_ns
    return links


@contextlib.contextmanager
def set_aside():
    """The machine without its process-core installation for the duration (nothing to do where
    there is none)."""
    if not installed():
        yield
        return
    # A new directory each time: one a killed run left (its entry kept because putting it back
    # failed) holds an installation still to be put back, and is never reused or removed here.
    machine_journal.JOURNAL.mkdir(mode=0o700, exist_ok=True)
    aside = pathlib.Path(tempfile.mkdtemp(prefix="installation-", dir=machine_journal.JOURNAL))
    subprocess.run(["dpkg-repack", "process-core"], cwd=aside, check=True, capture_output=True)
    meta = {
        "deb": next(aside.glob("process-core_*.deb")).name,
        "accounts": account_lines(),
        "settings": {p: pathlib.Path(p).read_text() for p in SETTINGS},
        "exporter active": unit_state("is-active") == "active",
        "init script active": init_script_status() == 0,
        "links": enablement_links(),
    }
    (aside / "meta.json").write_text(json.dumps(meta))
    entry = machine_journal.add("installation", dir=str(aside))
    if meta["exporter active"]:
        subprocess.run(["systemctl", "stop", UNIT], check=True)
    if meta["init script active"]:
        subprocess.run([INIT, "stop"], check=True)
    if os.path.lexists(STORE):
        os.rename(STORE, aside / "store")
    shutil.copytree(ETC, aside / "etc", symlinks=True)
    shutil.copystat(ETC, aside / "etc")
    if os.path.lexists(DROPIN):
        shutil.copy2(DROPIN, aside / "dropin")
    subprocess.run(["dpkg", "--purge", "process-core"], check=True, capture_output=True)
    (aside / "purged").touch()
    try:
        yield
    finally:
        put_back(aside)
        machine_journal.forget(entry)


def put_back(aside):
    """Puts back what set_aside() moved into `aside`, from wherever it got to."""
    meta = json.loads((aside / "meta.json").read_text())
    machine_journal.finish_dpkg()
    if (aside / "purged").exists() or not installed():
        # Whatever of process-core is installed now is a test's own.
        machine_journal.kill_programs([EXPORTER])
        subprocess.run(["dpkg", "--purge", "process-core"], capture_output=True)
        # The user and group first, with their old ids: the store's files are owned by them.
        restore_account_lines(meta["accounts"])
        subprocess.run(["dpkg", "-i", str(aside / meta["deb"])], check=True, capture_output=True)
        if unit_state("is-active") == "active":
            subprocess.run(["systemctl", "stop", UNIT], check=True)
        if init_script_status() == 0:
            subprocess.run([INIT, "stop"], check=True)
        if (aside / "etc").exists():
            shutil.rmtree(ETC)
            shutil.copytree(aside / "etc", ETC, symlinks=True)
            shutil.copystat(aside / "etc", ETC)
        # corectl install (postinst) rewrote the drop-in: the same text, a new time.
        if (aside / "dropin").exists():
            shutil.copy2(aside / "dropin", DROPIN)
    if (aside / "store").exists():
        shutil.rmtree(STORE, ignore_errors=True)
        os.rename(aside / "store", STORE)
    # deb-systemd-helper made the enablement links anew: give them their old times back.
    for path, mtime in meta["links"].items():
        if os.path.islink(path):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    for path, value in meta["settings"].items():
        pathlib.Path(path).write_text(value)
    if meta["exporter active"]:
        subprocess.run(["systemctl", "start", UNIT], check=True)
    if meta["init script active"]:
        subprocess.run([INIT, "start"], check=True)
    shutil.rmtree(aside)
