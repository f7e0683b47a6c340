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
    r = subprocess.run([exe, "--web.listen-address", "::1:19464"], capture_output=True, text=True,
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
        with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
            s.sendall(b"GET metrics HTTP/1.1\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        # A request line without a target: libmicrohttpd closes the connection without a reply.
        with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(b"GET\r\n\r\n")
            reply = s.recv(100)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply
            assert time.monotonic() - start < 8
        # Empty lines before a request line are skipped (RFC 9112 2.2): a client sending only
        # those is dropped at the head deadline like any other that never sends a request.
        with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(b"\r\n\r\n")
            assert s.recv(100) == b""
            assert time.monotonic() - start < 8


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


# --- connection exhaustion, authentication cost, negotiated formats ---------------------------

def get_from(source, port, path="/metrics", auth=None, headers=None, tls=None, timeout=5):
    """(status, headers, raw body) of one request from the local address `source` (127.0.0.N:
    another client as the exporter sees it)."""
    import http.client
    if tls is not None:
        conn = http.client.HTTPSConnection("localhost", port, timeout=timeout,
                                           source_address=(source, 0), context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                          source_address=(source, 0))
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


class Hog:
    """Holds idle connections to `port` from several local addresses, reopening those the
    exporter drops, until stopped. `hello` is sent once per connection (a partial TLS
    ClientHello for the handshake attack, nothing for idle TCP)."""

    def __init__(self, port, sources, per_source, hello=b""):
        import threading
        self.port, self.sources, self.per_source, self.hello = port, sources, per_source, hello
        self.stopping = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self, source):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2,
                                         source_address=(source, 0))
            if self.hello:
                s.sendall(self.hello)
            s.setblocking(False)
            self.opened += 1
            return s
        except OSError:
            return None

    def run(self):
        import select
        held = {src: [] for src in self.sources}
        while not self.stopping.is_set():
            for src, socks in held.items():
                alive = []
                for s in socks:
                    r, _, _ = select.select([s], [], [], 0)
                    if r:  # the exporter closed it (or answered): open another
                        try:
                            gone = s.recv(4096) == b""
                        except OSError:
                            gone = True
                        if gone:
                            s.close()
                            continue
                    alive.append(s)
                while len(alive) < self.per_source and not self.stopping.is_set():
                    s = self.connect(src)
                    if s is None:
                        break
                    alive.append(s)
                held[src] = alive
            self.stopping.wait(0.05)
        for socks in held.values():
            for s in socks:
                s.close()

    def __enter__(self):
        self.thread.start()
        pctest.wait_until(lambda: self.opened >= len(self.sources) * self.per_source, 10)
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()


# The start of a TLS 1.2 ClientHello record, cut off: a handshake that never completes.
PARTIAL_HELLO = bytes.fromhex("160301020001000200") + b"\x03\x03" + b"\x00" * 16


def scrapes_survive(port, tls=None, auth=None, rounds=6):
    """Scrapes from 127.0.0.1 once a second; every one must succeed within a few seconds."""
    for _ in range(rounds):
        status, _, body = get_from("127.0.0.1", port, auth=auth, tls=tls, timeout=4)
        assert status == 200 and b"processcore_build_info" in body
        time.sleep(1)


def test_idle_connections_do_not_silence_it(tmp_path):
    """Twenty idle TCP connections from one client and twenty from twenty others, reopened as
    soon as they are dropped: scrapes from another address still succeed."""
    store, config = setup_store(tmp_path)
    with Exporter(store, config, tmp_path) as ex:
        with Hog(ex.port, ["127.0.0.2"], 20), \
             Hog(ex.port, [f"127.0.1.{i}" for i in range(1, 21)], 1):
            scrapes_survive(ex.port)
        assert ex.proc.poll() is None


def test_many_clients_fill_the_slots_idle_ones_go_first(tmp_path):
    """Sixty idle connections from fifteen addresses, more than the server keeps: the oldest idle
    ones are dropped for new connections, so a scrape still gets in."""
    store, config = setup_store(tmp_path)
    with Exporter(store, config, tmp_path) as ex:
        with Hog(ex.port, [f"127.0.2.{i}" for i in range(1, 16)], 4):
            scrapes_survive(ex.port, rounds=4)


