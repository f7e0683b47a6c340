"""process-core-uploader against a real Ceph RADOS Gateway: records and cores of two hosts'
stores in one bucket, byte-identical; a gateway lost in the middle of a multipart upload; the
uploader killed mid-upload; a part failed through a proxy, and a 200 without the object; a large
core over several connections, within one rate limit; virtual-hosted addressing; runtime
reports, and reports planted in the store; a wrong secret; credentials others can read; the
store's group files, uploaded when they change; the first N cores of a signature; the
exporter's upload metrics."""
import contextlib
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time

import pytest

import corefixture
import pctest
import pcexporter
import radosgw
import s3proxy

pytestmark = pytest.mark.skipif(radosgw.available() is not None,
                                reason=f"Ceph: {radosgw.available()}")

PREFIX = "fleet"


@pytest.fixture
def gateway(tmp_path):
    gw = radosgw.Radosgw(tmp_path / "ceph")
    gw.start()
    yield gw
    gw.stop()


def uploader_bin():
    return str(pctest.env_path("PC_UPLOADER"))


def make_host(base, gw, node, **keys):
    """A store, a configuration for the handler and the uploader, and credentials."""
    base = pathlib.Path(base)
    base.mkdir(parents=True, exist_ok=True)
    store = pctest.make_store(base)
    creds = radosgw.write_credentials(base / "credentials")
    keys.setdefault("upload_privileged_cores", "yes")
    keys.setdefault("upload_endpoint", gw.endpoint)
    config = pctest.write_config(base / "c.conf", store, upload_url=f"s3://{gw.bucket}/{PREFIX}",
                                 upload_credentials=creds,
                                 upload_node=node, upload_state_dir=base / "state", **keys)
    return store, config


def crash(config, store, host, exe="/usr/bin/worker", core=None, signo=11):
    core = core if core is not None else corefixture.elf_core(signo=signo)
    before = set(store.glob("*/*/*.json"))
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(config), "-d1", "--", host,
                    str(signo), exe.replace("/", "!")], input=core, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    new = set(store.glob("*/*/*.json")) - before
    assert len(new) == 1
    return new.pop(), core


def run_once(config, **kw):
    return subprocess.run([uploader_bin(), "--config", str(config), "--once"], capture_output=True,
                          text=True, timeout=kw.get("timeout", 300))


def state_of(config_dir, crash_id):
    return json.loads((pathlib.Path(config_dir) / "state" / f"{crash_id}.json").read_text())


def remote_key(node, record_path, suffix):
    exe_dir = record_path.parent
    crash_id = record_path.name[:-len(".json")]
    return f"{PREFIX}/{node}/{exe_dir.parent.name}/{exe_dir.name}/{crash_id}{suffix}"


def test_two_hosts_records_and_cores(tmp_path, gateway):
    hosts = {}
    for node, host in (("node-a", "web-2"), ("node-b", "worker-7")):
        store, config = make_host(tmp_path / node, gateway, node)
        record, core = crash(config, store, host)
        hosts[node] = (store, config, record, core)
    for node, (store, config, record, core) in hosts.items():
        r = run_once(config)
        assert r.returncode == 0, r.stderr
        rec_key = remote_key(node, record, ".json")
        core_key = remote_key(node, record, ".core.zst")
        headers, body = gateway.get(rec_key)
        assert body == record.read_bytes()
        doc = json.loads(body)
        assert headers["x-amz-meta-signal"] == "SEGV"
        assert headers["x-amz-meta-host"] == doc["hostname"]
        _, core_body = gateway.get(core_key)
        local_core = record.with_name(record.name[:-len(".json")] + ".core.zst")
        assert core_body == local_core.read_bytes()
        assert subprocess.run(["zstd", "-dc"], input=core_body, capture_output=True,
                              check=True).stdout == core
        crash_id = doc["id"]
        st = state_of(config.parent, crash_id)
        assert st["record_done"] and st["core"] == "done" and st["attempts"] == 1
        day = doc["time"][:10]
        _, index = gateway.get(f"{PREFIX}/.index/{node}/{day}.jsonl")
        lines = [json.loads(line) for line in index.decode().splitlines()]
        assert [line["id"] for line in lines] == [crash_id]
        assert lines[0]["core"] == core_key
        # A second run has nothing left to do and sends nothing.
        r = run_once(config)
        assert r.returncode == 0 and "Uploaded crash" not in r.stderr
    keys = gateway.keys(PREFIX + "/node-")
    assert len(keys) == 4


