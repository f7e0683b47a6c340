"""process-core-exporter's HTTP side, as Prometheus users expect it: exporter-toolkit flags,
IPv6, TLS and basic authentication (--web.config.file), the probe endpoints, the landing page,
the standard process_* metrics, and a stop in well under a second."""
import base64
import crypt  # deprecated in 3.11, still the simplest bcrypt on Debian 12 (libxcrypt)
import os
import pathlib
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import pctest
from pcexporter import Exporter, crash, parse_metrics, setup_store, value

SEGV = 11
PASSWORD = "correct horse"


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def get(url, auth=None, context=None, method="GET"):
    """(status, headers, body) of one request; HTTP errors are results, not exceptions."""
    request = urllib.request.Request(url, method=method)
    if auth:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def make_tls(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert, key)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key),
                    "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def bcrypt(password):
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def test_listen_addresses_paths_and_probes(tmp_path):
    store, config = setup_store(tmp_path)
    crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    listen = ["127.0.0.1:0"] + (["[::1]:0"] if has_ipv6_loopback() else [])
    with Exporter(store, config, tmp_path, listen=listen,
                  extra=["--web.telemetry-path", "/crash-metrics"]) as ex:
        for address in ex.bound:
            status, headers, body = get(f"http://{address}/crash-metrics")
            assert status == 200, (address, body)
            assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
            m = parse_metrics(body)
            assert value(m, "processcore_coredumps_total", signal="SEGV") == 1
            assert value(m, "processcore_build_info") == 1
            for name in ["process_cpu_seconds_total", "process_resident_memory_bytes",
                         "process_open_fds", "process_max_fds", "process_start_time_seconds"]:
                assert (name, frozenset()) in m, name
            assert value(m, "process_resident_memory_bytes") > 1 << 20
            assert abs(value(m, "process_start_time_seconds") - time.time()) < 120
            assert 0 < value(m, "process_open_fds") < value(m, "process_max_fds")
            # No metric of ours is in the process_ namespace.
            assert not [n for n, _ in m if n.startswith("process_core")]

            assert get(f"http://{address}/metrics")[0] == 404
            status, _, body = get(f"http://{address}/-/healthy")
            assert status == 200 and "Healthy" in body
            status, _, body = get(f"http://{address}/-/ready")
            assert status == 200 and "Ready" in body
            status, headers, body = get(f"http://{address}/")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert 'href="/crash-metrics"' in body
            status, _, body = get(f"http://{address}/-/healthy", method="HEAD")
            assert status == 200 and body == ""
            assert get(f"http://{address}/-/healthy", method="POST")[0] == 405
        if len(listen) == 2:
            assert ex.bound[1].startswith("[::1]:")


def test_every_address_form(tmp_path):
    """":PORT" listens on every address, IPv4 included."""
    store, config = setup_store(tmp_path)
    with Exporter(store, config, tmp_path, listen=[":0"]) as ex:
        assert get(f"http://127.0.0.1:{ex.port}/-/healthy")[0] == 200


