import os
import pathlib
import subprocess

import pytest

import pctest


@pytest.fixture(scope="session")
def handler():
    return pctest.env_path("PC_HANDLER")


@pytest.fixture(scope="session")
def crasher():
    return pctest.env_path("PC_CRASHER")


@pytest.fixture(scope="session")
def real_core(crasher):
    """A real core of pc_crasher (gcore), with the pid it had."""
    data, pid = pctest.gcore([str(crasher), "sleep", "30", "--heap", "4"])
    return data, pid


@pytest.fixture
def store(tmp_path):
    return pctest.make_store(tmp_path)


@pytest.fixture
def run_handler(handler, tmp_path, store):
    """Runs the real handler with kernel-style argv; returns (CompletedProcess, records)."""

    def run(args, stdin=b"", config=None, store_dir=None, **config_keys):
        target = store_dir or store
        conf = config or pctest.write_config(tmp_path / "pc.conf", target, **config_keys)
        proc = subprocess.run([str(handler), "--config", str(conf), *args], input=stdin,
                              capture_output=True, timeout=60)
        return proc, pctest.records(target)

    return run


def all_files(root):
    """Everything in a store but its usage estimate (.usage), which every capture keeps."""
    return sorted(str(p.relative_to(root)) for p in pathlib.Path(root).rglob("*")
                  if p.name != ".usage")
