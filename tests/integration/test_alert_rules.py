"""The shipped alert rules pass `promtool check rules` and their unit tests (`promtool test rules`)."""
import os
import pathlib
import shutil
import subprocess

import pytest

import pctest

RULES_DIR = pctest.env_path("PC_SOURCE_DIR") / "packaging" / "prometheus"


def promtool():
    path = os.environ.get("PC_PROMTOOL", "")
    if not path or not os.access(path, os.X_OK):
        path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def test_check_rules():
    out = subprocess.run([promtool(), "check", "rules", str(RULES_DIR / "process-core.rules.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rule_unit_tests():
    out = subprocess.run([promtool(), "test", "rules", "process-core.rules.test.yml"],
                         cwd=RULES_DIR, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    for case in ["first crash of a new series", "repeated crashes", "no crashes", "exporter restart",
                 "other signals do not alert"]:
        assert f"name: {case}" in (RULES_DIR / "process-core.rules.test.yml").read_text()
