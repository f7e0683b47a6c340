"""End to end: a real Prometheus server scrapes the exporter every second and evaluates the
shipped alert rules; a crash must show up in its query API and fire ProcessCrashed. With a real
Alertmanager (Debian prometheus-alertmanager) the alerts of hostile executable names are read
back from its API and their suggested command is run against a stub corectl.

The crash goes through the real kernel (core_pattern → handler) when the test runs as root with
a writable core_pattern; the handler-run variants always run.
"""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import urllib.request

import pytest

import pctest
from pcexporter import Exporter, crash, value

RULES = pctest.env_path("PC_SOURCE_DIR") / "packaging" / "prometheus" / "process-core.rules.yml"
DEADLINE = 60  # seconds for each thing we wait for


def prometheus_binary():
    path = os.environ.get("PC_PROMETHEUS", "")
    if not path or not os.access(path, os.X_OK):
        path = shutil.which("prometheus") or ""
    if not path:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, workdir, exporter_port, target=None, scrape=None, alertmanager=None,
                 external_labels=None):
        # A second instance on the same workdir reuses the data directory: a restart.
        self.dir = pathlib.Path(workdir) / "prometheus"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        # The shipped rules have no `for:`, so they are used as they are; only the intervals
        # are shortened. `scrape` adds to the scrape config (TLS, basic auth, metrics_path).
        job = {"job_name": "process-core",
               "static_configs": [{"targets": [target or f"127.0.0.1:{exporter_port}"]}]}
        job.update(scrape or {})
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "external_labels": external_labels or {}},
            "rule_files": [str(RULES)],
            "scrape_configs": [job],
        }
        if alertmanager:
            config["alerting"] = {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]}
        (self.dir / "prometheus.yml").write_text(json.dumps(config))
        self.log = open(self.dir / "prometheus.log", "a")
        self.proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)

    def get(self, path, **params):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def wait_until(self, what, fn):
        last = [None]

        def attempt():
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{(self.dir / 'prometheus.log').read_text()}")
            try:
                last[0] = fn()
            except OSError as e:
                last[0] = e
                return None
            return last[0]

        if not pctest.wait_until(attempt, DEADLINE, interval=0.1):
            raise AssertionError(f"timed out waiting for {what}; last: {last[0]}")
        return last[0]

    def query(self, expr):
        return json.loads(self.get("/api/v1/query", query=expr))["data"]["result"]

    def alerts(self):
        return json.loads(self.get("/api/v1/alerts"))["data"]["alerts"]

    def stop(self):
        pctest.stop_process(self.proc, self.log)


def check_alert_flow(store, config, workdir, make_crash, executable):
    """Exporter + Prometheus up, one crash, then the counter and the firing alert."""
    with Exporter(store, config, workdir) as ex:
        prom = Prometheus(workdir, ex.port)
        try:
            prom.wait_until("the first scrape", lambda: prom.query('up{job="process-core"} == 1'))
            assert prom.query("processcore_coredumps_total") == []
            make_crash()
            ex.wait_for(lambda m: value(m, "processcore_coredumps_total", signal="SEGV") == 1, timeout=5)
            result = prom.wait_until("processcore_coredumps_total in Prometheus",
                                     lambda: prom.query('processcore_coredumps_total{signal="SEGV"}'))
            assert result[0]["metric"]["executable"] == executable
            assert result[0]["value"][1] == "1"
            alert = prom.wait_until("ProcessCrashed firing", lambda: [
                a for a in prom.alerts()
                if a["labels"].get("alertname") == "ProcessCrashed" and a["state"] == "firing"])[0]
            assert alert["labels"]["executable"] == executable
            assert alert["labels"]["signal"] == "SEGV"
            assert "corectl list" in alert["annotations"]["description"]
            assert alert["annotations"]["description"].startswith("1 crash(es)")
        finally:
            prom.stop()


def test_handler_run_fires_alert(tmp_path):
    prometheus_binary()
    store, config = pctest.make_store(tmp_path), tmp_path / "process-core.conf"
    pctest.write_config(config, store)
    check_alert_flow(store, config, tmp_path,
                     lambda: crash(store, config, "e2e-host", 11, "/usr/bin/e2e-crasher"),
                     "/usr/bin/e2e-crasher")


allow_cores = pctest.allow_cores


