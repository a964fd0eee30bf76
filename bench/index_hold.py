#!/usr/bin/env python3
"""index_hold.py: what holding the index in memory costs (docs/SECURITY.md,
issue 21 finding 2). Starts saed on MODEL and INDEX and prints, as JSON:
the time from start to listening (the index is read, checked and digested
in it), RSS once listening and after the queries, and the median and 99th
percentile of GET /v1/features/{i} (random i, a feature page: statistics,
histogram, explanations) and GET /v1/features/{i}/examples on one keep-alive
connection. Run it with two saed builds to compare.

  bench/index_hold.py --saed PATH --model DIR --index FILE.db [--n 2000]"""
import argparse
import http.client
import json
import random
import re
import subprocess
import time


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saed", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    t0 = time.time()
    p = subprocess.Popen([a.saed, "--model", a.model, "--index", a.index, "--listen",
                          "127.0.0.1:0", "--quiet"], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL)
    port = None
    log = b""
    while port is None:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("saed ended: " + log.decode(errors="replace"))
        log += line
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    start_s = time.time() - t0
    rss0 = rss_mb(p.pid)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/v1/model")
    d_sae = json.loads(c.getresponse().read())["d_sae"]
    rng = random.Random(1)
    out = {"start_s": round(start_s, 3), "rss_listening_mb": round(rss0, 1)}
    for name, fmt in (("feature", "/v1/features/%d"), ("examples", "/v1/features/%d/examples")):
        lat = []
        for _ in range(a.n):
            i = rng.randrange(d_sae)
            t = time.perf_counter()
            c.request("GET", fmt % i)
            r = c.getresponse()
            r.read()
            lat.append((time.perf_counter() - t) * 1000)
            if r.status != 200:
                raise SystemExit("%s: %d" % (fmt % i, r.status))
        lat.sort()
        out[name + "_median_ms"] = round(lat[len(lat) // 2], 3)
        out[name + "_p99_ms"] = round(lat[int(len(lat) * 0.99)], 3)
    out["rss_after_mb"] = round(rss_mb(p.pid), 1)
    p.terminate()
    p.wait()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
