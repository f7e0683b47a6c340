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
                 "other signals do not alert", "exporter down", "unreadable records",
                 "folded executables", "kernel-skipped dumps", "store near max_use"]:
        assert f"name: {case}" in (RULES_DIR / "process-core.rules.test.yml").read_text()


def test_every_alert_links_to_its_runbook_section():
    """runbook_url of every rule points at a heading of docs/runbook.md (GitHub-style anchors)."""
    import re
    import yaml
    rules = yaml.safe_load((RULES_DIR / "process-core.rules.yml").read_text())
    runbook = (pctest.env_path("PC_SOURCE_DIR") / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {"ProcessCrashed", "ProcessCoreExporterDown",
                                             "ProcessCoreRecordsUnreadable",
                                             "ProcessCoreExecutablesFolded",
                                             "ProcessCoreKernelDumpsLost",
                                             "ProcessCoreStoreNearMaxUse"}
    for a in alerts:
        url = a["annotations"]["runbook_url"]
        assert url.startswith("file:///usr/share/doc/process-core/runbook.md#"), url
        assert url.split("#", 1)[1] in anchors, (a["alert"], url)
