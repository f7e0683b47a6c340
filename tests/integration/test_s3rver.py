"""process-core-uploader and corectl --remote against s3rver, a second S3 implementation beside
the RADOS Gateway (tests/lib/s3rver.py): path-style and virtual-hosted-style addressing, a small
and a multipart core byte-identical in the bucket, list, info and dump of the bucket, and a wrong
secret or an unknown key reported with the error code of s3rver's own error body."""
import json
import os
import pathlib
import re
import subprocess

import pytest

import corefixture
import pctest
import radosgw
import s3rver

PREFIX = "fleet"


@pytest.fixture(scope="module")
def package():
    root, why = s3rver.install()
    if root is None:
        pytest.skip(f"s3rver {s3rver.VERSION}: {why}")
    return root


@pytest.fixture(params=["path", "virtual"])
def server(request, package, tmp_path):
    # s3rver checks no signature of a virtual-hosted request correctly (s3rver.S3rver): its
    # signatures are checked on the path-style runs, the addressing on the virtual-hosted ones;
    # the RADOS Gateway checks virtual-hosted signatures (integration_uploader).
    srv = s3rver.S3rver(tmp_path / "s3rver", verify_signatures=request.param == "path")
    srv.start(package)
    srv.addressing = request.param
    srv.client_endpoint = srv.endpoint if request.param == "path" else srv.virtual_endpoint
    yield srv
    srv.stop()


def make_host(base, srv, node, creds=None):
    base = pathlib.Path(base)
    base.mkdir(parents=True, exist_ok=True)
    store = pctest.make_store(base)
    creds = creds or radosgw.write_credentials(base / "credentials")
    config = pctest.write_config(base / "c.conf", store, upload_url=f"s3://{srv.bucket}/{PREFIX}",
                                 upload_endpoint=srv.client_endpoint, upload_credentials=creds,
                                 upload_addressing=srv.addressing, upload_node=node,
                                 upload_state_dir=base / "state", upload_privileged_cores="yes")
    return store, config


def crash(config, store, host, exe, core):
    before = set(store.glob("*/*/*.json"))
    subprocess.run([str(pctest.env_path("PC_HANDLER")), "--config", str(config), "-d1", "--", host,
                    "11", exe.replace("/", "!")], input=core, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    new = set(store.glob("*/*/*.json")) - before
    assert len(new) == 1
    return new.pop()


def run_once(config):
    return subprocess.run([str(pctest.env_path("PC_UPLOADER")), "--config", str(config), "--once"],
                          capture_output=True, text=True, timeout=300)


def corectl(*args, text=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(TZ="UTC", NO_COLOR="", XDG_CACHE_HOME="/nonexistent")
    return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--no-pager", *args],
                          capture_output=True, text=text, env=env, timeout=120)


def remote_key(node, record, suffix):
    return (f"{PREFIX}/{node}/{record.parent.parent.name}/{record.parent.name}/"
            f"{record.name[:-len('.json')]}{suffix}")


def test_uploaded_and_read_back(tmp_path, server):
    node = f"node-{server.addressing}"
    store, config = make_host(tmp_path / "h", server, node)
    small = corefixture.elf_core()
    big = corefixture.random_core(12 << 20)
    records = {crash(config, store, "web-2", "/usr/bin/worker", small): small,
               crash(config, store, "web-2", "/usr/bin/loader", big): big}
    r = run_once(config)
    assert r.returncode == 0, r.stderr
    sent = server.requests()
    for record, core in records.items():
        _, body = server.get(remote_key(node, record, ".json"))
        assert body == record.read_bytes()
        local_core = record.with_name(record.name[:-len(".json")] + ".core.zst")
        _, core_body = server.get(remote_key(node, record, ".core.zst"))
        assert core_body == local_core.read_bytes()
    # The large core went up in parts (8 MiB each): s3rver gives the whole object's MD5 as its
    # ETag, not the multipart ETag, and the upload's check takes either.
    big_record = next(rec for rec, core in records.items() if core is big)
    big_stored = big_record.with_name(big_record.name[:-len(".json")] + ".core.zst")
    assert big_stored.stat().st_size > 8 << 20
    assert any(method == "POST" and "uploads" in url for method, _, url in sent)
    # Each request went as configured: the bucket in the path, or in the Host header.
    if server.addressing == "path":
        assert all(host == f"127.0.0.1:{server.port}" and re.match(f"/{server.bucket}[/?]", url)
                   for _, host, url in sent), sent
    else:
        assert all(host == f"{server.bucket}.s3.localhost:{server.port}"
                   and not url.startswith(f"/{server.bucket}/") for _, host, url in sent), sent

    # corectl --remote: the bucket as a store.
    url = f"s3://{server.bucket}/{PREFIX}"
    remote = pctest.write_config(tmp_path / "remote.conf", tmp_path / "nostore",
                                 upload_endpoint=server.client_endpoint,
                                 upload_addressing=server.addressing,
                                 upload_credentials=tmp_path / "h" / "credentials")
    r = corectl("--config", str(remote), "--remote", url, "list", "--no-legend")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and "/usr/bin/loader" in r.stdout, r.stdout
    for record, core in records.items():
        crash_id = record.name[:-len(".json")]
        r = corectl("--config", str(remote), "--remote", url, "info", crash_id)
        assert r.returncode == 0, r.stderr
        assert crash_id in r.stdout and node in r.stdout, r.stdout
        out = tmp_path / f"{crash_id}.core"
        r = corectl("--config", str(remote), "--remote", url, "dump", crash_id, "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == core


def test_wrong_secret_names_the_servers_error(tmp_path, package):
    srv = s3rver.S3rver(tmp_path / "s3rver").start(package)
    try:
        srv.addressing, srv.client_endpoint = "path", srv.endpoint
        bad = radosgw.write_credentials(tmp_path / "bad", secret="not-the-secret-at-all")
        store, config = make_host(tmp_path / "h", srv, "node-w", creds=bad)
        crash(config, store, "web-2", "/usr/bin/worker", corefixture.elf_core())
        r = run_once(config)
        assert r.returncode != 0
        assert "SignatureDoesNotMatch" in r.stderr and "check the access key and secret" in r.stderr
        assert "not-the-secret-at-all" not in r.stderr
        assert srv.keys() == []
        url = f"s3://{srv.bucket}/{PREFIX}"
        r = corectl("--config", str(config), "--remote", url, "list")
        assert r.returncode == 4, r.stderr
        assert "SignatureDoesNotMatch" in r.stderr and "not-the-secret" not in r.stderr
        # A key s3rver does not know: its own code for that.
        unknown = radosgw.write_credentials(tmp_path / "unknown", access="PCTESTUNKNOWNKEY0001")
        config2 = pctest.write_config(tmp_path / "c2.conf", store, upload_endpoint=srv.endpoint,
                                      upload_credentials=unknown)
        r = corectl("--config", str(config2), "--remote", url, "list")
        assert r.returncode == 4, r.stderr
        assert "InvalidAccessKeyId" in r.stderr, r.stderr
        # The right key is let in, so the failures were the credentials: an empty bucket, as an
        # empty store.
        good = radosgw.write_credentials(tmp_path / "good")
        config3 = pctest.write_config(tmp_path / "c3.conf", store, upload_endpoint=srv.endpoint,
                                      upload_credentials=good)
        r = corectl("--config", str(config3), "--remote", url, "list")
        assert r.returncode == 1 and r.stderr == "No crashes found.\n", r.stderr
    finally:
        srv.stop()
