"""Crashes through the real kernel on two simulated hosts (UTS namespaces, two stores), uploaded
by process-core-uploader to a real Ceph RADOS Gateway: every record and core in the bucket, the
cores byte-identical after download and decompression, the metadata right; then corectl --remote
lists both hosts, groups their common crash and opens gdb on the other host's core, and on a
machine without the crashed executable takes it from debuginfod."""
import json
import shutil
import subprocess

import pytest

import debuginfod
import pctest
import radosgw

pytestmark = [
    pytest.mark.skipif(not pctest.can_set_core_pattern(), reason="needs root and core_pattern"),
    pytest.mark.skipif(radosgw.available() is not None, reason=f"Ceph: {radosgw.available()}"),
]


def test_two_hosts_through_the_kernel_into_one_bucket(tmp_path):
    gw = radosgw.Radosgw(tmp_path / "ceph").start()
    try:
        for node, host in (("node-a", "web-2"), ("node-b", "worker-7")):
            with pctest.kernel_rig("pcu-") as rig:
                creds = radosgw.write_credentials(rig.work / "credentials")
                config = rig.config("u", upload_url=f"s3://{gw.bucket}/fleet",
                                    upload_endpoint=gw.endpoint, upload_credentials=creds,
                                    upload_node=node, upload_state_dir=rig.work / "state",
                                    upload_privileged_cores="yes")
                argv = ["unshare", "--uts", "sh", "-c",
                        f'hostname {host} && exec "{pctest.env_path("PC_CRASHER")}" segv']
                proc = subprocess.run(argv, preexec_fn=pctest.allow_cores, capture_output=True)
                assert proc.returncode != 0
                record_path = pctest.wait_until(lambda: list(rig.store.glob("*/*/*.json")),
                                                timeout=60, what="the record")[0]
                r = json.loads(record_path.read_text())
                assert r["hostname"] == host
                up = subprocess.run([str(pctest.env_path("PC_UPLOADER")), "--config", str(config),
                                     "--once"], capture_output=True, text=True, timeout=120)
                assert up.returncode == 0, up.stderr
                base = f"fleet/{node}/{record_path.parent.parent.name}/{record_path.parent.name}/{r['id']}"
                headers, body = gw.get(base + ".json")
                assert body == record_path.read_bytes()
                assert headers["x-amz-meta-host"] == host
                assert headers["x-amz-meta-signal"] == "SEGV"
                assert headers["x-amz-meta-signature"] == r["crash"]["signature"]
                _, core = gw.get(base + ".core.zst")
                local = rig.store / r["core"]["path"]
                assert core == local.read_bytes()
                plain = subprocess.run(["zstd", "-dc"], input=core, capture_output=True,
                                       check=True).stdout
                assert plain == pctest.zstd_decompress(local)
                assert plain[:4] == b"\x7fELF" and len(plain) == r["core"]["size"]
        keys = gw.keys("fleet/node-")
        assert len(keys) == 4
        assert {k.split("/")[2] for k in keys} == {"web-2", "worker-7"}
        # The fleet from a third machine: this one, with a configuration of its own.
        conf = tmp_path / "remote.conf"
        conf.write_text(f"upload_endpoint = {gw.endpoint}\nupload_credentials = "
                        f"{radosgw.write_credentials(tmp_path / 'credentials')}\n")

        def corectl(*args):
            return subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(conf),
                                   "--remote", f"s3://{gw.bucket}/fleet", "--no-pager", *args],
                                  capture_output=True, text=True, timeout=120,
                                  env={"PATH": "/usr/bin:/bin", "TZ": "UTC",
                                       "TMPDIR": str(tmp_path)})
        listed = corectl("list", "--no-legend")
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 2
        assert "web-2" in listed.stdout and "worker-7" in listed.stdout
        groups = [json.loads(line) for line in corectl("groups", "--json").stdout.splitlines()]
        assert len(groups) == 1 and groups[0]["count"] == 2
        assert sorted(groups[0]["hosts"]) == ["web-2", "worker-7"]
        # gdb on worker-7's core, here: the crasher's executable is this machine's build.
        debug = corectl("debug", "--host", "worker-7", "-A", "-batch -ex bt")
        assert debug.returncode == 0, debug.stderr
        assert "Program terminated with signal SIGSEGV" in debug.stdout, debug.stdout
        assert "#0 " in debug.stdout
    finally:
        gw.stop()


@pytest.mark.skipif(shutil.which("debuginfod") is None or shutil.which("gdb") is None,
                    reason="needs debuginfod and gdb")
def test_remote_debug_takes_the_executable_from_debuginfod(tmp_path):
    """corectl --remote debug on a machine without the crashed executable: the core comes from
    the bucket, the executable from a debuginfod server by the recorded build-id, and gdb
    names the frames."""
    gw = radosgw.Radosgw(tmp_path / "ceph").start()
    try:
        with pctest.kernel_rig("pcd-") as rig:
            gone = rig.work / "pc-crasher-copy"
            shutil.copy2(pctest.env_path("PC_CRASHER"), gone)
            gone.chmod(0o755)
            config = rig.config("u", upload_url=f"s3://{gw.bucket}/fleet",
                                upload_endpoint=gw.endpoint,
                                upload_credentials=radosgw.write_credentials(rig.work / "cr"),
                                upload_node="node-d", upload_state_dir=rig.work / "state",
                                upload_privileged_cores="yes")
            proc = subprocess.run([str(gone), "segv"], preexec_fn=pctest.allow_cores,
                                  capture_output=True)
            assert proc.returncode != 0
            record = json.loads(pctest.wait_until(lambda: list(rig.store.glob("*/*/*.json")),
                                                  timeout=60, what="the record")[0].read_text())
            up = subprocess.run([str(pctest.env_path("PC_UPLOADER")), "--config", str(config),
                                 "--once"], capture_output=True, text=True, timeout=120)
            assert up.returncode == 0, up.stderr
            served = tmp_path / "served"
            served.mkdir()
            shutil.move(gone, served / gone.name)  # not on this machine any more
        build_id = next(m["build_id"] for m in record["mappings"] if m["path"] == str(gone))
        named = [f["symbol"]["name"] for f in record["crash"]["stacks"][0]["frames"]
                 if f.get("module") == str(gone) and f.get("symbol")]
        assert named, record["crash"]["stacks"][0]["frames"]
        conf = tmp_path / "remote.conf"
        conf.write_text(f"upload_endpoint = {gw.endpoint}\nupload_credentials = "
                        f"{radosgw.write_credentials(tmp_path / 'credentials')}\n")
        with debuginfod.serving(served, tmp_path, f"/buildid/{build_id}/executable") as url:
            r = subprocess.run([str(pctest.env_path("PC_CORECTL")), "--config", str(conf),
                                "--remote", f"s3://{gw.bucket}/fleet", "--no-pager", "debug",
                                record["id"], "-A", "-batch -ex bt"],
                               capture_output=True, text=True, timeout=300,
                               env={"PATH": "/usr/bin:/bin", "TZ": "UTC", "TMPDIR": str(tmp_path),
                                    "DEBUGINFOD_URLS": url, "NO_PROXY": "127.0.0.1",
                                    "DEBUGINFOD_CACHE_PATH": str(tmp_path / "cache")})
        assert r.returncode == 0, r.stderr
        assert f"from debuginfod (build-id {build_id})" in r.stderr, r.stderr
        assert named[0] in r.stdout, r.stdout  # gdb had the symbols of the served copy
    finally:
        gw.stop()

