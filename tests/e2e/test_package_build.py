"""What the package's end-to-end tests share, built while other tests run: the Debian package of
the source tree (pctest.build_deb, kept under the build directory while the sources are the
same) and the systemd-nspawn machine's tree for its dependencies (nspawn.tree, kept under
/var/tmp). e2e_package and e2e_systemd are serial tests (nothing runs beside them), so building
these inside them would leave the machine's other core idle for the length of a full build and a
debootstrap; as the CTest fixture they require, the work overlaps the parallel tests."""
import pytest

import nspawn
import pctest

if not pctest.is_root():
    pytest.skip("needs root (dpkg-buildpackage, debootstrap)", allow_module_level=True)


def test_the_package_builds(tmp_path):
    deb = pctest.build_deb(tmp_path)
    assert deb.name.startswith("process-core_") and deb.stat().st_size > 0
    # Its debug symbols go into a -dbgsym package beside it.
    assert list(tmp_path.glob("process-core-dbgsym_*.deb"))


def test_the_machine_tree_builds(tmp_path):
    try:
        nspawn.check_host()
        root = nspawn.tree(nspawn.deb_depends(pctest.build_deb(tmp_path)))
    except nspawn.Unavailable as e:
        pytest.skip(str(e))
    assert (root / "usr/lib/systemd/systemd").exists()
