"""A throw-away Ceph RADOS Gateway on 127.0.0.1 for the S3 tests.

One monitor, one OSD on memstore, no mgr, no cephx, everything under one temporary directory
and one ceph.conf; the daemons run in the foreground in their own sessions, so their PIDs are
known, and are stopped by PID. Also a small independent SigV4 client (hashlib/hmac), so tests
check what the server holds without going through the code under test.
"""
import datetime
import hashlib
import hmac
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ACCESS_KEY = "PCTESTACCESSKEY00001"
SECRET_KEY = "pc-test-secret-key-0000000000000000000000"
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")


def available():
    """None when the Ceph daemons are installed, else what is missing."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    return None if not missing else "not installed: " + ", ".join(missing)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    # SO_REUSEADDR as radosgw binds: a listener makes bind fail, TIME_WAIT connections do not.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Radosgw:
    """start() builds the cluster and a bucket; stop() ends every daemon it started, by PID."""

    def __init__(self, work, bucket="crashes", ssl_cert=None):
        self.work = pathlib.Path(work)
        self.bucket = bucket
        self.ssl_cert = ssl_cert  # PEM with key and certificate: the gateway speaks HTTPS
        self.procs = []
        self.port = None
        self.conf = self.work / "ceph.conf"

    @property
    def endpoint(self):
        scheme = "https" if self.ssl_cert else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _write_conf(self, mon_port):
        d = self.work
        frontend = f"beast endpoint=127.0.0.1:{self.port}"
        if self.ssl_cert:
            frontend = f"beast ssl_endpoint=127.0.0.1:{self.port} ssl_certificate={self.ssl_cert}"
        self.conf.write_text(f"""[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{mon_port}
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc
ms mon service mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
paxos propose interval = 0.01
mon data avail crit = 0
mon data avail warn = 0
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd objectstore = memstore
memstore device bytes = 2147483648
osd data = {d}/osd
mon data = {d}/mon
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file =
osd crush chooseleaf type = 0
rgw data = {d}/rgw
rgw frontends = {frontend}
rgw dns name = localhost
rgw enable usage log = false
rgw thread pool size = 64
""")

    def _spawn(self, argv):
        log = open(self.work / "log" / (pathlib.Path(argv[0]).name + ".out"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def _run(self, argv, timeout=60):
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout)

    def start(self, timeout=60):
        for sub in ("mon", "osd", "run", "log", "rgw"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        self.fsid = str(uuid.uuid4())
        mon_port = free_port()
        self.port = self.port or free_port()
        # radosgw keeps running when its port is taken, answering nothing: check first.
        if not port_free(self.port) or not port_free(mon_port):
            raise RuntimeError(f"port {self.port} or {mon_port} is taken")
        self._write_conf(mon_port)
        c = ["-c", str(self.conf)]
        self._run(["monmaptool", "--create", "--clobber", "--fsid", self.fsid, "--addv", "a",
                   f"[v2:127.0.0.1:{mon_port}]", str(self.work / "monmap")])
        self._run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(self.work / "monmap")])
        self._spawn(["ceph-mon", *c, "-f", "-i", "a"])
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run(["ceph", *c, "--connect-timeout", "20", "osd", "new", osd_uuid]).stdout.strip()
        self._run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid])
        self._spawn(["ceph-osd", *c, "-f", "-i", osd_id])
        self._spawn(["radosgw", *c, "-f", "-n", "client.rgw"])
        self._run(["radosgw-admin", *c, "user", "create", "--uid", "pctest", "--display-name",
                   "pctest", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY], timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                status, _, _ = self.request("PUT", "")
                if status in (200, 409):
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("radosgw did not answer; see " + str(self.work / "log"))
            time.sleep(0.05)
        return self

    def _check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; see {self.work / 'log'}")

    def kill_gateway(self):
        """Ends the whole cluster at once (SIGKILL): a gateway gone mid-request."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait(timeout=30)
        self.procs = []

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=15)
        self.procs = []

    def restart_fresh(self, timeout=60):
        """A new, empty cluster on the same S3 port (the old one killed): objects are gone."""
        self.kill_gateway()
        for sub in ("mon", "osd", "run", "rgw"):
            shutil.rmtree(self.work / sub, ignore_errors=True)
        deadline = time.monotonic() + 30
        while not port_free(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} stays taken")
            time.sleep(0.1)
        return self.start(timeout)

    # An independent SigV4 client (path style), for checking what the server holds.
    def request(self, method, key, query=None, body=b"", headers=None, secret=SECRET_KEY,
                context=None):
        query = query or {}
        path = f"/{self.bucket}" + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
        qs = "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(str(v), safe='~')}"
                      for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(body).hexdigest()
        host = f"127.0.0.1:{self.port}"
        hdrs = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        signed = ";".join(sorted(hdrs))
        canonical = "\n".join([method, path, qs, "".join(f"{k}:{hdrs[k].strip()}\n" for k in sorted(hdrs)),
                               signed, payload])
        scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key_ = ("AWS4" + secret).encode()
        for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
            key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope},"
                                 f"SignedHeaders={signed},Signature={sig}")
        del hdrs["host"]
        url = self.endpoint + path + ("?" + qs if qs else "")
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60, context=context) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, key):
        status, headers, body = self.request("GET", key)
        if status != 200:
            raise KeyError(f"{key}: HTTP {status}")
        return headers, body

    def keys(self, prefix=""):
        """Every key under prefix (ListObjectsV2, all pages)."""
        import xml.etree.ElementTree as ET
        out, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            status, _, body = self.request("GET", "", q)
            assert status == 200, body
            root = ET.fromstring(body)
            ns = {"s": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            find = (lambda e, t: e.find(f"s:{t}", ns)) if ns else (lambda e, t: e.find(t))
            findall = (lambda e, t: e.findall(f"s:{t}", ns)) if ns else (lambda e, t: e.findall(t))
            out += [find(c, "Key").text for c in findall(root, "Contents")]
            trunc = find(root, "IsTruncated")
            if trunc is None or trunc.text != "true":
                return out
            token = find(root, "NextContinuationToken").text

    def multipart_uploads(self):
        status, _, body = self.request("GET", "", {"uploads": ""})
        assert status == 200, body
        return body.count(b"<Upload>")


def write_credentials(path, access=ACCESS_KEY, secret=SECRET_KEY):
    path = pathlib.Path(path)
    path.write_text(f"[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n")
    os.chmod(path, 0o600)
    return path
