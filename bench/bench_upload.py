#!/usr/bin/env python3
"""process-core-uploader against `aws s3 cp` (Debian's awscli) uploading the same stored core, on
one local Ceph RADOS Gateway (tests/lib/radosgw.py), paired run by run.

usage: bench/bench_upload.py [BUILD_DIR] [RUNS] [HEAP_MIB]     (defaults: build, 5, 800)

The core: pc_crasher with a heap of HEAP_MIB MiB (half compressible text, half random bytes),
dumped with gcore and fed to the handler on stdin, as the kernel would; the stored .core.zst is
the file both tools upload. Each uploader run starts from a fresh state dir and uploads that one
crash with --once (record, core, the node's index object); each aws run copies the .core.zst to
its own key with as many requests in flight as the uploader (upload_connections, its default 4)
and the uploader's part size. Once more at awscli's defaults (10 in flight), for
information. Every object is deleted, and the gateway's garbage collected, between runs. Wall
time and peak RSS from /usr/bin/time. Needs Debian's ceph-mon, ceph-osd, radosgw, awscli and gdb
(gcore); awscli is installed with apt-get when missing and we are root.
"""
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "lib"))
import radosgw  # noqa: E402

PREFIX = "fleet"
AWS = "/usr/bin/aws"  # Debian's awscli, not whatever else is first on PATH
PART_MIB = 8  # common/s3/client.hpp k_part_size
IN_FLIGHT = 4  # upload_connections, the uploader's default


class BigGateway(radosgw.Radosgw):
    """The test gateway with room for a few copies of a big core in its memstore OSD."""

    def _write_conf(self, mon_port):
        super()._write_conf(mon_port)
        text = self.conf.read_text()
        self.conf.write_text(text.replace("memstore device bytes = 2147483648",
                                          "memstore device bytes = 8589934592"))

    def empty(self):
        """Deletes every object and runs the garbage collector now, so memstore stays small and
        every run writes into the same, empty bucket."""
        for key in self.keys(""):
            status, _, body = self.request("DELETE", key)
            assert status in (200, 204), body
        subprocess.run(["radosgw-admin", "-c", str(self.conf), "gc", "process", "--include-all"],
                       check=True, capture_output=True, timeout=300)


