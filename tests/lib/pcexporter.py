"""Helpers for tests of process-core-exporter: start it, scrape it, make records with the handler."""
import pathlib
import re
import signal
import subprocess
import time
import urllib.request

import pctest

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format → {(name, frozenset(labels.items())): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparsable metrics line: {line!r}")
        labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in _LABEL.findall(m.group(2) or "")}
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def series(metrics, name, **labels):
    """The samples of `name` whose labels include `labels`: {frozenset(labels): value}."""
    want = set(labels.items())
    return {l: v for (n, l), v in metrics.items() if n == name and want <= set(l)}


def value(metrics, name, **labels):
    """The sum of the samples of `name` matching `labels` (0 when there are none)."""
    return sum(series(metrics, name, **labels).values())


def crashes(metrics):
    """processcore_coredumps_total as {(hostname, executable, signal, core_present): value}."""
    out = {}
    for l, v in series(metrics, "processcore_coredumps_total").items():
        d = dict(l)
        out[(d["hostname"], d["executable"], d["signal"], d["core_present"])] = v
    return out


class Exporter:
    """process-core-exporter on 127.0.0.1:0; the port comes from its "listening on" log line."""

    def __init__(self, store, config, workdir, extra=(), listen=("127.0.0.1:0",)):
        self.log_path = pathlib.Path(workdir) / f"exporter-{time.monotonic_ns()}.log"
        self.argv = [str(pctest.env_path("PC_EXPORTER")), "--store", str(store), "--config", str(config)]
        for address in listen:
            self.argv += ["--web.listen-address", address]
        self.argv += list(extra)
        self.listen = listen
        self.proc = None
        self.port = None
        self.bound = []  # "127.0.0.1:PORT", "[::1]:PORT", one per --web.listen-address

    def __enter__(self):
        self.start()
        return self

    def start(self, timeout=10.0):
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self._log)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}:\n{self.log()}")
            bound = re.findall(r"listening on (\S+):(\d+)", self.log())
            return bound if len(bound) == len(self.listen) else None

        bound = pctest.wait_until(listening, timeout)
        if not bound:
            raise RuntimeError(f"exporter did not start:\n{self.log()}")
        self.bound = [f"{host}:{port}" for host, port in bound]
        self.port = int(bound[0][1])

    def log(self):
        return self.log_path.read_text(errors="replace")

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return parse_metrics(r.read().decode())

    def wait_for(self, predicate, timeout=5.0):
        """Scrapes until predicate(metrics) holds; returns (metrics, seconds waited)."""
        start = time.monotonic()
        last = [None]

        def met():
            last[0] = self.scrape()
            return predicate(last[0])

        if not pctest.wait_until(met, timeout):
            raise AssertionError(f"condition not met within {timeout} s; last scrape: {crashes(last[0])}\n{self.log()}")
        return last[0], time.monotonic() - start

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self._log.close()
        return rc

    def __exit__(self, *exc):
        self.stop()


def setup_store(tmp_path, **config_keys):
    """A store the handler can write and a config for it; returns (store, config path)."""
    store = pctest.make_store(tmp_path)
    config = pctest.write_config(tmp_path / "process-core.conf", store, **config_keys)
    return store, config


def crash(store, config, host, signo, exe, data=b"\x7fNOTELF" * 512, when=None):
    """Runs the real handler with kernel-style argv (%h %s %E, and -t%t when `when`, the crash
    time in seconds since the epoch, is given) and `data` as the core."""
    times = [f"-t{when}"] if when is not None else []
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--store", str(store), "--config", str(config),
                    *times, "--", host, str(signo), exe.replace("/", "!")],
                   input=data, check=True, timeout=30)


def retire(store, record_paths):
    """Retires records through the ledger (tests/programs/retire.cpp → common::retire_records)."""
    rel = [str(pathlib.Path(p).relative_to(store)) for p in record_paths]
    out = subprocess.run([str(pctest.env_path("PC_RETIRE")), str(store), *rel],
                         check=True, capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip())
