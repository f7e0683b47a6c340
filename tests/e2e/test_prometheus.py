"""End to end: a real Prometheus server scrapes the exporter every second and evaluates the
shipped alert rules; a crash must show up in its query API and fire ProcessCrashed.

The crash goes through the real kernel (core_pattern → handler) when the test runs as root with
a writable core_pattern; the handler-run variant always runs.
"""
import json
import os
import pathlib
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
    def __init__(self, workdir, exporter_port, target=None, scrape=None):
        self.dir = pathlib.Path(workdir) / "prometheus"
        self.dir.mkdir()
        self.port = free_port()
        # The shipped rules have no `for:`, so they are used as they are; only the intervals
        # are shortened. `scrape` adds to the scrape config (TLS, basic auth, metrics_path).
        job = {"job_name": "process-core",
               "static_configs": [{"targets": [target or f"127.0.0.1:{exporter_port}"]}]}
        job.update(scrape or {})
        (self.dir / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [job],
        }))
        self.log = open(self.dir / "prometheus.log", "w")
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
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


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
