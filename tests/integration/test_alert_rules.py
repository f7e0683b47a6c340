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


def test_dashboard_shows_the_first_crash_of_a_new_series(tmp_path):
    """The dashboard's crash panels, evaluated by promtool with Grafana's variables filled in:
    a series that appears at 1 (the first crash of a new executable) is shown, where increase()
    shows nothing; an exporter restart after an outage does not look like new crashes."""
    import json
    import yaml
    dashboard = json.loads((RULES_DIR.parent / "grafana" / "process-core.json").read_text())
    exprs = {p["title"]: p["targets"][0]["expr"] for p in dashboard["panels"]
             if p.get("targets") and "processcore_coredumps_total" in p["targets"][0]["expr"]}
    assert len(exprs) >= 5, exprs
    fill = {"${__interval_ms} / 1000": "60", "$__interval": "1m", "$__range_s": "3600",
            "$__range": "1h", "$hostname": ".*", "$executable": ".*", "$signal": ".*"}
    rules = []
    for i, expr in enumerate(exprs.values()):
        for k, v in fill.items():
            expr = expr.replace(k, v)
        rules.append({"record": f"panel_{i}", "expr": expr})
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "p", "rules": rules}]}))
    labels = 'hostname="web-1",executable="/usr/bin/ruby",signal="SEGV",core_present="true"'
    old = 'hostname="db-2",executable="/usr/sbin/mysqld",signal="ABRT",core_present="true"'
    by_host = list(exprs).index("Crashes by host")
    tests = {"rule_files": ["panels.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            # New at 10m with its first crash.
            {"series": f"processcore_coredumps_total{{{labels}}}", "values": "_x10 1x20"},
            {"series": f"processcore_last_crash_timestamp_seconds{{{labels}}}", "values": "_x10 600x20"},
            # An old series whose exporter was down until 10m: no crash in the window.
            {"series": f"processcore_coredumps_total{{{old}}}", "values": "_x10 7x20"},
            {"series": f"processcore_last_crash_timestamp_seconds{{{old}}}", "values": "_x10 5x20"},
        ],
        "promql_expr_test": [
            {"expr": f"panel_{by_host}", "eval_time": "10m",
             "exp_samples": [{"labels": 'panel_%d{hostname="web-1"}' % by_host, "value": 1}]},
            {"expr": f"panel_{by_host}", "eval_time": "12m",
             "exp_samples": [{"labels": 'panel_%d{hostname="web-1"}' % by_host, "value": 0},
                             {"labels": 'panel_%d{hostname="db-2"}' % by_host, "value": 0}]},
            {"expr": f"increase(processcore_coredumps_total{{{labels}}}[5m])", "eval_time": "10m",
             "exp_samples": []},
        ],
    }]}
    (tmp_path / "panels.test.yml").write_text(yaml.safe_dump(tests))
    out = subprocess.run([promtool(), "test", "rules", "panels.test.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
