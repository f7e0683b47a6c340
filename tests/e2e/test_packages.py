"""The package behind every mapped file, through the real kernel: libc named through its
merged-/usr alias, from the index kept in the store once the first crash built it; a crash in a
root of its own (a chroot in a private mount namespace) with its own dpkg database, named from
that database and not the host's; a Python frame's file owned by a `*.dist-info` distribution;
a hostile database (a huge list, a link out of the root, binary garbage) that changes nothing
and stays in its budget; and a Debian package built here with dpkg-deb (a library and a program
that crashes in it), installed with dpkg -i at 1.0-1, crashed, upgraded to a rebuilt 2.0-1 (a
new build-id), crashed again: both records name package and version, they are one group, and
corectl info says what changed, with dpkg.log's line. The package is purged afterwards.

Needs root, a writable core_pattern, dpkg-deb and a C compiler (else skipped, exit code 77).
"""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

import machine_journal
import pctest

if not pctest.can_set_core_pattern():
    pytest.skip("needs root and a writable core_pattern", allow_module_level=True)
if not shutil.which("dpkg-deb") or not shutil.which("cc"):
    pytest.skip("needs dpkg-deb and cc", allow_module_level=True)

PACKAGE = "pc-test-crashy"
LIB = "/usr/lib/libpccrashy.so.1"
PROGRAM = "/usr/bin/pc-test-crashy"


@pytest.fixture(scope="module")
def rig():
    with pctest.kernel_rig("pcp-", rate_limit_burst=0) as rig:
        yield rig


def corectl(rig, *args):
    out = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(rig.work / "c"),
                          *args], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, NO_COLOR="1"))
    assert out.returncode == 0, out.stderr
    return out.stdout


def crash(argv):
    proc = subprocess.Popen(argv, preexec_fn=pctest.allow_cores, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    assert proc.returncode < 0, f"{argv} exited with {proc.returncode}"
    return proc.pid


def owner_of(record, path):
    for o in record.get("packages", {}).get("owners", []):
        if o["path"] == path:
            return o
    return None


def build_deb(work, version, salt):
    """pc-test-crashy_<version>.deb: the library (its code differs with `salt`, so does its
    build-id) and a program that calls it with a null pointer."""
    root = work / f"pkg-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (work / "crashy.c").write_text(
        "int crashy_run(int *p, int v) { return *p + v + %d; }\n" % salt)
    (work / "main.c").write_text(
        "int crashy_run(int *p, int v);\n"
        "int main(int argc, char **argv) { (void)argv; return crashy_run(0, argc); }\n")
    subprocess.run(["cc", "-O0", "-g", "-fno-omit-frame-pointer", "-shared", "-fPIC",
                    "-Wl,--build-id", "-Wl,-soname,libpccrashy.so.1", "-o",
                    str(root / LIB.lstrip("/")), str(work / "crashy.c")], check=True)
    subprocess.run(["cc", "-O0", "-g", "-fno-omit-frame-pointer", "-Wl,--build-id", "-o",
                    str(root / PROGRAM.lstrip("/")), str(work / "main.c"),
                    str(root / LIB.lstrip("/"))], check=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: "
        f"{subprocess.check_output(['dpkg', '--print-architecture'], text=True).strip()}\n"
        "Maintainer: process-core tests <root@localhost>\n"
        "Description: a library and a program that crashes in it\n")
    deb = work / f"{PACKAGE}_{version}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   stdout=subprocess.DEVNULL)
    return deb


def dpkg_lists(package, path):
    """Whether the host's dpkg lists `path` as `package`'s."""
    out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True)
    return path in out.stdout.splitlines()