def test_privileged_cores_stay_home(tmp_path, gateway):
    store, config = make_host(tmp_path / "h", gateway, "node-p", upload_privileged_cores="no")
    record, _ = crash(config, store, "box")
    doc = json.loads(record.read_text())
    assert doc["core"]["access"] == "root"
    assert run_once(config).returncode == 0
    assert gateway.keys(PREFIX + "/node-p/") == [remote_key("node-p", record, ".json")]
    assert state_of(config.parent, doc["id"])["core"] == "skipped"


def test_first_n_cores_per_signature_across_the_fleet(tmp_path, gateway):
    """upload_cores = first:2: the first two cores of a signature go up, from whichever hosts;
    every record goes up; each uploaded core leaves a marker the other hosts count; a new
    signature starts again."""
    a_store, a_config = make_host(tmp_path / "a", gateway, "node-a", upload_cores="first:2")
    b_store, b_config = make_host(tmp_path / "b", gateway, "node-b", upload_cores="first:2")
    same = corefixture.elf_core()
    a_records = [crash(a_config, a_store, "web", core=same)[0] for _ in range(3)]
    b_same, _ = crash(b_config, b_store, "web", core=same)
    b_other, _ = crash(b_config, b_store, "web", signo=6)  # another signal, another signature
    signature = lambda r: json.loads(r.read_text())["crash"]["signature"]
    sig, other_sig = signature(a_records[0]), signature(b_other)
    assert sig and other_sig and other_sig != sig and signature(b_same) == sig
    assert run_once(a_config).returncode == 0
    assert run_once(b_config).returncode == 0  # node-a went first: its markers count here
    keys = set(gateway.keys(PREFIX + "/"))
    placed = [("node-a", tmp_path / "a", r) for r in a_records] + \
             [("node-b", tmp_path / "b", r) for r in (b_same, b_other)]
    core_state = {}
    for node, base, record in placed:
        assert remote_key(node, record, ".json") in keys  # every record goes up
        uploaded = remote_key(node, record, ".core.zst") in keys
        core_state[record] = state_of(base, json.loads(record.read_text())["id"])["core"]
        assert (core_state[record] == "done") == uploaded, (record, core_state[record])
    assert sorted(core_state[r] for r in a_records) == ["done", "done", "skipped"]
    assert core_state[b_same] == "skipped" and core_state[b_other] == "done"
    markers = gateway.keys(f"{PREFIX}/.signatures/{sig}/")
    assert len(markers) == 2 and all(k.rsplit("/", 1)[1].startswith("node-a-") for k in markers)
    assert len(gateway.keys(f"{PREFIX}/.signatures/{other_sig}/")) == 1


def test_group_files_go_up_when_they_change(tmp_path, gateway):
    store, config = make_host(tmp_path / "h", gateway, "node-g")
    crash(config, store, "box")
    counters = config.parent / "state" / ".counters.json"

    def corectl(*args):
        r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r

    def uploaded_groups():
        r = run_once(config)
        assert r.returncode == 0, r.stderr
        return json.loads(counters.read_text()).get("groups/ok", 0), r

    # No group files yet: nothing of them goes up.
    assert uploaded_groups()[0] == 0
    assert gateway.keys(f"{PREFIX}/.groups/") == []
    group = json.loads(corectl("groups", "--json").stdout)["group"]
    corectl("resolve", group, "--in", "worker=2.0-1")
    assert uploaded_groups()[0] == 1
    _, body = gateway.get(f"{PREFIX}/.groups/node-g/resolved.json")
    assert json.loads(body)["marks"][0]["version"] == "2.0-1"
    # Unchanged: not sent again; changed: sent again.
    assert uploaded_groups()[0] == 1
    corectl("unresolve", group)
    assert uploaded_groups()[0] == 2
    _, body = gateway.get(f"{PREFIX}/.groups/node-g/resolved.json")
    assert json.loads(body)["marks"] == []
    # A seen-set the store's owner broke is not uploaded (the last good one stays).
    (store / ".groups" / "seen.json").write_text("{garbage")
    n, r = uploaded_groups()
    assert n == 2 and "Not uploading the store's seen.json" in r.stderr, r.stderr
    assert gateway.keys(f"{PREFIX}/.groups/") == [f"{PREFIX}/.groups/node-g/resolved.json"]


