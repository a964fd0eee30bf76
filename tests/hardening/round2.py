"""round2.py: the tests of issue 21 ("Hardening, second round"), one per
finding, run by hardening.py like its own tests (--only framing,... picks
them). Each failed against saed before its fix:

  replymem   ten unread 64 KiB decode requests at d_in 1024: RSS grows by
             <= 300 MB (max_reply_bytes_total), the excess gets 503 with
             Retry-After, and /v1/health answers meanwhile (finding 1).
  indexswap  the index file renamed over, copied over, deleted and truncated
             under a running saed: replies unchanged, no 500, saed alive; a
             SIGHUP refusing the new file keeps the old one; the same for the
             weights file (finding 2).
  framing    duplicate / conflicting Content-Length, Content-Length with
             Transfer-Encoding, a coding other than chunked: one reply, 400 or
             501, connection closed, nothing after it answered (findings 3, 6);
             a malformed Content-Length gets one status line (finding 5).
  nonfinite  1e38 on a model whose normalisation overflows it: 422 non_finite
             naming the row, JSON, binary and npy, encode and decode (finding 4).
  fairness   1,100 connections trickling header lines from 127.0.0.1 leave
             127.0.0.2 served; a trickled header is cut by header_timeout_s
             (finding 7)."""
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import hlib
from hlib import check, figure, log

D_IN, D_SAE = 64, 256


def status_lines(data):
    """How many HTTP status lines a raw reply holds."""
    return data.count(b"HTTP/1.1 ") + data.count(b"HTTP/1.0 ")