@pytest.mark.skipif(not pctest.can_set_core_pattern(), reason="needs root and a writable core_pattern")
def test_kernel_crash_fires_alert(tmp_path):
    prometheus_binary()
    # core_pattern holds at most 127 characters: the handler and config get a short path.
    work = pathlib.Path(tempfile.mkdtemp(prefix="pcp-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        shutil.copy2(pctest.env_path("PC_HANDLER"), work / "h")
        store = pctest.make_store(work)
        pctest.write_config(work / "c", store, rate_limit_burst=0)
        crasher = pctest.env_path("PC_CRASHER")

        def kernel_crash():
            pattern = f"|{work}/h --config={work}/c -P%P -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E"
            with pctest.machine_lock(), pctest.core_pattern(pattern), pctest.shipped_kernel_settings():
                proc = subprocess.run([str(crasher), "segv"], preexec_fn=allow_cores,
                                      capture_output=True, timeout=60)
                assert proc.returncode == -11
                pctest.wait_for_records(store, 1)

        check_alert_flow(store, work / "c", tmp_path, kernel_crash, str(crasher))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_prometheus_scrapes_through_tls_basic_auth_and_ipv6(tmp_path):
    """A real Prometheus scrapes the exporter over IPv6, with TLS, basic auth and a custom path."""
    prometheus_binary()
    import crypt
    import socket as sock
    try:
        with sock.socket(sock.AF_INET6) as s6:
            s6.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    store, config = pctest.make_store(tmp_path), tmp_path / "process-core.conf"
    pctest.write_config(config, store)
    crash(store, config, "tls-host", 11, "/usr/bin/tls-crasher")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=IP:::1,IP:127.0.0.1"], check=True, capture_output=True)
    password = "scrape-me"
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}'\n")
    (tmp_path / "password").write_text(password)
    with Exporter(store, config, tmp_path, listen=["[::1]:0"],
                  extra=["--web.config.file", str(tmp_path / "web.yml"),
                         "--web.telemetry-path", "/crashes"]) as ex:
        prom = Prometheus(tmp_path, ex.port, target=ex.bound[0], scrape={
            "scheme": "https", "metrics_path": "/crashes",
            "tls_config": {"ca_file": str(cert)},
            "basic_auth": {"username": "prometheus", "password_file": str(tmp_path / "password")}})
        try:
            prom.wait_until("a successful scrape", lambda: prom.query('up{job="process-core"} == 1'))
            result = prom.wait_until("the crash in Prometheus", lambda: prom.query(
                'processcore_coredumps_total{executable="/usr/bin/tls-crasher"}'))
            assert result[0]["value"][1] == "1"
            assert prom.query("process_resident_memory_bytes")
        finally:
            prom.stop()


def alertmanager_binary():
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not path:
        pytest.skip("alertmanager not installed (Debian package prometheus-alertmanager)")
    return path


class Alertmanager:
    """A real Alertmanager on 127.0.0.1 (no cluster), stopped by its PID."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir) / "alertmanager"
        self.dir.mkdir()
        self.port = free_port()
        (self.dir / "alertmanager.yml").write_text(json.dumps({
            "route": {"receiver": "none", "group_by": ["alertname", "job", "instance"]},
            "receivers": [{"name": "none"}]}))
        self.log = open(self.dir / "alertmanager.log", "w")
        self.proc = subprocess.Popen(
            [alertmanager_binary(), f"--config.file={self.dir / 'alertmanager.yml'}",
             f"--storage.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)

    def alerts(self):
        """The alerts Alertmanager holds (API v2), as raw JSON text and parsed."""
        if self.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited:\n{(self.dir / 'alertmanager.log').read_text()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/alerts", timeout=5) as r:
            text = r.read().decode()
        return text, json.loads(text)

    def wait_for(self, what, predicate):
        last = [None]

        def attempt():
            try:
                text, alerts = self.alerts()
            except OSError as e:
                last[0] = e
                return None
            last[0] = text
            return [a for a in alerts if predicate(a)]

        found = pctest.wait_until(attempt, DEADLINE, interval=0.2)
        if not found:
            raise AssertionError(f"timed out waiting for {what} in Alertmanager; last: {last[0]}")
        return found

    def stop(self):
        pctest.stop_process(self.proc, self.log)


# A name whose suggested command, pasted into a shell, ran `id` before the command was escaped;
# the ESC byte reached Alertmanager raw before the exporter escaped label values.
HOSTILE_EXE = "/usr/bin/q'$(id>&2)'x\"$(touch canary)\"`touch canary`;touch canary\x1b"
HOSTILE_LABEL = HOSTILE_EXE.replace("\x1b", "\\x1b")  # as the exporter and corectl show it
RUNBOOK = "https://docs.invalid/process-core/runbook.html"


def suggested_command(alert):
    m = re.search(r"See them with: (corectl list .*?--since[= ]1h)", alert["annotations"]["description"])
    assert m, alert["annotations"]["description"]
    return m.group(1)


def run_pasted(command, sandbox):
    """`command` as if pasted into bash, in an empty directory, with a stub corectl that records
    its arguments: returns them. Nothing else may run (no canary file, nothing on stderr)."""
    stub = sandbox / "bin" / "corectl"
    stub.parent.mkdir(parents=True)
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > "$PC_ARGV"\n')
    stub.chmod(0o755)
    work = sandbox / "work"
    work.mkdir()
    syntax = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "PC_ARGV": str(sandbox / "argv"), "HOME": str(work)}
    run = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stderr == b"", run.stderr  # `id>&2` would have written here
    assert sorted(os.listdir(work)) == [], os.listdir(work)  # no canary
    return (sandbox / "argv").read_bytes().decode().split("\0")[:-1]


def test_alertmanager_gets_safe_alerts_for_hostile_names_and_every_signal(tmp_path):
    """Crashes with a hostile executable name (shell syntax and an ESC byte) and a SIGBUS crash,
    through exporter, Prometheus and Alertmanager: the labels carry no raw control character,
    the suggested command runs nothing but corectl with the label values as its arguments, a BUS
    crash pages at its severity and the runbook link uses the configured base URL."""
    prometheus_binary()
    alertmanager_binary()
    store, config = pctest.make_store(tmp_path), tmp_path / "process-core.conf"
    pctest.write_config(config, store)
    am = Alertmanager(tmp_path)
    try:
        with Exporter(store, config, tmp_path) as ex:
            prom = Prometheus(tmp_path, ex.port, alertmanager=am,
                              external_labels={"process_core_runbook_url": RUNBOOK})
            try:
                prom.wait_until("the first scrape", lambda: prom.query('up{job="process-core"} == 1'))
                crash(store, config, "e2e-host", 11, HOSTILE_EXE)
                crash(store, config, "e2e-host", 7, "/usr/bin/e2e-bus")
                ex.wait_for(lambda m: value(m, "processcore_coredumps_total", signal="BUS") == 1
                            and value(m, "processcore_coredumps_total", signal="SEGV") == 1)
                with urllib.request.urlopen(f"http://127.0.0.1:{ex.port}/metrics", timeout=5) as r:
                    scraped = r.read().decode()
                assert "\x1b" not in scraped
                # The text format writes \ and " of a label value as \\ and \".
                assert HOSTILE_LABEL.replace("\\", "\\\\").replace('"', '\\"') in scraped
                segv = am.wait_for("the SEGV alert", lambda a: a["labels"].get("signal") == "SEGV")[0]
                argv = run_pasted(suggested_command(segv), tmp_path / "segv")
                assert argv == ["list", "--host=e2e-host", f"--exe={HOSTILE_LABEL}",
                                "--signal=SEGV", "--since=1h"]
                bus = am.wait_for("the BUS alert", lambda a: a["labels"].get("signal") == "BUS")[0]
            finally:
                prom.stop()
        text, _ = am.alerts()
        assert "\\u001b" not in text and "\x1b" not in text  # neither raw nor JSON-escaped ESC
    finally:
        am.stop()

    assert segv["labels"]["executable"] == HOSTILE_LABEL
    assert segv["labels"]["severity"] == "critical"
    assert segv["labels"]["job"] == "process-core" and segv["labels"]["instance"]
    assert segv["annotations"]["runbook_url"] == RUNBOOK + "#processcrashed"
    assert segv["annotations"]["description"].startswith("1 crash(es) of " + HOSTILE_LABEL)

    assert bus["labels"]["executable"] == "/usr/bin/e2e-bus"
    assert bus["labels"]["severity"] == "warning"
    assert bus["annotations"]["summary"] == "/usr/bin/e2e-bus crashed with SIGBUS on e2e-host"
    assert run_pasted(suggested_command(bus), tmp_path / "bus") == [
        "list", "--host=e2e-host", "--exe=/usr/bin/e2e-bus", "--signal=BUS", "--since=1h"]


def test_fresh_and_restarted_prometheus_count_one_recent_crash(tmp_path):
    """The exporter counts 2 crashes of one series, one of them an hour old. A Prometheus that
    has just started (and again after a restart on its data) says 1 crash in the last 10
    minutes, not 2."""
    prometheus_binary()
    store, config = pctest.make_store(tmp_path), tmp_path / "process-core.conf"
    pctest.write_config(config, store)
    import time
    crash(store, config, "e2e-host", 11, "/usr/bin/e2e-twice", when=int(time.time()) - 3600)
    crash(store, config, "e2e-host", 11, "/usr/bin/e2e-twice")

    def firing(prom):
        return [a for a in prom.alerts()
                if a["labels"].get("alertname") == "ProcessCrashed" and a["state"] == "firing"]

    with Exporter(store, config, tmp_path) as ex:
        assert value(ex.scrape(), "processcore_coredumps_total", signal="SEGV") == 2
        for run in ("fresh", "restarted"):
            prom = Prometheus(tmp_path, ex.port)
            try:
                alert = prom.wait_until(f"ProcessCrashed firing ({run})", lambda: firing(prom))[0]
                assert alert["annotations"]["description"].startswith(
                    "1 crash(es) of /usr/bin/e2e-twice"), (run, alert["annotations"])
            finally:
                prom.stop()