def connections_to(pid, port):
    """How many established TCP connections process `pid` holds to local port `port`."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port and inode in inodes:
                count += 1
    return count


@pytest.mark.parametrize("connections", [1, 4])
def test_a_large_core_goes_up_over_its_connections(tmp_path, gateway, connections):
    """upload_connections parts of a multipart upload are in flight at once, each over a
    connection of its own (and with 1, never more than one); the object is the stored file."""
    store, config = make_host(tmp_path / "h", gateway, "node-p", upload_max_rate="16M",
                              upload_connections=str(connections))
    record, _ = crash(config, store, "big", core=corefixture.random_core(64 << 20))
    proc = subprocess.Popen([uploader_bin(), "--config", str(config), "--once"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    most = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            most = max(most, connections_to(proc.pid, gateway.port))
        time.sleep(0.02)
    assert proc.returncode == 0, proc.stderr.read()
    assert most == connections
    core_key = remote_key("node-p", record, ".core.zst")
    headers, body = gateway.get(core_key)
    local = record.with_name(record.name[:-len(".json")] + ".core.zst").read_bytes()
    assert body == local
    assert headers["ETag"].strip('"').endswith(f"-{-(-len(local) // (8 << 20))}")
    assert gateway.multipart_uploads() == 0


def test_the_rate_limit_holds_for_all_connections_together(tmp_path, gateway):
    """upload_max_rate bounds the upload, not each connection: three parts in flight at once
    together take at least the time the limit allows for the whole core."""
    rate = 4 << 20
    store, config = make_host(tmp_path / "h", gateway, "node-l", upload_max_rate=str(rate),
                              upload_connections="4")
    record, _ = crash(config, store, "big", core=corefixture.random_core(24 << 20))
    size = record.with_name(record.name[:-len(".json")] + ".core.zst").stat().st_size
    assert size > 16 << 20  # three parts, all in flight
    start = time.monotonic()
    r = run_once(config)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert remote_key("node-l", record, ".core.zst") in gateway.keys(PREFIX + "/")
    # A lower bound only (a limit never makes an upload faster); each connection at the whole
    # rate would take a third of it.
    assert elapsed >= 0.8 * size / rate, (elapsed, size / rate)


def test_gateway_lost_mid_multipart(tmp_path, gateway):
    store, config = make_host(tmp_path / "h", gateway, "node-m", upload_max_rate="16M")
    record, core = crash(config, store, "big", core=corefixture.random_core(64 << 20))
    proc = subprocess.Popen([uploader_bin(), "--config", str(config), "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pctest.wait_until(lambda: gateway.multipart_uploads() > 0, timeout=60,
                      what="a multipart upload in progress")
    time.sleep(1)
    gateway.restart_fresh()  # everything it held is gone, the record too
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert "Failed to upload crash" in err
    crash_id = json.loads(record.read_text())["id"]
    assert state_of(config.parent, crash_id)["core"] == "pending"
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    st = state_of(config.parent, crash_id)
    assert st["attempts"] >= 2 and st["core"] == "done"
    core_key = remote_key("node-m", record, ".core.zst")
    assert sorted(gateway.keys(PREFIX + "/node-m/")) == sorted(
        [remote_key("node-m", record, ".json"), core_key])
    headers, body = gateway.get(core_key)
    local = record.with_name(record.name[:-len(".json")] + ".core.zst").read_bytes()
    assert hashlib.sha256(body).digest() == hashlib.sha256(local).digest()
    assert headers["ETag"].strip('"').endswith(f"-{-(-len(local) // (8 << 20))}")
    assert gateway.multipart_uploads() == 0


def test_a_failed_part_aborts_the_upload_through_the_proxy(tmp_path, gateway):
    """Through upload_proxy (a forward proxy that sees every request): a part the gateway
    fails ends the upload, which is aborted (no incomplete upload left to hold its parts), and
    the next sweep sends the whole core again."""
    with s3proxy.S3Proxy() as proxy:
        store, config = make_host(tmp_path / "h", gateway, "node-x", upload_proxy=proxy.url,
                                  upload_connections="1")
        record, _ = crash(config, store, "big", core=corefixture.random_core(24 << 20))
        local = record.with_name(record.name[:-len(".json")] + ".core.zst").read_bytes()
        assert len(local) > 16 << 20  # three parts
        proxy.fail_part = 2
        r = run_once(config)
        assert r.returncode == 3, r.stderr
        assert "InternalError" in r.stderr, r.stderr
        core_key = remote_key("node-x", record, ".core.zst")
        # Every request went through the proxy: the record, the parts, the abort.
        assert ("PUT", "/" + gateway.bucket + "/" + remote_key("node-x", record, ".json")) in \
            proxy.requests
        aborts = [p for m, p in proxy.requests if m == "DELETE" and "uploadId=" in p]
        assert len(aborts) == 1 and aborts[0].startswith(f"/{gateway.bucket}/{core_key}?"), \
            proxy.requests
        assert gateway.multipart_uploads() == 0
        assert core_key not in gateway.keys(PREFIX + "/")
        crash_id = json.loads(record.read_text())["id"]
        st = state_of(config.parent, crash_id)
        assert st["record_done"] and st["core"] == "pending" and "InternalError" in st["last_error"]
        r = run_once(config)
        assert r.returncode == 0, r.stderr
        _, body = gateway.get(core_key)
        assert body == local
        assert state_of(config.parent, crash_id)["core"] == "done"


def test_a_200_without_the_object_is_a_failure(tmp_path, gateway):
    """After the upload, HEAD must show the object with our size and ETag: a gateway that
    answered 200 but holds something else (here, a proxy that changes HEAD's ETag) fails the
    crash's core, which stays pending, and the next sweep sends it again."""
    with s3proxy.S3Proxy() as proxy:
        store, config = make_host(tmp_path / "h", gateway, "node-e", upload_proxy=proxy.url)
        record, _ = crash(config, store, "web")
        proxy.wrong_head_etag = ".core.zst"
        r = run_once(config)
        assert r.returncode == 3, r.stderr
        assert "but the server holds" in r.stderr and "00000000000000000000000000000000-1" in \
            r.stderr, r.stderr
        crash_id = json.loads(record.read_text())["id"]
        st = state_of(config.parent, crash_id)
        assert st["record_done"] and st["core"] == "pending"
        counters = json.loads((tmp_path / "h" / "state" / ".counters.json").read_text())
        assert counters["core/failed"] == 1 and counters.get("core/ok", 0) == 0
        proxy.wrong_head_etag = None
        r = run_once(config)
        assert r.returncode == 0, r.stderr
        assert state_of(config.parent, crash_id)["core"] == "done"


def test_uploader_killed_mid_upload(tmp_path, gateway):
    store, config = make_host(tmp_path / "h", gateway, "node-k", upload_max_rate="16M")
    record, _ = crash(config, store, "big", core=corefixture.random_core(64 << 20))
    proc = subprocess.Popen([uploader_bin(), "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        pctest.wait_until(lambda: gateway.multipart_uploads() > 0, timeout=60,
                          what="a multipart upload in progress")
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    crash_id = json.loads(record.read_text())["id"]
    st = state_of(config.parent, crash_id)
    assert st["attempts"] >= 2 and st["core"] == "done"
    core_key = remote_key("node-k", record, ".core.zst")
    assert len([k for k in gateway.keys(PREFIX + "/node-k/") if k == core_key]) == 1
    _, body = gateway.get(core_key)
    assert body == record.with_name(record.name[:-len(".json")] + ".core.zst").read_bytes()


def test_virtual_hosted_requests_are_signed_as_the_gateway_checks(tmp_path, gateway):
    """upload_addressing = virtual: BUCKET.localhost (libcurl resolves *.localhost to loopback,
    the gateway's `rgw dns name` is localhost), the bucket in the Host header and not in the
    path. The gateway checks every signature: a wrong secret is refused the same way, and with
    the right one the record and core go up, a multipart core too, and corectl reads them back."""
    port = gateway.endpoint.rsplit(":", 1)[1]
    store, config = make_host(tmp_path / "h", gateway, "node-v", upload_addressing="virtual",
                              upload_endpoint=f"http://localhost:{port}")
    creds = tmp_path / "h" / "credentials"
    radosgw.write_credentials(creds, secret="not-the-secret-at-all")
    record, _ = crash(config, store, "web")
    big, _ = crash(config, store, "big", core=corefixture.random_core(20 << 20))
    r = run_once(config)
    assert r.returncode == 3 and "SignatureDoesNotMatch" in r.stderr, r.stderr
    radosgw.write_credentials(creds)
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    # The gateway's access log: the bucket was in the Host header, never in a path.
    log = (gateway.work / "log" / "client.rgw.log").read_text(errors="replace")
    assert '"PUT /fleet/node-v/' in log and f'"PUT /{gateway.bucket}/' not in log
    for rec in (record, big):
        _, body = gateway.get(remote_key("node-v", rec, ".core.zst"))
        assert body == rec.with_name(rec.name[:-len(".json")] + ".core.zst").read_bytes()
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--no-pager", "--config", str(config),
                        "--remote", f"s3://{gateway.bucket}/{PREFIX}", "list", "--no-legend"],
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and "big" in r.stdout and "web" in r.stdout, r.stdout


def with_runtime_report(record, text, access):
    """Gives a record the runtime's report the handler keeps beside it, and a core access."""
    report = record.with_name(record.name[:-len(".json")] + ".report")
    report.write_bytes(text)
    data = json.loads(record.read_text())
    data["runtime_report"] = {"runtime": "ruby", "path": "stderr", "size": len(text),
                              "stored": f"{record.parent.parent.name}/{record.parent.name}/"
                                        f"{report.name}", "truncated": False}
    data["core"]["access"] = access
    record.write_text(json.dumps(data))


def test_runtime_reports_go_up_with_their_records(tmp_path, gateway):
    """The runtime's own report goes up before its record, as private as the core: a
    privileged process's stays home without upload_privileged_cores, whatever upload_cores says.
    corectl --remote info shows it as info does on the host."""
    store, config = make_host(tmp_path / "h", gateway, "node-r", upload_privileged_cores="no",
                              upload_cores="never")
    mine, _ = crash(config, store, "web")
    privileged, _ = crash(config, store, "db")
    report = b"[BUG] Segmentation fault at 0x0000000000000000\nruby 3.1.2p20\n\x1b[31mred\n"
    with_runtime_report(mine, report, "owner")
    with_runtime_report(privileged, b"secret heap words\n", "root")
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    _, body = gateway.get(remote_key("node-r", mine, ".report"))
    assert body == report
    assert remote_key("node-r", privileged, ".report") not in gateway.keys(PREFIX + "/")
    counters = json.loads((tmp_path / "h" / "state" / ".counters.json").read_text())
    assert counters["report/ok"] == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    remote = [str(pctest.env_path("PC_CORECTL")), "--no-pager", "--config", str(config),
              "--remote", f"s3://{gateway.bucket}/{PREFIX}", "info"]
    r = subprocess.run([*remote, json.loads(mine.read_text())["id"]], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "  [BUG] Segmentation fault at 0x0000000000000000\n  ruby 3.1.2p20\n" in r.stdout
    assert "\x1b" not in r.stdout  # escaped, as every byte from the bucket
    r = subprocess.run([*remote, json.loads(privileged.read_text())["id"]], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "not in the bucket: a privileged process's stays on its host" in r.stdout, r.stdout
    assert "secret heap words" not in r.stdout


def test_a_planted_report_is_not_sent_and_holds_no_record_back(tmp_path, gateway):
    """What the store holds beside a record is its owner's to plant: a link to a file only root
    may read, a FIFO that would stall a reader, a file larger than the handler ever keeps. None
    goes up, each is warned about and counted, and every record still goes up in the one run."""
    store, config = make_host(tmp_path / "h", gateway, "node-p", upload_cores="never")
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n")
    secret.chmod(0o600)
    planted = {}
    for host in ("link", "fifo", "large"):
        record, _ = crash(config, store, host)
        with_runtime_report(record, b"placeholder\n", "owner")
        report = record.with_name(record.name[:-len(".json")] + ".report")
        report.unlink()
        if host == "link":
            report.symlink_to(secret)
        elif host == "fifo":
            os.mkfifo(report)
        else:
            report.write_bytes(b"x" * ((256 << 10) + 1))
        planted[host] = record
    r = run_once(config, timeout=120)
    assert r.returncode == 0, r.stderr
    keys = gateway.keys(PREFIX + "/")
    for host, record in planted.items():
        assert remote_key("node-p", record, ".json") in keys, host
        assert remote_key("node-p", record, ".report") not in keys, host
    assert "a symbolic link, not followed" in r.stderr, r.stderr
    assert "not a regular file" in r.stderr, r.stderr
    assert "larger than the 262144 the handler keeps" in r.stderr, r.stderr
    counters = json.loads((tmp_path / "h" / "state" / ".counters.json").read_text())
    assert counters["report/failed"] == 3 and counters.get("report/ok", 0) == 0
    assert counters["record/ok"] == 3
    # Nothing is retried: the next sweep finds nothing left to do.
    r = run_once(config, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Not uploading" not in r.stderr, r.stderr


def test_wrong_secret_then_fixed(tmp_path, gateway):
    store, config = make_host(tmp_path / "h", gateway, "node-w")
    creds = tmp_path / "h" / "credentials"
    radosgw.write_credentials(creds, secret="not-the-secret-at-all")
    record, _ = crash(config, store, "web")
    r = run_once(config)
    assert r.returncode == 3
    assert "SignatureDoesNotMatch" in r.stderr and "check the access key and secret" in r.stderr
    assert "not-the-secret-at-all" not in r.stderr
    counters = json.loads((tmp_path / "h" / "state" / ".counters.json").read_text())
    assert counters["record/failed"] >= 1
    crash_id = json.loads(record.read_text())["id"]
    st = state_of(config.parent, crash_id)
    assert not st["record_done"] and "SignatureDoesNotMatch" in st["last_error"]
    assert gateway.keys(PREFIX + "/node-w/") == []
    status = json.loads((tmp_path / "h" / "state" / ".status.json").read_text())
    assert status["backlog"] == 1 and status["oldest_pending"] > 0
    radosgw.write_credentials(creds)
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    assert len(gateway.keys(PREFIX + "/node-w/")) == 2
    counters = json.loads((tmp_path / "h" / "state" / ".counters.json").read_text())
    assert counters["record/ok"] == 1 and counters["core/ok"] == 1
    status = json.loads((tmp_path / "h" / "state" / ".status.json").read_text())
    assert status["backlog"] == 0


def test_the_exporter_serves_the_uploaders_state(tmp_path, gateway):
    """The exporter, given the same configuration, serves what the uploader's state says: the
    failures, the backlog and its age while the secret is wrong, then the uploads."""
    store, config = make_host(tmp_path / "h", gateway, "node-q")
    creds = tmp_path / "h" / "credentials"
    radosgw.write_credentials(creds, secret="not-the-secret-at-all")
    crash(config, store, "web")
    assert run_once(config).returncode == 3
    with pcexporter.Exporter(store, config, tmp_path) as exporter:
        m = exporter.scrape()
        assert pcexporter.value(m, "processcore_uploads_total", kind="record", result="failed") >= 1
        assert pcexporter.value(m, "processcore_uploads_total", kind="record", result="ok") == 0
        assert pcexporter.value(m, "processcore_upload_backlog") == 1
        assert pcexporter.value(m, "processcore_upload_oldest_pending_seconds") >= 0
        swept = pcexporter.value(m, "processcore_upload_last_sweep_timestamp_seconds")
        assert abs(swept - time.time()) < 300, swept
        radosgw.write_credentials(creds)
        assert run_once(config).returncode == 0
        m = exporter.scrape()  # read at each scrape: no restart
        assert pcexporter.value(m, "processcore_uploads_total", kind="record", result="ok") == 1
        assert pcexporter.value(m, "processcore_uploads_total", kind="core", result="ok") == 1
        assert pcexporter.value(m, "processcore_upload_backlog") == 0
        assert pcexporter.value(m, "processcore_upload_oldest_pending_seconds") == 0


def test_credentials_readable_by_others_are_refused(tmp_path, gateway):
    store, config = make_host(tmp_path / "h", gateway, "node-c")
    os.chmod(tmp_path / "h" / "credentials", 0o644)
    crash(config, store, "web")
    r = run_once(config)
    assert r.returncode == 1
    assert "Refusing credentials" in r.stderr
    assert gateway.keys(PREFIX + "/") == []


def test_service_uploads_new_crashes(tmp_path, gateway):
    """The service's sweep at start, then inotify: a crash recorded while it runs goes up."""
    store, config = make_host(tmp_path / "h", gateway, "node-s")
    first, _ = crash(config, store, "web")
    proc = subprocess.Popen([uploader_bin(), "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        pctest.wait_until(lambda: remote_key("node-s", first, ".core.zst") in gateway.keys(PREFIX),
                          timeout=30, what="the first crash uploaded")
        second, _ = crash(config, store, "db", exe="/usr/sbin/db")
        pctest.wait_until(lambda: remote_key("node-s", second, ".core.zst") in gateway.keys(PREFIX),
                          timeout=30, what="the second crash uploaded")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_tls_with_a_ca_file(tmp_path):
    """The gateway on HTTPS with its own CA: verified with upload_ca_file, refused without."""
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
                   check=True, capture_output=True)
    (tls / "both.pem").write_bytes((tls / "key.pem").read_bytes() + (tls / "cert.pem").read_bytes())
    gw = radosgw.Radosgw(tmp_path / "ceph", ssl_cert=tls / "both.pem")
    import ssl
    ctx = ssl.create_default_context(cafile=str(tls / "cert.pem"))
    original = gw.request
    gw.request = lambda *a, **k: original(*a, **{**k, "context": ctx})
    gw.start()
    try:
        store, config = make_host(tmp_path / "h", gw, "node-t")
        crash(config, store, "web")
        r = run_once(config)
        assert r.returncode == 3
        assert "certificate" in r.stderr.lower()
        assert gw.keys(PREFIX + "/") == []
        with open(config, "a") as f:
            f.write(f"upload_ca_file = {tls / 'cert.pem'}\n")
        r = run_once(config)
        assert r.returncode == 0, r.stderr
        assert len(gw.keys(PREFIX + "/node-t/")) == 2
    finally:
        gw.stop()


def test_a_core_removed_before_upload_still_sends_its_record(tmp_path, gateway):
    """Retention removes the uploaded core first and, forced by the quota, the ones still to
    upload; their records say so and the uploader sends them, without a core: a record never
    sent, and one sent while its core was still to go (sent again, now saying so)."""
    store, config = make_host(tmp_path / "h", gateway, "node-r")
    sent, _ = crash(config, store, "box", exe="/usr/bin/first")
    half, _ = crash(config, store, "box", exe="/usr/bin/second")
    assert run_once(config).returncode == 0
    half_id = json.loads(half.read_text())["id"]
    assert state_of(config.parent, half_id)["core"] == "done"
    # As if the core's upload had failed after the record's: record sent, core still pending.
    state_file = config.parent / "state" / f"{half_id}.json"
    state_file.write_text(json.dumps({**state_of(config.parent, half_id), "core": "pending"}))
    waiting, _ = crash(config, store, "box", exe="/usr/bin/third")  # not uploaded at all
    pending = {json.loads(p.read_text())["id"]: p for p in (half, waiting)}

    def allocated(p):
        return p.stat().st_blocks * 512

    def core_of(record):
        return record.with_name(record.name[:-len(".json")] + ".core.zst")

    # Room for the records alone: every core must go, the uploaded one first.
    limit = sum(allocated(p) for p in store.glob("*/*/*.json"))
    config.write_text(config.read_text() + f"keep_free = 0\nmax_use = {limit}\n")
    r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(config), "vacuum"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert r.returncode == 0, r.stdout + r.stderr
    removed = [l for l in r.stdout.splitlines() if l.startswith("Removing core")]
    assert len(removed) == 3, r.stdout
    assert removed[0].split()[2] == json.loads(sent.read_text())["id"]
    assert "before it was uploaded" not in removed[0]
    assert {l.split()[2] for l in removed[1:]} == set(pending), r.stdout
    assert all(l.endswith("(before it was uploaded)") for l in removed[1:]), r.stdout
    assert not any(core_of(p).exists() for p in (sent, half, waiting))
    assert "removed_before_upload" not in json.loads(sent.read_text())["core"]
    for record in pending.values():
        doc = json.loads(record.read_text())
        assert doc["core"]["removed"] and doc["core"]["removed_before_upload"] is True

    r = run_once(config)
    assert r.returncode == 0, r.stderr
    keys = gateway.keys(PREFIX + "/node-r/")
    for crash_id, record in pending.items():
        _, body = gateway.get(remote_key("node-r", record, ".json"))
        assert json.loads(body)["core"]["removed_before_upload"] is True, crash_id
        assert state_of(config.parent, crash_id)["core"] == "none"
    assert remote_key("node-r", waiting, ".core.zst") not in keys
