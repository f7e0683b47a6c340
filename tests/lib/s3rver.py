"""A throw-away s3rver (@20minutes/s3rver, an S3 server in Node) on 127.0.0.1 for the S3 tests.

A second S3 implementation beside the RADOS Gateway: it verifies SigV4 (of path-style
requests: see S3rver), answers virtual-hosted requests (BUCKET.s3.localhost: libcurl resolves
every *.localhost name to the loopback itself, glibc does not), gives a multipart upload the MD5
of the whole object as its ETag and writes its own error bodies. The package is installed once with npm into a cache under
/var/tmp keyed by its version (npm's own cache beside it), then started from a few lines of
Node with one bucket and the test's credentials; its objects live in the test's directory. It
runs in its own session and is stopped by PID. The independent SigV4 client of radosgw.py
checks what it holds (path style, on 127.0.0.1).
"""
import fcntl
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import radosgw

# 5.0.0, npm's latest, needs Node >= 24; 4.0.3 runs on Debian's Node 20.
VERSION = "4.0.3"
PACKAGE = f"@20minutes/s3rver@{VERSION}"
CACHE = pathlib.Path("/var/tmp/process-core-s3rver")
ACCESS_KEY = radosgw.ACCESS_KEY
SECRET_KEY = radosgw.SECRET_KEY

# What npm says when it cannot reach the registry: then the tests are skipped, not failed.
_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|"
                      r"EHOSTUNREACH|ERR_SOCKET_TIMEOUT|network|request to \S+ failed", re.I)

# The server: s3rver's fixed account gets the test's key pair instead of its well-known one;
# port 0, and the port it got is the first line out, so there is no race for a free port; then a
# line per request, "METHOD HOST URL" as they arrived.
SCRIPT = """\
const S3rver = require('@20minutes/s3rver'), { DUMMY_ACCOUNT } = require('@20minutes/s3rver/lib/models/account');
const [directory, bucket, access, secret, check] = process.argv.slice(2);
DUMMY_ACCOUNT.revokeAccessKey('S3RVER'); DUMMY_ACCOUNT.createKeyPair(access, secret);
const s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, serviceEndpoint: 'localhost', allowMismatchedSignatures: check !== 'verify', configureBuckets: [{ name: bucket }] });
s3.middleware.unshift((ctx, next) => { console.log(ctx.method, ctx.host, ctx.url); return next(); });
s3.run().then((a) => console.log(a.port), (e) => { console.error(e); process.exit(1); });
"""


def _package_dir(root):
    return root / "node_modules" / "@20minutes" / "s3rver"


def _installed(root):
    try:
        return (_package_dir(root) / "package.json").read_text().find(f'"version": "{VERSION}"') >= 0
    except OSError:
        return False


def install(timeout=300):
    """The package's directory (node_modules' parent), installing it first if needed; or the
    reason it cannot be had, as a string, when Node, npm or the registry is missing."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return None, f"{tool} is not installed"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
    major = re.match(r"v(\d+)\.", node.stdout)
    if not major or int(major.group(1)) < 20:
        return None, f"it needs Node 20 or later, this is {node.stdout.strip() or 'unknown'}"
    root = CACHE / VERSION
    if _installed(root):
        return root, None
    CACHE.mkdir(parents=True, exist_ok=True)
    # Tests run in parallel: one installs, the others wait for it.
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(root):
            return root, None
        tmp = CACHE / f".{VERSION}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        # npm's cache and logs under the cache too, nothing in $HOME; few retries offline.
        env = dict({"npm_config_fetch_retries": "1"}, **os.environ)
        env.update(npm_config_cache=str(CACHE / "npm-cache"), npm_config_update_notifier="false",
                   npm_config_loglevel="error")
        try:
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save",
                                "--prefix", str(tmp), PACKAGE], capture_output=True, text=True,
                               timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            return None, f"npm install {PACKAGE} took longer than {timeout} s: registry unreachable?"
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            said = [line for line in (r.stderr + r.stdout).splitlines() if _OFFLINE.search(line)]
            if said:
                return None, f"the npm registry cannot be reached for {PACKAGE}: {said[0].strip()}"
            raise RuntimeError(f"npm install {PACKAGE} failed:\n{r.stderr}")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return root, None


class S3rver:
    """start() runs the server with one bucket; stop() ends it by PID.

    verify_signatures=False is for virtual-hosted requests: s3rver 4.0.3 signs those as if the
    path began with /BUCKET (SigV2's canonical resource), where SigV4 signs the path as sent, so
    it refuses every correctly signed one. The access key must still be known to it.
    """

    def __init__(self, work, bucket="crashes", verify_signatures=True):
        self.work = pathlib.Path(work)
        self.bucket = bucket
        self.verify_signatures = verify_signatures
        self.port = None
        self.proc = None
        self.ssl_cert = None

    @property
    def endpoint(self):
        """The path-style endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def virtual_endpoint(self):
        """The endpoint for virtual-hosted style: requests go to BUCKET.s3.localhost."""
        return f"http://s3.localhost:{self.port}"

    def start(self, root, timeout=30):
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "objects").mkdir(exist_ok=True)
        script = self.work / "s3rver.js"
        script.write_text(SCRIPT)
        self.log = self.work / "s3rver.log"
        env = dict(os.environ, NODE_PATH=str(pathlib.Path(root) / "node_modules"))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["node", str(script), str(self.work / "objects"), self.bucket, ACCESS_KEY,
                 SECRET_KEY, "verify" if self.verify_signatures else "unchecked"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=self.work)
        # The port comes first (Node's warnings, on stderr, may come before it).
        deadline = time.monotonic() + timeout
        while True:
            port = re.search(rb"^(\d+)\n", self.log.read_bytes(), re.M)
            if port:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3rver exited with {self.proc.returncode}: "
                                   + self.log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("s3rver did not say its port; see " + str(self.log))
            time.sleep(0.05)
        self.port = int(port.group(1))
        return self

    def requests(self):
        """The requests s3rver received, as (method, Host header, URL)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [tuple(line.split(" ", 2)) for line in lines
                if re.match(r"(GET|HEAD|PUT|POST|DELETE) \S+ \S", line)]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    # The independent client: path style on 127.0.0.1, as for the gateway.
    request = radosgw.Radosgw.request
    get = radosgw.Radosgw.get
    keys = radosgw.Radosgw.keys