def make_core(build, work, heap):
    crasher = subprocess.Popen([str(build / "tests" / "pc_crasher"), "sleep", "600", "--heap",
                                str(heap)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if crasher.stdout.readline() != b"ready\n":
            sys.exit("pc_crasher did not get ready")
        subprocess.run(["gcore", "-o", str(work / "core"), str(crasher.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return work / f"core.{crasher.pid}"
    finally:
        crasher.kill()
        crasher.wait()
        crasher.stdout.close()


def timed(argv, env, work):
    """(wall seconds, peak RSS MiB, CPU seconds) of argv; exits when it fails."""
    out = work / "time.txt"
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", str(out), *argv],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed: {r.stderr.decode(errors='replace')}")
    wall, rss_kib, user, system = out.read_text().split()[-4:]
    return float(wall), int(rss_kib) / 1024, float(user) + float(system)


def aws_config(path, in_flight):
    lines = ["[default]", "region = us-east-1", "s3 ="]
    lines += ["  addressing_style = path"]
    if in_flight is not None:
        lines += [f"  max_concurrent_requests = {in_flight}", f"  multipart_chunksize = {PART_MIB}MB",
                  f"  multipart_threshold = {PART_MIB}MB"]
    path.write_text("\n".join(lines) + "\n")
    return path


def stats(xs, unit="", fmt="{:.2f}"):
    return " ".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs))) + unit


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "build").resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    heap = int(sys.argv[3]) if len(sys.argv) > 3 else 800
    if radosgw.available() is not None:
        sys.exit(f"no Ceph: {radosgw.available()}")
    for tool in ("gcore", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing")
    if not os.access(AWS, os.X_OK):
        if os.geteuid() != 0:
            sys.exit("awscli is missing (apt-get install awscli)")
        subprocess.run(["apt-get", "install", "-y", "-q", "awscli"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    handler = build / "handler" / "process-core"
    uploader = build / "uploader" / "process-core-uploader"
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="pc-bench-upload.") as work:
        work = pathlib.Path(work)
        os.chmod(work, 0o755)  # the handler drops root to nobody, who must reach the store
        store = work / "store"
        store.mkdir()
        root = os.geteuid() == 0
        if root:
            shutil.chown(store, "nobody")
        gw = BigGateway(work / "ceph")
        gw.start()
        try:
            creds = radosgw.write_credentials(work / "credentials")
            state = work / "state"
            conf = work / "pc.conf"
            conf.write_text("\n".join([
                f"store = {store}", f"runtime_dir = {work / 'run'}", *(["user = nobody"] if root else []),
                "rate_limit_burst = 0", "keep_free = 0", "max_use = 100%",
                f"upload_url = s3://{gw.bucket}/{PREFIX}", f"upload_endpoint = {gw.endpoint}",
                f"upload_credentials = {creds}", "upload_node = bench",
                "upload_privileged_cores = yes", f"upload_state_dir = {state}",
                f"upload_connections = {IN_FLIGHT}"]) + "\n")

            raw = make_core(build, work, heap)
            with open(raw, "rb") as f:
                subprocess.run([str(handler), "--config", str(conf), "-P1", "-u0", "-g0", "-d1", "--",
                                "bench", "11", "!usr!bin!bench"], stdin=f, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            raw_size = raw.stat().st_size
            raw.unlink()
            cores = list(store.glob("*/*/*.core.zst"))
            assert len(cores) == 1, cores
            core = cores[0]
            size = core.stat().st_size
            subprocess.run(["cat", str(core)], stdout=subprocess.DEVNULL, check=True)  # page cache
            print(f"core: {raw_size / 2**20:.0f} MiB from gcore, stored {size / 2**20:.0f} MiB "
                  f"({-(-size // (PART_MIB << 20))} parts of {PART_MIB} MiB)")

            env = dict(os.environ, AWS_ACCESS_KEY_ID=radosgw.ACCESS_KEY,
                       AWS_SECRET_ACCESS_KEY=radosgw.SECRET_KEY, AWS_DEFAULT_REGION="us-east-1",
                       AWS_SHARED_CREDENTIALS_FILE=str(work / "no-credentials"),
                       AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")
            matched = dict(env, AWS_CONFIG_FILE=str(aws_config(work / "aws-matched", IN_FLIGHT)))
            defaults = dict(env, AWS_CONFIG_FILE=str(aws_config(work / "aws-defaults", None)))
            key = f"{PREFIX}/aws/{core.name}"
            ours = [str(uploader), "--config", str(conf), "--once"]
            theirs = [AWS, "s3", "cp", "--only-show-errors", "--no-progress", str(core),
                      f"s3://{gw.bucket}/{key}", "--endpoint-url", gw.endpoint]

            def run_ours():
                shutil.rmtree(state, ignore_errors=True)
                result = timed(ours, env, work)
                # Complete answers only: the core must be on the server, whole.
                keys = [k for k in gw.keys(f"{PREFIX}/bench/") if k.endswith(".core.zst")]
                assert len(keys) == 1, keys
                status, headers, _ = gw.request("HEAD", keys[0])
                assert status == 200 and int(headers["Content-Length"]) == size, (status, headers)
                gw.empty()
                return result

            def run_theirs(e):
                result = timed(theirs, e, work)
                status, headers, _ = gw.request("HEAD", key)
                assert status == 200 and int(headers["Content-Length"]) == size, (status, headers)
                gw.empty()
                return result

            run_ours()  # warm-up of both: the gateway's first big writes are slower
            run_theirs(matched)
            a, b, ratios, a_rss, b_rss, a_cpu, b_cpu = [], [], [], [], [], [], []
            for _ in range(runs):  # paired, in turn: a drifting machine moves both
                t, m, c = run_ours()
                a.append(t)
                a_rss.append(m)
                a_cpu.append(c)
                t, m, c = run_theirs(matched)
                b.append(t)
                b_rss.append(m)
                b_cpu.append(c)
                ratios.append(a[-1] / b[-1])
            td, md, _ = run_theirs(defaults)
            load = open("/proc/loadavg").read().split()[:3]
            print(f"nproc: {os.cpu_count()}, load {' '.join(load)}, {runs} paired runs, "
                  "min/median/max")
            print(f"process-core-uploader --once ({IN_FLIGHT} parts in flight) "
                  f"{stats(a, ' s')}   peak RSS {stats(a_rss, ' MiB', '{:.0f}')}   "
                  f"CPU {stats(a_cpu, ' s')}")
            print(f"aws s3 cp ({IN_FLIGHT} in flight, {PART_MIB} MiB parts)       "
                  f"{stats(b, ' s')}   peak RSS {stats(b_rss, ' MiB', '{:.0f}')}   "
                  f"CPU {stats(b_cpu, ' s')}")
            print(f"ratio uploader/aws (pair by pair)          {stats(ratios)}")
            print(f"aws s3 cp at its defaults (10 in flight), once: {td:.2f} s, "
                  f"peak RSS {md:.0f} MiB; uploader median / this: "
                  f"{statistics.median(a) / td:.2f}")
            print(f"throughput (medians): uploader {size / 2**20 / statistics.median(a):.0f} MiB/s, "
                  f"aws {size / 2**20 / statistics.median(b):.0f} MiB/s")
        finally:
            gw.stop()


if __name__ == "__main__":
    main()