def index_files(rig):
    d = rig.store / ".dpkg-index"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_libc_is_named_through_its_merged_usr_alias(rig):
    host_version = subprocess.check_output(["dpkg-query", "-W", "-f", "${Version}", "libc6"],
                                           text=True)
    ways = []
    for _ in range(2):
        pid = crash([str(pctest.env_path("PC_CRASHER")), "segv"])
        r = pctest.record_for(rig.store, pid)
        libc = [m["path"] for m in r["mappings"] if m["path"].endswith("/libc.so.6")]
        assert libc, r["mappings"]
        # The map names the file where it is, under /usr; dpkg lists it under /lib.
        assert libc[0] == "/usr/lib/x86_64-linux-gnu/libc.so.6", libc
        if os.path.islink("/lib"):
            assert dpkg_lists("libc6", "/lib/x86_64-linux-gnu/libc.so.6")
            assert not dpkg_lists("libc6", libc[0])
        owner = owner_of(r, libc[0])
        assert owner, r.get("packages")
        assert owner["package"] == "libc6" and owner["version"] == host_version
        assert owner["source"] == "dpkg" and owner["arch"] == "amd64"
        assert r["packages"]["complete"], r["packages"]
        assert r["packages"]["dpkg_state"].startswith("status ")
        ways.append(r["packages"]["dpkg_index"])
    # The first crash of this store built the host's index (or found it), the second used it.
    assert ways[0] in ("built", "used") and ways[1] == "used", ways
    d = rig.store / ".dpkg-index"
    st = d.lstat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == rig.store.stat().st_uid  # the store user's own
    assert all(n.endswith(".idx") for n in index_files(rig)), index_files(rig)


def build_root(work, packages, extra=None):
    """A minimal Debian root in `work`: merged /usr (lib -> usr/lib, lib64 -> usr/lib64), the
    host's libc and loader, a program that writes through a null pointer (/usr/bin/pc-app), and
    a dpkg database of `packages` ({name: (version, [listed paths])}). `extra(root)` adds to it."""
    root = work / "root"
    for d in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "var/lib/dpkg/info"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.symlink("usr/lib", root / "lib")
    os.symlink("usr/lib64", root / "lib64")
    os.symlink("usr/bin", root / "bin")
    (work / "app.c").write_text("int main(void) { *(volatile int *)0 = 1; return 0; }\n")
    subprocess.run(["cc", "-O0", "-o", str(root / "usr/bin/pc-app"), str(work / "app.c")],
                   check=True)
    shutil.copy2("/usr/lib/x86_64-linux-gnu/libc.so.6", root / "usr/lib/x86_64-linux-gnu")
    shutil.copy2(os.path.realpath("/lib64/ld-linux-x86-64.so.2"),
                 root / "usr/lib64/ld-linux-x86-64.so.2")
    status = []
    for name, (version, paths) in packages.items():
        status.append(f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n"
                      f"Version: {version}\n")
        list_name = f"{name}:amd64" if name == "libc6" else name
        (root / f"var/lib/dpkg/info/{list_name}.list").write_text("".join(p + "\n" for p in paths))
    (root / "var/lib/dpkg/status").write_text("\n".join(status) + "\n")
    if extra:
        extra(root)
    return root


def crash_in_root(rig, root):
    """Runs /usr/bin/pc-app chrooted into `root` in a private mount namespace; its record."""
    # unshare and chroot exec what follows them: the crashed process is the one started here.
    pid = crash(["unshare", "--mount", "--propagation", "private", "chroot", str(root),
                 "/usr/bin/pc-app"])
    return pctest.record_for(rig.store, pid)


LIBC_ROOT = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def test_a_container_root_is_named_from_its_own_database(rig, tmp_path):
    host_version = subprocess.check_output(["dpkg-query", "-W", "-f", "${Version}", "libc6"],
                                           text=True)
    root = build_root(tmp_path, {
        "libc6": ("2.99-container1", ["/.", "/lib", "/lib/x86_64-linux-gnu",
                                      "/lib/x86_64-linux-gnu/libc.so.6",
                                      "/lib64/ld-linux-x86-64.so.2"]),
        "pc-container-app": ("1.2-3", ["/usr/bin/pc-app"]),
    })
    before = index_files(rig)
    r = crash_in_root(rig, root)
    # The map names the files as the process saw them, inside its root.
    assert "/usr/bin/pc-app" in [m["path"] for m in r["mappings"]], r["mappings"]
    assert [m["path"] for m in r["mappings"] if m["path"].endswith("/libc.so.6")] == [LIBC_ROOT]
    libc = owner_of(r, LIBC_ROOT)
    assert libc and libc["package"] == "libc6", r["packages"]
    assert libc["version"] == "2.99-container1" != host_version
    app = owner_of(r, "/usr/bin/pc-app")
    assert app and (app["package"], app["version"]) == ("pc-container-app", "1.2-3")
    loader = owner_of(r, "/usr/lib64/ld-linux-x86-64.so.2")
    assert loader and loader["version"] == "2.99-container1", r["packages"]
    assert r["packages"]["complete"] and r["packages"]["dpkg_index"] == "built", r["packages"]
    # An index of its own beside the host's, which the host's next crash still uses.
    assert len(index_files(rig)) == len(before) + 1
    again = crash_in_root(rig, root)
    assert again["packages"]["dpkg_index"] == "used"
    assert owner_of(again, LIBC_ROOT)["version"] == "2.99-container1"
    host = pctest.record_for(rig.store, crash([str(pctest.env_path("PC_CRASHER")), "segv"]))
    assert owner_of(host, LIBC_ROOT)["version"] == host_version
    assert host["packages"]["dpkg_index"] == "used", host["packages"]


