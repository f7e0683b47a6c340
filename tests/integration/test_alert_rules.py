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
    for case in ["first crash of a new series", "first abort, with and without a core",
                 "fresh Prometheus counts one crash, not the whole counter",
                 "fresh Prometheus then a crash", "repeated crashes", "no crashes",
                 "exporter restart", "exporter back after a long outage",
                 "a counter that went down is not a reset",
                 "every core-dumping signal alerts at its severity", "hostile label values",
                 "runbook base URL from an external label", "exporter down", "unreadable records",
                 "folded executables", "kernel-skipped dumps",
                 "kernel-skipped dumps before Prometheus started", "store near max_use", "upload stuck",
                 "new crash signature", "new crash signature on a fresh Prometheus",
                 "fixed crash is back"]:
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
                                             "ProcessCoreStoreNearMaxUse",
                                             "ProcessCrashNewSignature", "ProcessCrashRegressed"}
    base = ('{{ or $externalLabels.process_core_runbook_url '
            '"file:///usr/share/doc/process-core/runbook.md" }}#')
    for a in alerts:
        url = a["annotations"]["runbook_url"]
        assert url.startswith(base), url
        assert url[len(base):] in anchors, (a["alert"], url)


def test_every_aggregation_keeps_instance_and_job():
    """Alertmanager routes and silences by node: no by() or on() of any rule drops them."""
    import re
    import yaml
    rules = yaml.safe_load((RULES_DIR / "process-core.rules.yml").read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        clauses = re.findall(r"\b(by|on|without|ignoring)\s*\(([^)]*)\)", rule["expr"])
        assert not [c for c in clauses if c[0] in ("without", "ignoring")], rule["expr"]
        for _, labels in clauses:
            assert {"instance", "job"} <= {x.strip() for x in labels.split(",")}, rule["expr"]


def test_example_prometheus_config(tmp_path):
    """The shipped prometheus.yml passes `promtool check config` (with the rule file it names),
    scrapes job "process-core" and loads the rules from where the package installs them."""
    import yaml
    text = (RULES_DIR / "prometheus.yml").read_text()
    config = yaml.safe_load(text)
    installed = "/usr/share/process-core/prometheus/process-core.rules.yml"
    assert config["rule_files"] == [installed]
    assert [j["job_name"] for j in config["scrape_configs"]] == ["process-core"]
    assert config["global"]["external_labels"]["process_core_runbook_url"].startswith("https://")
    (tmp_path / "prometheus.yml").write_text(
        text.replace(installed, str(RULES_DIR / "process-core.rules.yml")))
    out = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_example_alertmanager_config():
    """The shipped alertmanager.yml passes `amtool check-config`, groups by instance and job,
    and pages ProcessCrashed at both of its severities."""
    import yaml
    amtool = shutil.which("amtool")
    if not amtool:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    path = RULES_DIR / "alertmanager.yml"
    out = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load(path.read_text())
    assert {"instance", "job"} <= set(config["route"]["group_by"])
    for severity in ("critical", "warning"):
        out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                              "alertname=ProcessCrashed", f"severity={severity}",
                              "instance=web-1:19464", "job=process-core"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip() == "pager", (severity, out.stdout)


def test_dashboard_is_importable():
    """Grafana's import asks for the data source declared in __inputs: every data source of the
    dashboard is the variable it fills in, and __requires names every panel type used."""
    import json
    dashboard = json.loads((RULES_DIR.parent / "grafana" / "process-core.json").read_text())
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert dashboard["id"] is None
    for panel in dashboard["panels"]:
        assert ("panel", panel["type"]) in required, panel["type"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
    for name, var in variables.items():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", name
    # No data source uid of the machine it was exported from.
    text = json.dumps(dashboard)
    assert text.count('"uid": "') == text.count('"uid": "${') + 1  # + the dashboard's own uid


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


def documented_queries():
    """The copy-ready queries of docs/exporter.md, by the id in the comment before each."""
    import re
    text = (pctest.env_path("PC_SOURCE_DIR") / "docs" / "exporter.md").read_text()
    return dict(re.findall(r"<!-- query: ([a-z0-9-]+) -->\n```promql\n(.*?)```", text, re.S))


def test_documented_queries_count_first_crashes(tmp_path):
    """Six executables crash once each in the last 24 hours (each series appears at 1), one
    crashed twice more after an older crash, one only crashed two days ago. The documented
    queries find all seven and count 1 and 2; increase() finds only the repeated one."""
    import yaml
    queries = documented_queries()
    assert set(queries) >= {"crashed-executables-24h", "crashes-per-executable-24h", "latest-crash"}
    target = 'job="process-core",instance="web-1:19464"'

    def crashes(exe, counts, times):
        labels = f'hostname="web-1",executable="{exe}",signal="SEGV",core_present="true",{target}'
        return [{"series": f"processcore_coredumps_total{{{labels}}}", "values": counts},
                {"series": f"processcore_last_crash_timestamp_seconds{{{labels}}}", "values": times}]

    series = [{"series": f'processcore_build_info{{{target},version="1.0"}}', "values": "1x600"}]
    firsts = [25, 30, 35, 40, 45, 47]  # hours; the samples are 5 minutes apart
    for n, hour in enumerate(firsts):
        k = hour * 12
        series += crashes(f"/usr/bin/once{n}", f"_x{k} 1x{600 - k}", f"_x{k} {hour * 3600}x{600 - k}")
    series += crashes("/usr/bin/again", "1x300 2x60 3x240", "18000x300 108000x60 144000x240")
    series += crashes("/usr/bin/old", "_x120 1x480", "_x120 36000x480")
    rules = [{"record": name.replace("-", "_"), "expr": expr} for name, expr in queries.items()]
    rules.append({"record": "naive", "expr": "count by (executable) "
                  "(increase(processcore_coredumps_total[24h]) > 0)"})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))

    def sample(record, exe, value):
        labels = "" if record == "naive" else f'hostname="web-1",{target},'
        return {"labels": f'{record}{{{labels}executable="{exe}"}}', "value": value}

    exes = [f"/usr/bin/once{n}" for n in range(len(firsts))] + ["/usr/bin/again"]
    evaluate = [
        {"expr": "crashed_executables_24h", "eval_time": "48h",
         "exp_samples": [sample("crashed_executables_24h", e, 1) for e in exes]},
        {"expr": "crashes_per_executable_24h", "eval_time": "48h",
         "exp_samples": [sample("crashes_per_executable_24h", e, 2 if "again" in e else 1)
                         for e in exes]},
        # What the documented queries replace: only the series that already existed.
        {"expr": "naive", "eval_time": "48h", "exp_samples": [
            {"labels": 'naive{executable="/usr/bin/again"}', "value": 1}]},
    ]
    tests = {"rule_files": ["queries.yml"], "evaluation_interval": "5m", "tests": [
        {"interval": "5m", "input_series": series, "promql_expr_test": evaluate}]}
    (tmp_path / "queries.test.yml").write_text(yaml.safe_dump(tests))
    out = subprocess.run([promtool(), "test", "rules", "queries.test.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