def exchange(port, data, timeout=5.0, src="127.0.0.1"):
    """Sends data on a new connection and reads until the server closes it
    (or timeout); returns (bytes, closed_by_server)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    out, closed = b"", False
    try:
        s.sendall(data)
        deadline = time.time() + timeout
        while time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionError, OSError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        s.close()
    return out, closed


# ---------------------------------------------------------------- framing

def test_framing(c):
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet"], name="framing")
    if not check("framing: saed starts", d.start()):
        return
    head = (b"POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    smuggled = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = [
        ("duplicate Content-Length (2, then 60)",
         head + b"Content-Length: 2\r\nContent-Length: 60\r\n\r\n{}" + smuggled, 400),
        ("repeated equal Content-Length",
         head + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}" + smuggled, 400),
        ("Content-Length, Transfer-Encoding: chunked",
         head + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
         400),
        ("Transfer-Encoding: chunked, Content-Length",
         head + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled,
         400),
        ("Transfer-Encoding: gzip", head + b"Transfer-Encoding: gzip\r\n\r\nabc", 501),
        ("Transfer-Encoding: gzip, chunked",
         head + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        ("Transfer-Encoding: xchunked (not a substring match)",
         head + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
        ("two Transfer-Encoding: chunked headers",
         head + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400),
        ("duplicate Content-Length on a GET",
         b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
         400),
    ]
    for what, data, want in cases:
        out, closed = exchange(d.port, data, timeout=5.0)
        first = out.split(b"\r\n", 1)[0]
        ok = (first.startswith(b"HTTP/1.1 %d" % want) and status_lines(out) == 1 and closed)
        check("framing: %s -> %d, one reply, closed" % (what, want), ok,
              "%r (%d status lines, %s)" % (out[:120], status_lines(out),
                                            "closed" if closed else "left open"))
    # Malformed Content-Length: libmicrohttpd answers it itself, before saed
    # sees the request. 0.9.75 writes its status line and headers twice;
    # 1.0.0 fixed it. What saed can hold on any version: one error, the
    # connection closed, nothing after it answered as a request.
    m = re.search(r"libmicrohttpd (\d+)\.(\d+)\.(\d+)", d.log_text())
    mhd = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    for bad in (b"abc", b"-1", b"99999999999999999999999"):
        out, closed = exchange(d.port, head + b"Content-Length: " + bad + b"\r\n\r\n" +
                               smuggled, timeout=5.0)
        n = status_lines(out)
        check("framing: Content-Length %s -> 4xx, closed, nothing smuggled" % bad.decode(),
              out.startswith(b"HTTP/1.1 4") and closed and b"HTTP/1.1 200" not in out,
              "%d status lines: %r" % (n, out[:160]))
        if mhd >= (1, 0, 0):
            check("framing: Content-Length %s -> one status line" % bad.decode(), n == 1,
                  "%d status lines" % n)
        else:
            log("KNOWN: libmicrohttpd %d.%d.%d sends its own 4xx for Content-Length %s with "
                "%d status lines (fixed in 1.0.0; docs/SECURITY.md finding 5)"
                % (mhd + (bad.decode(), n)))
    # A chunked body, well framed, still works; and the daemon lives.
    body = json.dumps({"inputs": [{"indices": [1], "values": [1.0]}]}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    out, _ = exchange(d.port, head.replace(b"HTTP/1.1", b"HTTP/1.1") +
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    check("framing: Transfer-Encoding: chunked still decodes", out.startswith(b"HTTP/1.1 200"),
          repr(out[:120]))
    check("framing: saed alive", d.alive())
    d.stop()


# ---------------------------------------------------------------- fairness

def test_fairness(c):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1300
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    n = 1100
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n + 100:
        check("fairness: %d descriptors for the test client" % n, False,
              "RLIMIT_NOFILE %s" % (resource.getrlimit(resource.RLIMIT_NOFILE),))
        return
    # header_timeout_s is left at its default (10 s), so a saed without the
    # option starts too and fails on what it does, not on its command line.
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet"], name="fairness")
    if not check("fairness: saed starts", d.start()):
        return
    socks, stop = [], threading.Event()
    for i in range(n):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", d.port))
            socks.append(s)
        except OSError:
            break

    def trickle():
        """The request line, then one header line per socket per second."""
        sent_line = set()
        while not stop.is_set():
            for i, s in enumerate(socks):
                try:
                    if i not in sent_line:
                        s.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
                        sent_line.add(i)
                    else:
                        s.send(b"X-Trickle: %d\r\n" % i)
                except OSError:
                    pass
            stop.wait(1.0)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(3.0)     # every connection opened and trickling
    worst = 0.0
    served = 0
    for i in range(5):
        t0 = time.time()
        out, _ = exchange(d.port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close"
                          b"\r\n\r\n", timeout=5.0, src="127.0.0.2")
        dt = time.time() - t0
        worst = max(worst, dt)
        served += out.startswith(b"HTTP/1.1 200")
        time.sleep(0.2)
    figure("fairness: slowest /v1/health from 127.0.0.2 during 1,100 trickling (s)",
           round(worst, 3))
    # Served at all is the check (before the fix none of the five was, within
    # 5 s each); how fast is the figure above, since a test may not assume
    # the machine is quiet (docs/SECURITY.md keeps the measured < 1 s).
    check("fairness: 127.0.0.2 is served while 127.0.0.1 trickles %d connections" % n,
          served == 5, "%d of 5 served, slowest %.3f s" % (served, worst))
    # The header deadline: trickled headers are cut after header_timeout_s.
    time.sleep(9.0)
    closed = metric_value(d, "saed_header_closed_total")
    figure("fairness: connections cut by header_timeout_s", closed)
    check("fairness: trickling connections closed by the header deadline",
          closed is not None and closed > 0, "saed_header_closed_total %s" % closed)
    stop.set()
    t.join()
    for s in socks:
        s.close()
    check("fairness: saed alive", d.alive())
    d.stop()


def metric_value(d, name):
    out, _ = exchange(d.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      timeout=5.0, src="127.0.0.3")
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


TESTS = [("framing", test_framing), ("fairness", test_fairness)]


# ---------------------------------------------------------------- non-finite

def npy_bytes(rows):
    n, d = len(rows), len(rows[0])
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() +
            hlib.f32_bytes(rows))


def test_nonfinite(c):
    model = os.path.join(c.work, "model_scaled")
    r = hlib.run([c.mkfixture, "--out", model, "--arch", "standard", "--d-in", str(D_IN),
                  "--d-sae", str(D_SAE), "--norm", "expected_average_only_in",
                  "--scaling-factor", "1000", "--target-l0", "8"])
    if not check("nonfinite: fixture with expected_average_only_in x1000", r.returncode == 0,
                 r.stderr[-300:]):
        return
    d = hlib.Saed(c.saed, model, c.work, ["--quiet"], name="nonfinite")
    if not check("nonfinite: saed starts", d.start()):
        return
    fine = [0.5] * D_IN
    huge = [1e38] * D_IN          # finite float32; times 1000 it is not
    rows = [fine, huge]

    def expect_422(what, resp):
        msg = ""
        if resp is not None and resp.status == 422:
            try:
                msg = resp.json()["error"]["message"]
            except Exception:
                msg = ""
        check("nonfinite: %s -> 422 non_finite naming row 1" % what,
              resp is not None and resp.status == 422 and resp.error_code() == "non_finite" and
              msg.startswith("row 1"), "%r" % (resp,))

    expect_422("encode JSON", hlib.post_json(d.port, "/v1/encode", {"inputs": rows}))
    expect_422("encode binary", hlib.request(d.port, "POST", "/v1/encode", hlib.f32_bytes(rows),
                                             {"Content-Type": "application/octet-stream"}))
    expect_422("encode npy", hlib.request(d.port, "POST", "/v1/encode", npy_bytes(rows),
                                          {"Content-Type": "application/x-npy"}))
    expect_422("encode include=reconstruction",
               hlib.post_json(d.port, "/v1/encode", {"inputs": rows,
                                                     "include": ["reconstruction"]}))
    # Decode: finite values whose sum overflows float32 in the output.
    idx = list(range(D_SAE))
    dec = {"inputs": [{"indices": [1], "values": [1.0]},
                      {"indices": idx, "values": [3e38] * D_SAE}]}
    expect_422("decode JSON", hlib.post_json(d.port, "/v1/decode", dec))
    binrow = lambda ix, vs: struct.pack("<I", len(ix)) + struct.pack(
        "<%dI" % len(ix), *ix) + struct.pack("<%df" % len(vs), *vs)
    body = binrow([1], [1.0]) + binrow(idx, [3e38] * D_SAE)
    expect_422("decode binary", hlib.request(d.port, "POST", "/v1/decode", body,
                                             {"Content-Type": "application/octet-stream"}))
    # Other requests in the same batch are not affected by a bad one.
    ok = hlib.post_json(d.port, "/v1/encode", {"inputs": [fine]})
    check("nonfinite: a finite row still encodes", ok is not None and ok.status == 200,
          "%r" % (ok,))
    check("nonfinite: saed alive", d.alive())
    d.stop()


TESTS.append(("nonfinite", test_nonfinite))


# ---------------------------------------------------------------- reply memory

def test_replymem(c):
    d_in = 1024
    model = os.path.join(c.work, "model_1024")
    r = hlib.run([c.mkfixture, "--out", model, "--arch", "standard", "--d-in", str(d_in),
                  "--d-sae", "512", "--target-l0", "8"])
    if not check("replymem: fixture d_in 1024", r.returncode == 0, r.stderr[-300:]):
        return
    # A queue that holds all ten, so the reply budget is what refuses.
    d = hlib.Saed(c.saed, model, c.work, ["--quiet", "--max-queue-rows", "200000"],
                  name="replymem")
    if not check("replymem: saed starts", d.start()):
        return
    body = b"\0" * 65536              # 16,384 empty rows in the binary decode format
    req = (b"POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    rss0 = d.rss_kb()
    held = []
    for i in range(10):
        s = hlib.connect(d.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(req)
        held.append(s)                # never read
    time.sleep(3.0)
    worst = 0.0
    for i in range(10):
        t0 = time.time()
        h = hlib.request(d.port, "GET", "/v1/health", timeout=10)
        worst = max(worst, time.time() - t0)
        if h is None or h.status != 200:
            worst = 99.0
    rss1 = d.rss_kb()
    grew_mb = (rss1 - rss0) / 1024.0
    figure("replymem: RSS growth with ten unread 64 KiB decodes at d_in 1024 (MB)",
           round(grew_mb, 1))
    figure("replymem: slowest /v1/health meanwhile (ms)", round(worst * 1000, 1))
    check("replymem: RSS grows by <= 300 MB", grew_mb <= 300, "%.1f MB" % grew_mb)
    # Answered at all is the check: before the fix replies were built on the
    # polling threads and /v1/health waited 12.8 s, past its 10 s timeout
    # here. The < 100 ms the issue measures is the figure above (SECURITY.md).
    check("replymem: /v1/health answers meanwhile", worst < 10.0,
          "%.1f ms" % (worst * 1000))
    full = metric_value(d, "saed_reply_budget_full_total")
    check("replymem: the requests past max_reply_bytes_total got 503",
          full is not None and full >= 1, "saed_reply_budget_full_total %s" % full)
    # A 503 carries Retry-After, and names the limit.
    s = hlib.connect(d.port)
    s.sendall(req)
    resp = hlib.read_response(s, time.time() + 10)
    s.close()
    check("replymem: the next one gets 503 with Retry-After while the room is held",
          resp is not None and resp.status == 503 and "retry-after" in resp.headers,
          "%r" % (resp,))
    for s in held:
        s.close()
    time.sleep(2.0)
    encode_stream_checks(d, d_in)
    small = hlib.request(d.port, "POST", "/v1/decode", b"\0" * 16,
                         {"Content-Type": "application/octet-stream"})
    check("replymem: room comes back once the unread replies' connections close",
          small is not None and small.status == 200, "%r" % (small,))
    check("replymem: saed alive", d.alive())
    d.stop()
    d = hlib.Saed(c.saed, model, c.work, ["--quiet", "--max-reply-bytes", "16777216"],
                  name="replymem-cap")
    if not check("replymem: saed with max_reply_bytes 16 MiB starts", d.start()):
        return
    big = hlib.request(d.port, "POST", "/v1/decode", body,
                       {"Content-Type": "application/octet-stream"})
    check("replymem: a decode over max_reply_bytes gets 413 reply_too_large before it runs",
          big is not None and big.status == 413 and big.error_code() == "reply_too_large",
          "%r" % (big,))
    check("replymem: saed alive", d.alive())
    d.stop()


def encode_stream_checks(d, d_in):
    """Finding 1 for encode: a large reply (include=reconstruction) is written
    while it is sent (chunked, never built whole on a polling thread), is
    whole and right, and the binary reply of the same rows too."""
    rows = 2048
    body = b"".join(struct.pack("<%df" % d_in, *([0.5 * ((r * 31 + c * 17) % 13 - 6)
                                                    for c in range(d_in)]))
                    for r in range(rows))
    resp = hlib.request(d.port, "POST", "/v1/encode?include=reconstruction", body,
                        {"Content-Type": "application/octet-stream", "Accept": "application/json"},
                        timeout=60)
    ok = resp is not None and resp.status == 200
    chunked = ok and resp.headers.get("transfer-encoding", "").lower() == "chunked"
    check("replymem: a large encode reply (include=reconstruction) is sent as it is written "
          "(chunked), not built whole", chunked, "%r %s" % (resp, resp.headers if resp else ""))
    res = resp.json()["results"] if ok else []
    check("replymem: ... and holds every row and its reconstruction",
          len(res) == rows and all(len(r["reconstruction"]) == d_in for r in res),
          "%d rows" % len(res))
    b = hlib.request(d.port, "POST", "/v1/encode", body,
                     {"Content-Type": "application/octet-stream",
                      "Accept": "application/octet-stream"}, timeout=60)
    same = b is not None and b.status == 200
    at = 0
    for r in res if same else []:
        n = struct.unpack_from("<I", b.body, at)[0]
        idx = list(struct.unpack_from("<%dI" % n, b.body, at + 4))
        same = same and idx == r["indices"]
        at += 4 + 8 * n
    check("replymem: the binary reply of the same rows agrees and ends where it should",
          same and at == len(b.body) and any(r["indices"] for r in res), "%r" % (b,))


TESTS.append(("replymem", test_replymem))


# ---------------------------------------------------------------- index and weights swap

def get_body(d, path):
    """(status, body bytes) of a GET on a new connection; (None, b"") when
    nothing came back."""
    try:
        r = hlib.request(d.port, "GET", path, timeout=10)
    except OSError:  # saed is gone
        r = None
    return (r.status, r.body) if r is not None else (None, b"")


def post_or_none(d, path, obj):
    """post_json on a new connection; None when saed is gone."""
    try:
        return hlib.post_json(d.port, path, obj, timeout=10)
    except OSError:
        return None


def build_index(c, model, expl, out):
    """sae index of the shared activations and tokens for model, with the
    explanations file expl; True when it built."""
    r = hlib.run([c.sae, "index", "--model", model, "--activations", c.acts, "--tokens",
                  c.tokens, "--explanations", expl, "--out", out, "--quiet"])
    return check("indexswap: sae index %s" % os.path.basename(out), r.returncode == 0,
                 r.stderr[-300:])


# Compared after each change on disk: every one a feature route whose reply
# the index decides (features 0..7 are never asked before the change, so no
# cached reply can hide what a thread reads).
SWAP_PATHS = ["/v1/features/%d" % i for i in range(8)] + ["/v1/features?q=river&limit=5"]
WARM_PATHS = ["/v1/features/100"]
HTTP = ["--http-threads", "4"]


def replace_by_rename(src, dst):
    """What a careful operator does: a new file renamed over the old."""
    shutil.copyfile(src, dst + ".new")
    os.rename(dst + ".new", dst)


def test_indexswap(c):
    if not c.has_index:
        check("indexswap: this saed serves an index", False)
        return
    # B: the same model, other explanations (a valid reload); C: other
    # weights (a reload must refuse it).
    expl_b = os.path.join(c.work, "explanations_b.jsonl")
    with open(expl_b, "w") as f:
        for i in range(D_SAE):
            f.write(json.dumps({"index": i, "description": "swapped river %d" % i,
                                "source": "swap"}) + "\n")
    index_b = os.path.join(c.work, "index_b.db")
    other = os.path.join(c.work, "model_other")
    index_c = os.path.join(c.work, "index_c.db")
    r = hlib.run([c.mkfixture, "--out", other, "--arch", "standard", "--d-in", str(D_IN),
                  "--d-sae", str(D_SAE), "--target-l0", "8", "--seed", "99"])
    if not (check("indexswap: fixture with other weights", r.returncode == 0, r.stderr[-300:])
            and build_index(c, c.model, expl_b, index_b) and
            build_index(c, other, c.expl, index_c)):
        return
    ref = hlib.Saed(c.saed, c.model, c.work, ["--quiet", "--index", c.index], name="swap-ref")
    if not check("indexswap: reference saed starts", ref.start()):
        return
    want = {p: get_body(ref, p) for p in SWAP_PATHS}
    ref.stop()

    def serves_a(d, what):
        """Every compared route, asked five times on new connections (so on
        several polling threads), answers as the original index does."""
        bad = []
        for _ in range(5):
            for p in SWAP_PATHS:
                got = get_body(d, p)
                if got != want[p]:
                    bad.append("%s: %s %r" % (p, got[0], got[1][:100]))
        return check("indexswap: %s: replies unchanged, saed alive" % what,
                     not bad and d.alive(), "%d differ; first %s" % (len(bad), bad[:1]))

    def start_on_copy(what):
        path = os.path.join(c.work, "served-%s.db" % what)
        shutil.copyfile(c.index, path)
        d = hlib.Saed(c.saed, c.model, c.work, ["--quiet", "--index", path] + HTTP,
                      name="swap-" + what)
        if not check("indexswap: %s: saed starts" % what, d.start()):
            return None, path
        # One thread has read the file before it changes; the others have
        # not (the unfixed saed opened it lazily, by path, per thread).
        get_body(d, WARM_PATHS[0])
        return d, path

    changes = [
        ("index renamed over (other explanations)", lambda p: replace_by_rename(index_b, p)),
        ("index copied over in place (cp)", lambda p: shutil.copyfile(index_b, p)),
        ("index deleted", os.unlink),
        ("index truncated to 8 KiB", lambda p: os.truncate(p, 8192)),
    ]
    for what, change in changes:
        d, path = start_on_copy(what.split()[1])
        if d is None:
            continue
        change(path)
        serves_a(d, what)
        d.stop()

    # A SIGHUP that refuses the new file keeps the old one; one that accepts
    # a checked file serves it.
    d, path = start_on_copy("reload")
    if d is None:
        return
    replace_by_rename(index_c, path)
    d.signal(signal.SIGHUP)
    check("indexswap: SIGHUP with an index of other weights is refused",
          d.wait_log("reload failed", 1), d.log_text()[-300:])
    serves_a(d, "after the refused reload")
    replace_by_rename(index_b, path)
    d.signal(signal.SIGHUP)
    check("indexswap: SIGHUP with a checked index reloads", d.wait_log("saed: reloaded", 1),
          d.log_text()[-300:])
    st, body = get_body(d, "/v1/features/3")
    check("indexswap: after the reload the new index is served",
          st == 200 and b"swapped river 3" in body, "%s %r" % (st, body[:160]))
    d.stop()

    # The weights: a rename over or a delete changes nothing (the mapping
    # holds the old file); a rewrite in place or a truncation is refused with
    # 503 weights_changed until a SIGHUP loads a checked file, and never
    # answered from other numbers or kills saed.
    weights_name = "sae_weights.safetensors"
    other_w = os.path.join(other, weights_name)
    for what in ("renamed over", "deleted", "copied over in place (cp)", "truncated to 4 KiB"):
        tag = what.split()[0]
        folder = os.path.join(c.work, "model-" + tag)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(c.model, folder)
        wpath = os.path.join(folder, weights_name)
        d = hlib.Saed(c.saed, folder, c.work, ["--quiet"] + HTTP, name="wswap-" + tag)
        if not check("indexswap: weights %s: saed starts" % what, d.start()):
            continue
        before = post_or_none(d, "/v1/encode", c.encode_body)
        if what == "renamed over":
            replace_by_rename(other_w, wpath)
        elif what == "deleted":
            os.unlink(wpath)
        elif tag == "copied":
            shutil.copyfile(other_w, wpath)
        else:
            os.truncate(wpath, 4096)
        after = [post_or_none(d, "/v1/encode", c.encode_body) for _ in range(5)]
        same = all(a is not None and a.status == 200 and a.body == before.body for a in after)
        refused = all(a is not None and a.status == 503 and a.error_code() == "weights_changed"
                      for a in after)
        if tag in ("renamed", "deleted"):
            check("indexswap: weights %s: encode unchanged" % what, same and d.alive(),
                  "%r" % (after[:1],))
        else:
            check("indexswap: weights %s: 503 weights_changed, never other numbers, alive"
                  % what, refused and d.alive(), "%r alive=%s" % (after[:1], d.alive()))
            dec = post_or_none(d, "/v1/decode",
                                 {"inputs": [{"indices": [1], "values": [1.0]}]})
            check("indexswap: weights %s: decode refused too" % what,
                  dec is not None and dec.status == 503 and dec.error_code() == "weights_changed",
                  "%r" % (dec,))
            if tag == "truncated":
                d.signal(signal.SIGHUP)
                check("indexswap: weights truncated: SIGHUP refuses the truncated file",
                      d.wait_log("reload failed", 1), d.log_text()[-300:])
            replace_by_rename(os.path.join(c.model, weights_name), wpath)
            d.signal(signal.SIGHUP)
            ok = d.wait_log("saed: reloaded", 1)
            again = post_or_none(d, "/v1/encode", c.encode_body)
            check("indexswap: weights %s: after a SIGHUP with a checked file, served again"
                  % what, ok and again is not None and again.status == 200 and
                  again.body == before.body, "%r" % (again,))
        d.stop()


TESTS.append(("indexswap", test_indexswap))