def test_a_hostile_database_changes_nothing_and_stays_in_its_budget(rig, tmp_path):
    host_list = "/var/lib/dpkg/info/libc6:amd64.list"

    def hostile(root):
        info = root / "var/lib/dpkg/info"
        # Over the 8 MiB a list may have: skipped whole, though it names libc.
        with open(info / "huge.list", "w") as f:
            f.write(("/usr/share/doc/x/" + "y" * 100 + "\n") * ((9 << 20) // 118 + 1))
            f.write("/lib/x86_64-linux-gnu/libc.so.6\n")
        # Links out of the root to the host's own list: never followed.
        os.symlink(host_list, info / "libc6:amd64.list")
        os.symlink("/proc/1/root" + host_list, info / "escape.list")
        os.symlink("../../../../../../../../../.." + host_list, info / "dotdot.list")
        # Binary garbage, in a list and in the status file before a paragraph.
        garbage = bytes((i * 7919) & 0xFF for i in range(1 << 16))
        (info / "garbage.list").write_bytes(garbage)
        status = root / "var/lib/dpkg/status"
        status.write_bytes(garbage + b"\n\n" + status.read_bytes())

    root = build_root(tmp_path, {"pc-container-app": ("1.2-3", ["/usr/bin/pc-app"])}, hostile)
    assert os.path.getsize(root / "var/lib/dpkg/info/huge.list") > 8 << 20
    r = crash_in_root(rig, root)
    p = r["packages"]
    assert owner_of(r, LIBC_ROOT) is None, p  # neither the host's libc6 nor the huge list's
    assert LIBC_ROOT in p["unowned"]
    assert owner_of(r, "/usr/bin/pc-app")["version"] == "1.2-3"
    assert p["complete"] and p["elapsed_ms"] <= 250, p
    # What cannot change between two reads of this state is indexed as read.
    assert p["dpkg_index"] == "built", p
    assert crash_in_root(rig, root)["packages"]["unowned"] == p["unowned"]


def test_a_python_frame_is_owned_by_its_distribution(rig):
    python = pathlib.Path("/usr/bin/python3.11")
    if not python.exists():
        pytest.skip(f"{python} is not installed")
    # The handler reads as the store user: the distribution must be readable by others, as
    # one installed for a service is (pytest's own directories are not).
    top = pathlib.Path(tempfile.mkdtemp(dir=rig.work))
    top.chmod(0o755)
    site = top / "venv/lib/python3.11/site-packages"
    (site / "pcfake").mkdir(parents=True)
    (site / "pcfake/__init__.py").write_text("")
    (site / "pcfake/boom.py").write_text(
        "import ctypes\n\n\ndef boom():\n    return ctypes.string_at(0)\n")
    (site / "pcfake-1.2.3.dist-info").mkdir()
    (site / "pcfake-1.2.3.dist-info/METADATA").write_text("Name: pcfake\nVersion: 1.2.3\n")
    (site / "pcfake-1.2.3.dist-info/RECORD").write_text(
        "pcfake/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n"
        "pcfake/boom.py,,\npcfake-1.2.3.dist-info/METADATA,,\npcfake-1.2.3.dist-info/RECORD,,\n")
    script = top / "service.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(site)!r})\n"
                      "import pcfake.boom\npcfake.boom.boom()\n")
    proc = subprocess.Popen([str(python), str(script)], preexec_fn=pctest.allow_cores,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(timeout=60)
    assert proc.returncode == -11, proc.returncode
    r = pctest.record_for(rig.store, proc.pid)
    boom = str(site / "pcfake/boom.py")
    files = [f["file"] for t in r.get("python", {}).get("threads", []) for f in t["frames"]]
    assert boom in files, r.get("python")
    owner = owner_of(r, boom)
    assert owner, r["packages"]
    assert (owner["package"], owner["version"], owner["source"]) == ("pcfake", "1.2.3", "python")
    # The script itself belongs to no distribution; ctypes to the Debian package of Python's.
    assert str(script) in r["packages"]["unowned"]
    ctypes_file = next(f for f in files if f.endswith("/ctypes/__init__.py"))
    ctypes_owner = owner_of(r, ctypes_file)
    assert ctypes_owner and ctypes_owner["source"] == "dpkg", r["packages"]


def test_upgrade_between_two_crashes_is_what_changed(rig, tmp_path):
    if subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode == 0:
        pytest.skip(f"{PACKAGE} is installed on this machine")
    debs = [build_deb(tmp_path / "v1", "1.0-1", 1), build_deb(tmp_path / "v2", "2.0-1", 2),
            build_deb(tmp_path / "v3", "3.0-1", 3)]
    installing = machine_journal.add("package", name=PACKAGE)  # purged should the run be killed
    try:
        records = []
        for deb in debs:
            subprocess.run(["dpkg", "-i", str(deb)], check=True, stdout=subprocess.DEVNULL)
            records.append(pctest.record_for(rig.store, crash([PROGRAM])))
        first, second, third = records
        for r, version in ((first, "1.0-1"), (second, "2.0-1"), (third, "3.0-1")):
            owner = owner_of(r, LIB)
            assert owner and owner["package"] == PACKAGE and owner["version"] == version, \
                r.get("packages")
            assert owner_of(r, PROGRAM)["version"] == version
        assert first["crash"]["signature"] == second["crash"]["signature"]
        # dpkg -i changed the database's state: the index kept before it was not believed.
        for r in records:
            assert r["packages"]["dpkg_index"] == "built", r["packages"]

        text = corectl(rig, "info", second["id"])
        assert f"({PACKAGE} 2.0-1)" in text
        assert f"previous crash of this group ({first['id']}" in text, text
        assert f"{PACKAGE} 1.0-1 → 2.0-1" in text, text
        assert f"{LIB} build-id " in text, text
        assert f"upgrade {PACKAGE}:" in text, text
        j = json.loads(corectl(rig, "info", "--json", second["id"]))
        changes = j["changes"]["previous"]["changes"]
        assert {"kind": "package", "subject": PACKAGE, "from": "1.0-1", "to": "2.0-1"} in changes
        assert any(c["kind"] == "build_id" and c["subject"] == LIB for c in changes)
        assert "first" not in j["changes"]  # the previous crash is the first
        # The third against the previous (2.0-1) and, separately, against the group's first.
        j = json.loads(corectl(rig, "info", "--json", third["id"]))
        assert j["changes"]["previous"]["id"] == second["id"]
        assert {"kind": "package", "subject": PACKAGE, "from": "2.0-1", "to": "3.0-1"} in \
            j["changes"]["previous"]["changes"]
        assert j["changes"]["first"]["id"] == first["id"]
        assert {"kind": "package", "subject": PACKAGE, "from": "1.0-1", "to": "3.0-1"} in \
            j["changes"]["first"]["changes"]
        text = corectl(rig, "info", third["id"])
        assert f"{PACKAGE} 2.0-1 → 3.0-1" in text and f"{PACKAGE} 1.0-1 → 3.0-1" in text, text
        # The group's first crash has nothing before it.
        assert "changes" not in json.loads(corectl(rig, "info", "--json", first["id"]))
    finally:
        subprocess.run(["dpkg", "--purge", PACKAGE], stdout=subprocess.DEVNULL)
        machine_journal.forget(installing)
    assert subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode != 0
    assert not os.path.exists(LIB) and not os.path.exists(PROGRAM)
