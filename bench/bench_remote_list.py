#!/usr/bin/env python3
"""corectl --remote list over a bucket of N crashes against `s3cmd ls --recursive` of the same
prefix, on one local Ceph RADOS Gateway (tests/lib/radosgw.py), paired run by run.

usage: bench/bench_remote_list.py [BUILD_DIR] [N] [RUNS]      (defaults: build, 10000, 7)

The bucket: the N records of gen_corectl_store.py under PREFIX/<node>/<host>/<exe>/<id>.json, 10
nodes, and each node's index objects per day as process-core-uploader writes them (no cores:
s3cmd lists the N records and the index objects). Needs Debian's ceph-mon, ceph-osd, radosgw
and s3cmd (installed with apt-get when missing and we are root).
"""
import concurrent.futures
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "lib"))
import radosgw  # noqa: E402

PREFIX = "fleet"


def index_line(rec, node, host, exe):
    base = f"{PREFIX}/{node}/{host}/{exe}/{rec['id']}"
    core = rec["core"]
    crash = rec.get("crash", {})
    return {
        "id": rec["id"], "time": rec["time"], "node": node, "host": host, "exe": exe,
        "hostname": rec["hostname"], "executable": rec["executable"],
        "signal": rec["signal_name"], "signature": crash.get("signature", ""),
        "record": base + ".json", "core": base + ".core.zst" if core["present"] else "",
        "core_size": core["stored_size"], "signo": rec["signal"], "pid": rec["pid"],
        "uid": rec["uid"], "comm": rec["comm"], "executable_deleted": False,
        "core_present": core["present"], "core_reason": core["reason"], "core_removed": False,
        "core_dump_size": core["size"], "site": crash.get("symbol", "")}


def fill(gw, store):
    records = sorted(store.glob("*/*/*.json"))
    index = {}
    uploads = []
    for path in records:
        rec = json.loads(path.read_text())
        host, exe = path.parent.parent.name, path.parent.name
        node = f"node-{sum(host.encode()) % 10}"
        uploads.append((f"{PREFIX}/{node}/{host}/{exe}/{path.name}", path.read_bytes()))
        index.setdefault((node, rec["time"][:10]), []).append(
            json.dumps(index_line(rec, node, host, exe)))
    for (node, day), lines in index.items():
        uploads.append((f"{PREFIX}/.index/{node}/{day}.jsonl", ("\n".join(lines) + "\n").encode()))

    def put(item):
        status, _, body = gw.request("PUT", item[0], body=item[1])
        assert status == 200, body

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, uploads))
    return len(records), len(index)


def timed(argv, env):
    start = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed: {r.stderr.decode(errors='replace')}")
    return elapsed, r.stdout


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "build")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    if radosgw.available() is not None:
        sys.exit(f"no Ceph: {radosgw.available()}")
    if shutil.which("s3cmd") is None:
        if os.geteuid() != 0:
            sys.exit("s3cmd is missing (apt-get install s3cmd)")
        subprocess.run(["apt-get", "install", "-y", "-q", "s3cmd"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="pc-bench-remote.") as work:
        work = pathlib.Path(work)
        subprocess.run([sys.executable, str(HERE / "gen_corectl_store.py"), str(work / "store"),
                        str(n)], check=True)
        gw = radosgw.Radosgw(work / "ceph")
        gw.start()
        try:
            t = time.monotonic()
            records, days = fill(gw, work / "store")
            print(f"bucket: {records} records, {days} index objects "
                  f"({time.monotonic() - t:.1f} s to fill)")
            creds = radosgw.write_credentials(work / "credentials")
            conf = work / "remote.conf"
            conf.write_text(f"upload_endpoint = {gw.endpoint}\nupload_credentials = {creds}\n")
            s3cfg = work / "s3cfg"
            hostport = gw.endpoint.split("//", 1)[1]
            s3cfg.write_text(
                f"[default]\naccess_key = {radosgw.ACCESS_KEY}\nsecret_key = {radosgw.SECRET_KEY}\n"
                f"host_base = {hostport}\nhost_bucket = {hostport}\nuse_https = False\n"
                "signature_v2 = False\nbucket_location = us-east-1\n")
            env = dict(os.environ, TZ="UTC", XDG_CACHE_HOME=str(work / "cache"))
            ours = [str(build / "cli" / "corectl"), "--config", str(conf), "--remote",
                    f"s3://{gw.bucket}/{PREFIX}", "list", "--no-pager"]
            theirs = ["s3cmd", "-c", str(s3cfg), "ls", "--recursive", f"s3://{gw.bucket}/{PREFIX}/"]
            # Both must see every crash: the bench measures complete answers only.
            _, out = timed(ours, env)
            assert len(out.splitlines()) == records + 1, "corectl did not list every crash"
            _, out = timed(theirs, env)
            assert len(out.splitlines()) == records + days, "s3cmd did not list every key"
            a, b, ratios = [], [], []
            for _ in range(runs):  # paired, in turn: a drifting machine moves both
                ta, _ = timed(ours, env)
                tb, _ = timed(theirs, env)
                a.append(ta)
                b.append(tb)
                ratios.append(ta / tb)
            print(f"nproc: {os.cpu_count()}, {runs} paired runs, wall seconds min/median/max")
            print(f"corectl --remote list   {min(a):.3f} {statistics.median(a):.3f} {max(a):.3f}")
            print(f"s3cmd ls --recursive    {min(b):.3f} {statistics.median(b):.3f} {max(b):.3f}")
            print(f"ratio (pair by pair)    {min(ratios):.2f} {statistics.median(ratios):.2f} "
                  f"{max(ratios):.2f}")
        finally:
            gw.stop()


if __name__ == "__main__":
    main()