def test_slow_tls_handshakes_do_not_silence_it(tmp_path):
    store, config = setup_store(tmp_path)
    cert, key = make_tls(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    tls = ssl.create_default_context(cafile=str(cert))
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        with Hog(ex.port, ["127.0.0.3"], 20, PARTIAL_HELLO), \
             Hog(ex.port, [f"127.0.3.{i}" for i in range(1, 21)], 1, PARTIAL_HELLO):
            scrapes_survive(ex.port, tls=tls)


def test_trickled_request_head_is_cut_from_accept(tmp_path):
    """A client sending its head a byte every half second is dropped a few seconds after it
    connected, not kept as long as it keeps sending."""
    store, config = setup_store(tmp_path)
    with Exporter(store, config, tmp_path) as ex:
        with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
            start = time.monotonic()
            closed = False
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 40:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                r, _, _ = __import__("select").select([s], [], [], 0.5)
                if r and s.recv(100) == b"":
                    closed = True
                    break
            assert closed, "a trickling client was kept for its whole head"
            assert time.monotonic() - start < 8


def test_basic_auth_costs_the_same_for_unknown_users(tmp_path):
    """An unknown user takes as long to refuse as a known one with a wrong password (both pay
    bcrypt), so response times do not reveal user names."""
    store, config = setup_store(tmp_path)
    web = tmp_path / "web.yml"
    slow = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    web.write_text(f"basic_auth_users:\n  prometheus: '{slow}'\n")
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        def median(user, sources):
            times = []
            for src in sources:  # one address per try: the failure limit is per client
                start = time.perf_counter()
                assert get_from(src, ex.port, auth=(user, "wrong"))[0] == 401
                times.append(time.perf_counter() - start)
            return sorted(times)[len(times) // 2]

        known = median("prometheus", [f"127.0.4.{i}" for i in range(1, 6)])
        unknown = median("nobody", [f"127.0.5.{i}" for i in range(1, 6)])
        assert 0.33 < unknown / known < 3, (known, unknown)


def test_failed_logins_are_limited_per_client(tmp_path):
    store, config = setup_store(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt(PASSWORD)}'\n")
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        # Verified once, remembered: this client keeps scraping even once it is throttled.
        assert get_from("127.0.6.1", ex.port, auth=("prometheus", PASSWORD))[0] == 200
        statuses = [get_from("127.0.6.1", ex.port, auth=("prometheus", f"guess{i}"))[0]
                    for i in range(8)]
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
        assert get_from("127.0.6.1", ex.port, auth=("prometheus", PASSWORD))[0] == 200
        # Another client is not affected; unknown names count as failures too.
        assert get_from("127.0.6.2", ex.port, auth=("prometheus", "guess"))[0] == 401
        for i in range(5):
            assert get_from("127.0.6.3", ex.port, auth=("nobody", "x"))[0] == 401
        assert get_from("127.0.6.3", ex.port, auth=("prometheus", "guess"))[0] == 429


def test_gzip_and_openmetrics_are_negotiated(tmp_path):
    import gzip
    store, config = setup_store(tmp_path)
    crash(store, config, "web-1", SEGV, "/usr/bin/ruby")
    with Exporter(store, config, tmp_path) as ex:
        _, _, plain = get_from("127.0.0.1", ex.port)
        status, headers, body = get_from("127.0.0.1", ex.port,
                                         headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert parse_metrics(gzip.decompress(body).decode()).keys() == \
            parse_metrics(plain.decode()).keys()
        _, headers, body = get_from("127.0.0.1", ex.port, headers={"Accept-Encoding": "gzip;q=0"})
        assert "Content-Encoding" not in headers and body.startswith(b"# HELP")

        accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                  "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        status, headers, body = get_from("127.0.0.1", ex.port, headers={"Accept": accept})
        text = body.decode()
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert "# TYPE processcore_coredumps counter\n" in text
        assert 'processcore_coredumps_total{core_present="true"' in text
        assert text.endswith("# EOF\n")
        om = {k: v for k, v in parse_metrics(text.replace("# EOF\n", "")).items()}
        assert value(om, "processcore_coredumps_total", signal="SEGV") == 1


def make_ca(tmp_path, name):
    """A CA and a client certificate it signed; returns (ca cert, client cert, client key)."""
    ca_key, ca = tmp_path / f"{name}-ca.key", tmp_path / f"{name}-ca.pem"
    key, csr, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.csr", tmp_path / f"{name}.pem"
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days",
        "1", "-subj", f"/CN={name} CA", "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
        f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    ext = tmp_path / f"{name}.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-extfile", str(ext), "-out", str(crt))
    return ca, crt, key


def test_client_certificates_and_tls_versions(tmp_path):
    store, config = setup_store(tmp_path)
    cert, key = make_tls(tmp_path)
    ca, client_crt, client_key = make_ca(tmp_path, "scraper")
    _, other_crt, other_key = make_ca(tmp_path, "stranger")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                   f"  client_ca_file: {ca}\n  client_auth_type: RequireAndVerifyClientCert\n"
                   f"  min_version: TLS13\n")
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        def context(crt=None, k=None, version=None):
            c = ssl.create_default_context(cafile=str(cert))
            if crt:
                c.load_cert_chain(str(crt), str(k))
            if version:
                c.maximum_version = version
            return c

        assert get_from("127.0.0.1", ex.port, tls=context(client_crt, client_key))[0] == 200
        for bad in [context(), context(other_crt, other_key)]:
            try:
                status = get_from("127.0.0.1", ex.port, tls=bad)[0]
            except (ssl.SSLError, ConnectionError):
                status = None
            assert status in (403, None)
        # min_version TLS13: a TLS 1.2 client is refused in the handshake.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get_from("127.0.0.1", ex.port,
                     tls=context(client_crt, client_key, ssl.TLSVersion.TLSv1_2))


