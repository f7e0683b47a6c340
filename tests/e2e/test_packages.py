"""The package behind every mapped file, through the real kernel: libc named through its
merged-/usr alias, and a Debian package built here with dpkg-deb (a library and a program that
crashes in it), installed with dpkg -i at 1.0-1, crashed, upgraded to a rebuilt 2.0-1 (a new
build-id), crashed again: both records name package and version, they are one group, and
corectl info says what changed, with dpkg.log's line. The package is purged afterwards.

Needs root, a writable core_pattern, dpkg-deb and a C compiler (else skipped, exit code 77).
"""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

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


def test_libc_is_named_through_its_merged_usr_alias(rig):
    pid = crash([str(pctest.env_path("PC_CRASHER")), "segv"])
    r = pctest.record_for(rig.store, pid)
    libc = [m["path"] for m in r["mappings"] if m["path"].endswith("/libc.so.6")]
    assert libc, r["mappings"]
    owner = owner_of(r, libc[0])
    assert owner, r.get("packages")
    version = subprocess.check_output(["dpkg-query", "-W", "-f", "${Version}", "libc6"],
                                      text=True)
    assert owner["package"] == "libc6" and owner["version"] == version
    assert owner["source"] == "dpkg"
    assert r["packages"]["complete"], r["packages"]
    assert r["packages"]["dpkg_state"].startswith("status ")


def test_upgrade_between_two_crashes_is_what_changed(rig, tmp_path):
    if subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode == 0:
        pytest.skip(f"{PACKAGE} is installed on this machine")
    debs = [build_deb(tmp_path / "v1", "1.0-1", 1), build_deb(tmp_path / "v2", "2.0-1", 2)]
    try:
        records = []
        for deb in debs:
            subprocess.run(["dpkg", "-i", str(deb)], check=True, stdout=subprocess.DEVNULL)
            records.append(pctest.record_for(rig.store, crash([PROGRAM])))
        first, second = records
        for r, version in ((first, "1.0-1"), (second, "2.0-1")):
            owner = owner_of(r, LIB)
            assert owner and owner["package"] == PACKAGE and owner["version"] == version, \
                r.get("packages")
            assert owner_of(r, PROGRAM)["version"] == version
        assert first["crash"]["signature"] == second["crash"]["signature"]

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
        # The group's first crash has nothing before it.
        assert "changes" not in json.loads(corectl(rig, "info", "--json", first["id"]))
    finally:
        subprocess.run(["dpkg", "--purge", PACKAGE], stdout=subprocess.DEVNULL)
    assert subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True).returncode != 0
    assert not os.path.exists(LIB) and not os.path.exists(PROGRAM)
