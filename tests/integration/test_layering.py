"""The include direction between the layers (tests/tools/check_layers.py), on the tree itself and
on small trees that break it one way each."""

import os
import pathlib
import subprocess
import sys

import pytest

SOURCE = pathlib.Path(os.environ["PC_SOURCE_DIR"])
CHECKER = SOURCE / "tests" / "tools" / "check_layers.py"


def run(root):
    return subprocess.run([sys.executable, str(CHECKER), str(root)], capture_output=True,
                          text=True, check=False, timeout=120)


def test_the_tree_keeps_the_direction():
    r = run(SOURCE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def write(root, path, text):
    f = root / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)


@pytest.mark.parametrize("path,include,why", [
    ("common/store/store.cpp", "common/crash/elf_core.hpp", "common/store must not include"),
    ("common/crash/unwind.cpp", "common/store/record.hpp", "common/crash must not include"),
    ("common/base/io.cpp", "common/config/config.hpp", "common/base must not include"),
    ("common/config/config.cpp", "common/store/store.hpp", "common/config must not include"),
    ("common/sandbox/analysis_child.cpp", "common/crash/unwind.hpp",
     "common/sandbox must not include"),
    ("common/record/record.cpp", "common/store/store.hpp", "common/record must not include"),
    ("exporter/metrics.cpp", "common/crash/elf_core.hpp", "exporter must not include"),
    ("exporter/metrics.cpp", "cli/output/term.hpp", "exporter must not include"),
    ("cli/corectl.cpp", "handler/context.hpp", "cli must not include"),
    ("handler/handler.cpp", "exporter/metrics.hpp", "handler must not include"),
    ("common/store/ledger.cpp", "common/config/config.hpp", "common/store must not include"),
    ("handler/handler.cpp", "context.hpp", "is not rooted at a layer's folder"),
])
def test_a_slip_is_caught(tmp_path, path, include, why):
    write(tmp_path, "common/base/io.hpp", "#pragma once\n")
    write(tmp_path, path, f'#include "common/base/io.hpp"\n#include <vector>\n'
                          f'#include "{include}"\n')
    r = run(tmp_path)
    assert r.returncode == 1
    assert f"{path}:3: " in r.stdout and why in r.stdout, r.stdout


def test_what_the_layers_allow_passes(tmp_path):
    write(tmp_path, "common/store/retention.cpp", '#include "common/config/config.hpp"\n')
    write(tmp_path, "common/store/record.cpp", '#include "common/record/record.hpp"\n')
    write(tmp_path, "common/crash/crash_json.cpp", '#include "common/record/record.hpp"\n')
    write(tmp_path, "exporter/metrics.cpp", '#include "common/store/store.hpp"\n'
                                            '#include "process_core_version.hpp"\n')
    write(tmp_path, "handler/analyze.cpp", '#include "common/sandbox/analysis_child.hpp"\n'
                                           '#include "common/crash/unwind.hpp"\n')
    write(tmp_path, "cli/verbs/debug.cpp", '#include "cli/output/term.hpp"\n'
                                           '#include "common/crash/elf_core.hpp"\n')
    r = run(tmp_path)
    assert r.returncode == 0, r.stdout


def test_a_folder_in_no_layer_is_reported(tmp_path):
    write(tmp_path, "common/newlayer/thing.cpp", '#include "common/base/io.hpp"\n')
    r = run(tmp_path)
    assert r.returncode == 1 and "in no layer" in r.stdout, r.stdout