def test_certificate_rotation_without_restart(tmp_path):
    store, config = setup_store(tmp_path)
    cert, key = make_tls(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    with Exporter(store, config, tmp_path, extra=["--web.config.file", str(web)]) as ex:
        old = ssl.create_default_context(cafile=str(cert))
        assert get_from("127.0.0.1", ex.port, tls=old)[0] == 200
        new_dir = tmp_path / "new"
        new_dir.mkdir()
        new_cert, new_key = make_tls(new_dir)
        # Replaced as a renewal tool does: new files renamed over the old ones.
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        new = ssl.create_default_context(cafile=str(cert))

        def serves_new():
            try:
                return get_from("127.0.0.1", ex.port, tls=new)[0] == 200
            except (ssl.SSLError, ConnectionError):
                return False
        assert pctest.wait_until(serves_new, 10)
        with pytest.raises(ssl.SSLError):
            get_from("127.0.0.1", ex.port, tls=old)


def test_prometheus_keeps_scraping_under_attack(tmp_path):
    """A real Prometheus scraping every second sees no failed scrape while idle connections and
    stalled handshakes are held open (and reopened) against the exporter."""
    import sys
    sys.path.insert(0, str(pctest.env_path("PC_SOURCE_DIR") / "tests" / "e2e"))
    from test_prometheus import Prometheus, prometheus_binary
    prometheus_binary()  # skips without the prometheus package
    store, config = setup_store(tmp_path)
    with Exporter(store, config, tmp_path) as ex:
        prom = Prometheus(tmp_path, ex.port)
        try:
            prom.wait_until("the first scrape", lambda: prom.query('up{job="process-core"} == 1'))
            with Hog(ex.port, ["127.0.0.2"], 20), \
                 Hog(ex.port, [f"127.0.7.{i}" for i in range(1, 21)], 1, PARTIAL_HELLO):
                # Eight scrapes happen under attack; their `up` samples are read back below.
                time.sleep(8)
                scrapes = prom.query('count_over_time(up{job="process-core"}[6s])')
                worst = prom.query('min_over_time(up{job="process-core"}[6s])')
            assert float(scrapes[0]["value"][1]) >= 4, scrapes
            assert worst[0]["value"][1] == "1", worst
        finally:
            prom.stop()