def test_tls_and_basic_auth(tmp_path):
    store, config = setup_store(tmp_path)
    crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    cert, key = make_tls(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                   f"basic_auth_users:\n  prometheus: '{bcrypt(PASSWORD)}'\n")
    tls = ssl.create_default_context(cafile=str(cert))
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        url = f"https://localhost:{ex.port}/metrics"
        status, _, body = get(url, ("prometheus", PASSWORD), tls)
        assert status == 200
        assert value(parse_metrics(body), "processcore_coredumps_total") == 1
        # Every path needs the password, the probes included (as the exporter-toolkit does).
        for path in ["/metrics", "/-/healthy", "/"]:
            status, headers, _ = get(f"https://localhost:{ex.port}{path}", None, tls)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        assert get(url, ("prometheus", PASSWORD + "x"), tls)[0] == 401
        assert get(url, ("nobody", PASSWORD), tls)[0] == 401
        # curl, as an operator would check it.
        r = subprocess.run(["curl", "-sS", "--cacert", str(cert), "-u", f"prometheus:{PASSWORD}",
                            url], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0 and "processcore_coredumps_total{" in r.stdout, r.stderr
        # Plain HTTP on the TLS port gets nothing.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{ex.port}/metrics", timeout=5).read()
        assert "(TLS) (basic auth)" in ex.log()


def test_bad_web_config_is_an_error(tmp_path):
    store, config = setup_store(tmp_path)
    web = tmp_path / "web.yml"
    exe = str(pctest.env_path("PC_EXPORTER"))
    for text, message in [
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "client_ca_file"),
        ("basic_auth_users:\n  u: plain\n", "not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: /nonexistent\n  key_file: /nonexistent\n", "certificate"),
    ]:
        web.write_text(text)
        r = subprocess.run([exe, "--store", str(store), "--config", str(config),
                            "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(web)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and message in r.stderr, r.stderr
    r = subprocess.run([exe, "--web.listen-address", "::1:9464"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "brackets" in r.stderr
    r = subprocess.run([exe, "--web.telemetry-path", "/-/x"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2


def test_old_listen_flag_still_works(tmp_path):
    store, config = setup_store(tmp_path)
    ex = Exporter(store, config, tmp_path, listen=[], extra=["--listen", "127.0.0.1:0"])
    ex.listen = ["127.0.0.1:0"]  # one "listening on" line to wait for
    with ex:
        assert get(f"http://127.0.0.1:{ex.port}/metrics")[0] == 200
        assert "--listen is deprecated" in ex.log()


def test_stops_in_well_under_a_second(tmp_path):
    """Even with a client that connected and sends nothing."""
    store, config = setup_store(tmp_path)
    ex = Exporter(store, config, tmp_path)
    ex.start()
    idle = socket.create_connection(("127.0.0.1", ex.port))
    try:
        assert get(f"http://127.0.0.1:{ex.port}/-/healthy")[0] == 200
        start = time.monotonic()
        assert ex.stop() == 0
        assert time.monotonic() - start < 0.5
    finally:
        idle.close()


def test_slow_and_oversized_requests_are_bounded(tmp_path):
    store, config = setup_store(tmp_path)
    with Exporter(store, config, tmp_path) as ex:
        with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
            reply = s.recv(100)
            assert reply.startswith(b"HTTP/1.1 431"), reply
        # A client that never finishes its request is dropped after a few seconds.
        with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            assert s.recv(100) == b""
            assert time.monotonic() - start < 8
        for garbage in [b"\r\n\r\n", b"GET\r\n\r\n", b"GET metrics HTTP/1.1\r\n\r\n"]:
            with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
                s.sendall(garbage)
                assert s.recv(100).startswith(b"HTTP/1.1 400"), garbage


def test_random_requests_never_break_it(tmp_path):
    """Random bytes, random header lines and hostile Authorization values, with and without
    basic auth: every connection ends, and the exporter still serves afterwards."""
    import random
    rng = random.Random(12)
    store, config = setup_store(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  u: '{bcrypt(PASSWORD)}'\n")
    pieces = [b"GET ", b"HEAD ", b"/metrics", b"/", b"?", b" HTTP/1.1", b"\r\n", b"\r\n\r\n", b":",
              b"Authorization: Basic ", b"dTpw", b"=", b"\0", b"\xff", b" ", b"a" * 300]
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        for i in range(300):
            if i % 2:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600)))
            else:
                data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))
            with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
                s.sendall(data + b"\r\n\r\n")
                reply = s.recv(64)
                assert reply == b"" or reply.startswith(b"HTTP/1.1 "), (data, reply)
        status, _, body = get(f"http://127.0.0.1:{ex.port}/metrics", ("u", PASSWORD))
        assert status == 200 and "processcore_build_info" in body
        assert ex.proc.poll() is None
