#!/usr/bin/env python3
"""Exporter benchmark: start-up (spawn → "listening", which includes the full scan), /metrics
scrape time, RSS, with the store's index against the file scan (--no-store.index) in the same
run. Generates the store with gen_exporter_store.py unless --store is given.

    bench/exporter_bench.py --exporter build/exporter/process-core-exporter [--records 100000]
        [--ledger-series 100000 --records 1000]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run_once(exporter, store, conf, cold, extra=()):
    cached = "cold" if cold and drop_caches() else "warm"
    start = time.monotonic()
    log = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen([exporter, "--store", store, "--config", conf, "--web.listen-address", "127.0.0.1:0",
                          *extra], stderr=log, stdout=subprocess.DEVNULL)
    port = None
    while port is None:
        log.seek(0)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read())
        if m:
            port = int(m.group(1))
        elif p.poll() is not None:
            log.seek(0)
            sys.exit("exporter failed:\n" + log.read())
        else:
            time.sleep(0.005)
    startup = time.monotonic() - start
    startup_rss = rss_kib(p.pid, "VmRSS")
    log.seek(0)
    text = log.read()
    scan = re.search(r"scanned (\d+) records .* in ([0-9.]+) s", text)
    indexed = re.search(r"\((\d+) of (\d+) directories from the index\)", text)
    times = []
    size = 0
    for _ in range(30):
        t = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            size = len(r.read())
        times.append(time.monotonic() - t)
    rss, hwm = rss_kib(p.pid, "VmRSS"), rss_kib(p.pid, "VmHWM")
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    p.terminate()
    p.wait()
    return dict(cache=cached, startup_s=startup, scan_s=float(scan.group(2)), records=int(scan.group(1)),
                dirs_from_index=int(indexed.group(1)) if indexed else 0, cpu_s=cpu,
                scrape_ms_median=statistics.median(times) * 1000, scrape_ms_max=max(times) * 1000,
                metrics_bytes=size, startup_rss_mib=startup_rss / 1024, rss_mib=rss / 1024, peak_rss_mib=hwm / 1024)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--store")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--cap", type=int, default=200)
    ap.add_argument("--ledger-series", type=int, default=0,
                    help="a ledger of this many distinct series (gen_exporter_store.py)")
    ap.add_argument("--max-hosts", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each mode, cold and warm")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pc-bench-exporter-")
    store = a.store or os.path.join(tmp, "store")
    if not a.store:
        t = time.monotonic()
        subprocess.run([sys.executable, os.path.join(HERE, "gen_exporter_store.py"), store,
                        "--records", str(a.records), "--ledger-series", str(a.ledger_series)],
                       check=True)
        print(f"generated {a.records} records in {time.monotonic() - t:.1f} s", file=sys.stderr)
    conf = os.path.join(tmp, "c.conf")
    with open(conf, "w") as f:
        f.write(f"store = {store}\nmax_executables_per_host = {a.cap}\nmax_hosts = {a.max_hosts}\n")
    # The store's index against today's file scan (--no-store.index), in the same run: one run
    # with the index writes it, then rounds of each, alternating, medians reported.
    modes = [("index", []), ("files", ["--no-store.index"])]
    run_once(a.exporter, store, conf, False)
    index = os.path.join(store, ".index", "index.sqlite")
    print(f"index_bytes={os.path.getsize(index) if os.path.exists(index) else 0}")
    results = {}
    for cold in (True, False):
        for _ in range(a.rounds):
            for name, extra in modes:
                r = run_once(a.exporter, store, conf, cold, extra)
                results.setdefault((name, r["cache"]), []).append(r)
                print(name, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    for (name, cache), rs in sorted(results.items()):
        med = {k: statistics.median(r[k] for r in rs) for k in ("startup_s", "scan_s", "cpu_s", "peak_rss_mib")}
        print(f"median {name} {cache} (n={len(rs)}): " + " ".join(f"{k}={v:.3f}" for k, v in med.items()))


if __name__ == "__main__":
    main()
