#!/usr/bin/env python3
"""hardening.py: the hostile-case integration tests of issue #7, against a
real saed on loopback (run through tests/hardening/run.sh).

  hardening.py [--ci | --full] --saed PATH --sae PATH --mkfixture PATH
               [--only weights,requests,costly,auth,load,overload,reload,index,static,saes,...]
               [--workdir DIR] [--keep]

Tests (each prints PASS/FAIL lines and FIGURE lines with what it measured):
  weights   every malformed safetensors case (mkfixture --cases, plus files
            whose header claims 100 MB to 256 GiB) and malformed cfg.json
            refused at start-up and on SIGHUP, the old model serving on;
            resident memory not growing by the claimed size.
  requests  truncated JSON, trailing garbage, 100,000 nested brackets,
            strings for numbers, 1e999, empty batch, bad binary length, a
            10 GiB Content-Length (413 before the body), a chunked body over
            the cap, oversized headers and URL, slow clients dripping bytes
            (cut by the total deadline), and more; after each, a normal
            request answered exactly as `sae encode` answers it.
  costly    valid requests that cost far more than their size (include
            features on many rows, a search of thousands of words): answered
            or refused, and not holding up a normal request when several run
            (their times are figures, not checks).
  auth      with an API key: every guarded route 401 without it (before any
            body byte), /v1/health and /openapi.json open, the key kept off
            the command line and the log.
  load      wrk, 256 connections, encode + feature + search, 20 s (--ci) or
            60 s (--full): no socket errors, only 200s, RSS at the end within
            5 % of RSS after 10 s.
  overload  small max_queue_rows, more concurrent encodes than it holds:
            excess gets 503 + Retry-After, sooner than an accepted request
            is answered (medians; the latencies are figures); RSS flat.
  reload    100 SIGHUPs (each after an atomic swap of the weights file for an
            identical copy) during wrk load: 0 failed requests, open file
            descriptors and RSS stable.
  index     `sae index` SIGKILLed at 20 random moments of a build (its corpus
            grown until a build lasts 0.5 s, or 1 s with --full), and run
            on a full disk (a small tmpfs): the previous index stays
            byte-identical.
  static    `..`, `%2e%2e`, absolute paths and symlinks out of web/ refused.
  framing, fairness, ...: issue 21's tests, in round2.py.
  saes      100 SIGHUPs under load with one of four SAEs broken and repaired
            in turn: 0 failed requests, fds and RSS stable (many.py).

Environment: HARDENING_SEED picks the kill moments of the index test (default
fixed); HARDENING_NO_MOUNT=1 makes the full-disk test use its RLIMIT_FSIZE
fallback instead of a tmpfs (which needs root).

Prints "hardening: N passed, M failed"; exit status 1 if any check failed."""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlib  # noqa: E402
import many  # noqa: E402  (issue 14's test)
import round2  # noqa: E402  (issue 21's tests)
from hlib import check, figure, load_checks, log, wrk_result  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
D_IN, D_SAE = 64, 256
WORDS = ["cat", "dog", "river", "mountain", "code", "music", "red", "blue", "number",
         "city", "tree", "light", "money", "water", "paper", "stone"]


class Ctx:
    """Paths and shared fixtures (built once in setup)."""


# ---------------------------------------------------------------- setup

def setup(a):
    c = Ctx()
    c.a = a
    c.work = a.workdir or tempfile.mkdtemp(prefix="saehard-")
    os.makedirs(c.work, exist_ok=True)
    c.saed, c.sae, c.mkfixture = a.saed, a.sae, a.mkfixture
    c.model = os.path.join(c.work, "model")
    c.acts = os.path.join(c.work, "acts.npy")
    rows = 4096
    r = hlib.run([c.mkfixture, "--out", c.model, "--arch", "standard", "--d-in", str(D_IN),
                  "--d-sae", str(D_SAE), "--target-l0", "8", "--activations", c.acts,
                  "--rows", str(rows)])
    if r.returncode:
        raise SystemExit("mkfixture failed: " + r.stderr)
    # Tokens: 64 documents of 64 tokens; explanations naming two words each.
    rng = random.Random(7)
    c.tokens = os.path.join(c.work, "tokens.jsonl")
    with open(c.tokens, "w") as f:
        for d in range(rows // 64):
            toks = [" " + rng.choice(WORDS) for _ in range(64)]
            f.write(json.dumps({"id": "doc%d" % d, "tokens": toks}) + "\n")
    c.expl = os.path.join(c.work, "explanations.jsonl")
    with open(c.expl, "w") as f:
        for i in range(D_SAE):
            f.write(json.dumps({"index": i, "description": "%s and %s" % (
                WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)]),
                "score": (i % 10) / 10, "source": "hardening"}) + "\n")
    c.index = os.path.join(c.work, "index.db")
    r = hlib.run([c.sae, "index", "--model", c.model, "--activations", c.acts, "--tokens",
                  c.tokens, "--explanations", c.expl, "--out", c.index, "--quiet"])
    if r.returncode:
        raise SystemExit("sae index failed: " + r.stderr)
    # Does this saed serve an index? (Until the feature routes land it refuses --index.)
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet", "--index", c.index], name="probe")
    c.has_index = d.start(timeout=60)
    d.stop()
    if not c.has_index:
        log("SKIP: route missing: this saed does not serve --index; feature and search "
            "requests are left out")
    c.index_args = ["--index", c.index] if c.has_index else []

    # The normal request and its reference answer from `sae encode`.
    rng = random.Random(11)
    c.row = [round(rng.gauss(0, 1), 6) for _ in range(D_IN)]
    rowfile = os.path.join(c.work, "row.npy")
    hlib.write_npy_f32(rowfile, [c.row])
    r = hlib.run([c.sae, "encode", "--model", c.model, "--activations", rowfile])
    if r.returncode:
        raise SystemExit("sae encode failed: " + r.stderr)
    c.reference = json.loads(r.stdout.splitlines()[0])
    c.encode_body = json.dumps({"inputs": [c.row]})
    c.body_file = os.path.join(c.work, "encode_body.json")
    with open(c.body_file, "w") as f:
        f.write(c.encode_body)
    # hload, the per-status latency client (tests/hardening/hload.c).
    c.hload = os.path.join(c.work, "hload")
    r = hlib.run(["cc", "-O2", "-std=c11", "-Wall", "-o", c.hload,
                  os.path.join(HERE, "hload.c")])
    if r.returncode:
        raise SystemExit("cannot build hload: " + r.stderr)
    return c


def normal_ok(c, d, what):
    """The normal request after a hostile one: answered, and as `sae encode`
    answers the same row."""
    r = hlib.post_json(d.port, "/v1/encode", c.encode_body)
    ok = r is not None and r.status == 200
    detail = "status %s" % (r.status if r else "none")
    if ok:
        got = r.json()["results"][0]
        ref = c.reference
        ok = (got["indices"] == ref["indices"] and len(got["values"]) == len(ref["values"]) and
              all(abs(x - y) <= 1e-5 * max(1.0, abs(y))
                  for x, y in zip(got["values"], ref["values"])))
        detail = "l0 %d, indices %s" % (got.get("l0", -1), "match" if ok else
                                         "%s vs %s" % (got["indices"], ref["indices"]))
    return check("normal request after %s" % what, ok and d.alive(), detail)


# ---------------------------------------------------------------- weights

def claimed_size(data):
    """What a safetensors file claims: 8 + header length + the largest data
    offset its header names (when the header parses)."""
    if len(data) < 8:
        return len(data)
    n = struct.unpack("<Q", data[:8])[0]
    end = 0
    try:
        hdr = json.loads(data[8:8 + n])
        for k, v in hdr.items():
            if k != "__metadata__" and isinstance(v, dict):
                end = max(end, int(v.get("data_offsets", [0, 0])[1]))
    except Exception:
        pass
    return 8 + n + end


def hostile_weights():
    """Files whose header claims far more than they hold: the reader must
    not allocate or map what they claim."""
    out = {}
    out["claims_99MB_header"] = struct.pack("<Q", 99_999_999) + b'{"a":'
    out["claims_100MB_plus_1_header"] = struct.pack("<Q", 100_000_001) + b"{}"
    out["claims_2^63_header"] = struct.pack("<Q", 1 << 63) + b"{}"
    hdr = json.dumps({"W_enc": {"dtype": "F32", "shape": [D_IN, 1 << 30],
                                "data_offsets": [0, 4 * D_IN * (1 << 30)]}}).encode()
    out["claims_256GiB_tensor"] = struct.pack("<Q", len(hdr)) + hdr + b"\0" * 64
    hdr = json.dumps({"W_enc": {"dtype": "F32", "shape": [1 << 40, 1 << 40],
                                "data_offsets": [0, 16]}}).encode()
    out["shape_product_overflows"] = struct.pack("<Q", len(hdr)) + hdr + b"\0" * 16
    return out


def bad_cfgs(cfg_text):
    """Malformed cfg.json files for the good weights: None means no file."""
    cfg = json.loads(cfg_text)

    def with_(**kw):
        d = dict(cfg)
        d.update(kw)
        return json.dumps(d)
    return {
        "cfg_missing": None,
        "cfg_not_json": "{",
        "cfg_array": "[]",
        "cfg_duplicate_key": cfg_text.replace('"d_in": 64,', '"d_in": 64, "d_in": 64,', 1),
        "cfg_d_in_mismatch": with_(d_in=D_IN + 1),
        "cfg_d_sae_mismatch": with_(d_sae=D_SAE - 1),
        "cfg_unknown_architecture": with_(architecture="quantum"),
        "cfg_d_in_string": with_(d_in=str(D_IN)),
        "cfg_d_sae_negative": with_(d_sae=-D_SAE),
        "cfg_d_in_1e999": with_(d_in=0).replace('"d_in": 0', '"d_in": 1e999'),
        "cfg_d_in_2^64": with_(d_in=0).replace('"d_in": 0', '"d_in": 18446744073709551616'),
        "cfg_topk_k_0": with_(architecture="topk", k=0),
        "cfg_topk_k_over_d_sae": with_(architecture="topk", k=D_SAE + 1),
        "cfg_unknown_normalisation": with_(normalize_activations="sometimes"),
        "cfg_scaling_factor_0": with_(normalize_activations="expected_average_only_in",
                                      norm_scaling_factor=0),
        "cfg_scaling_factor_1e39": with_(normalize_activations="expected_average_only_in",
                                         norm_scaling_factor=1e39),
        "cfg_17MiB": " " * (17 << 20) + cfg_text,
    }


def test_weights(c):
    cases_dir = os.path.join(c.work, "st_cases")
    r = hlib.run([c.mkfixture, "--cases", cases_dir])
    if not check("mkfixture --cases", r.returncode == 0, r.stderr.strip()):
        return
    cases = {}
    for name in sorted(os.listdir(cases_dir)):
        if name.endswith(".safetensors"):
            with open(os.path.join(cases_dir, name), "rb") as f:
                cases[name[:-len(".safetensors")]] = f.read()
    cases.update(hostile_weights())
    figure("weights cases", len(cases))

    # Baseline peak RSS of a saed that loads the good model and exits at once
    # (SIGTERM as soon as it listens).
    good = hlib.Saed(c.saed, c.model, c.work, ["--quiet"], name="weights-good")
    good.start()
    base_rss = good.rss_kb()
    good.stop()

    with open(os.path.join(c.model, "cfg.json")) as f:
        cfg = f.read()
    # Start-up: each case as the weights of an otherwise good folder.
    refused = 0
    worst = (-1, "")
    for name, data in cases.items():
        folder = os.path.join(c.work, "bad-" + name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "cfg.json"), "w") as f:
            f.write(cfg)
        with open(os.path.join(folder, "sae_weights.safetensors"), "wb") as f:
            f.write(data)
        cmd = ["/usr/bin/time", "-f", "MAXRSS %M", c.saed, "--model", folder, "--listen",
               "127.0.0.1:0", "--quiet"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            check("start-up refuses %s" % name, False, "still running after 60 s")
            continue
        m = re.search(r"MAXRSS (\d+)", p.stderr)
        maxrss = int(m.group(1)) if m else -1
        claimed = claimed_size(data)
        ok = p.returncode == 1 and "saed: error:" in p.stderr and "listening" not in p.stderr
        # The peak must not come near what the header claims.
        mem_ok = maxrss >= 0 and (maxrss - base_rss) * 1024 < (32 << 20) and \
            (claimed < (64 << 20) or (maxrss - base_rss) * 1024 < claimed // 2)
        if maxrss > worst[0]:
            worst = (maxrss, name)
        msg = p.stderr.strip().splitlines()
        msg = [x for x in msg if x.startswith("saed: error")]
        refused += ok and mem_ok
        check("start-up refuses %s" % name, ok and mem_ok,
              "exit %s, peak RSS %d KiB (good model %d KiB), claims %d bytes: %s" % (
                  p.returncode, maxrss, base_rss, claimed, msg[0][:160] if msg else "no error"))
    # cfg.json cases beside the good weights.
    cfgs = bad_cfgs(cfg)
    for name, text in cfgs.items():
        folder = os.path.join(c.work, "bad-" + name)
        os.makedirs(folder, exist_ok=True)
        shutil.copy(os.path.join(c.model, "sae_weights.safetensors"), folder)
        if text is not None:
            with open(os.path.join(folder, "cfg.json"), "w") as f:
                f.write(text)
        p = subprocess.run([c.saed, "--model", folder, "--listen", "127.0.0.1:0", "--quiet"],
                           capture_output=True, text=True, timeout=60)
        msg = [x for x in p.stderr.splitlines() if x.startswith("saed: error")]
        ok = p.returncode == 1 and msg and "listening" not in p.stderr
        refused += bool(ok)
        check("start-up refuses %s" % name, ok, "exit %s: %s" % (
            p.returncode, msg[0][:160] if msg else p.stderr[-300:]))
    figure("weights and cfg cases refused at start-up", "%d of %d" % (
        refused, len(cases) + len(cfgs)))
    figure("weights: highest peak RSS of a refused start (KiB)",
           "%d (%s); a good model's RSS: %d" % (worst[0], worst[1], base_rss))

    # SIGHUP: one daemon on a copy of the good folder; each case swapped in
    # atomically (rename: the serving model keeps its own mapping), SIGHUP,
    # refused, the old model still answering.
    live = os.path.join(c.work, "live-model")
    shutil.copytree(c.model, live)
    wpath = os.path.join(live, "sae_weights.safetensors")
    good_copy = os.path.join(c.work, "good_weights.safetensors")
    shutil.copy(wpath, good_copy)
    d = hlib.Saed(c.saed, live, c.work, ["--quiet"], name="weights-hup")
    if not check("daemon for the SIGHUP cases starts", d.start()):
        return
    digest = hlib.request(d.port, "GET", "/v1/model").json()["weights_digest"]
    normal_ok(c, d, "start")
    rss0 = d.rss_kb()
    max_growth = 0
    n_failed_reloads = 0
    for name, data in cases.items():
        tmp = wpath + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, wpath)
        d.signal(signal.SIGHUP)
        n_failed_reloads += 1
        refused = d.wait_log("reload failed", n_failed_reloads, timeout=30)
        r = hlib.request(d.port, "GET", "/v1/model")
        same = r is not None and r.status == 200 and r.json()["weights_digest"] == digest
        growth = d.rss_kb() - rss0
        max_growth = max(max_growth, growth)
        claimed = claimed_size(data)
        mem_ok = growth * 1024 < (32 << 20) and (claimed < (64 << 20) or
                                                 growth * 1024 < claimed // 2)
        check("SIGHUP refuses %s, old model serves" % name, refused and same and mem_ok,
              "refused %s, digest kept %s, RSS %+d KiB, claims %d bytes" % (
                  refused, same, growth, claimed))
    os.rename(good_copy, wpath)
    cpath = os.path.join(live, "cfg.json")
    for name, text in cfgs.items():
        if text is None:
            os.rename(cpath, cpath + ".away")
        else:
            with open(cpath + ".tmp", "w") as f:
                f.write(text)
            os.rename(cpath + ".tmp", cpath)
        d.signal(signal.SIGHUP)
        n_failed_reloads += 1
        refused = d.wait_log("reload failed", n_failed_reloads, timeout=30)
        r = hlib.request(d.port, "GET", "/v1/model")
        same = r is not None and r.status == 200 and r.json()["weights_digest"] == digest
        check("SIGHUP refuses %s, old model serves" % name, refused and same,
              "refused %s, digest kept %s" % (refused, same))
        if text is None:
            os.rename(cpath + ".away", cpath)
    with open(cpath + ".tmp", "w") as f:
        f.write(cfg)
    os.rename(cpath + ".tmp", cpath)
    normal_ok(c, d, "%d refused reloads" % (len(cases) + len(cfgs)))
    d.signal(signal.SIGHUP)
    check("SIGHUP with the good weights back reloads",
          d.wait_log("saed: reloaded", 1, timeout=30), "")
    normal_ok(c, d, "a good reload")
    figure("weights SIGHUP max RSS growth (KiB)", max_growth)
    d.stop()

    # Rewriting or truncating the mapped weights in place no longer kills
    # saed (it answers 503 weights_changed until a SIGHUP): round2.py's
    # indexswap checks it with the other changes on disk (issue 21, finding 2).


# ---------------------------------------------------------------- requests

def drip(port, head, body, interval, limit_s):
    """Sends head then body one byte every `interval` s (head too when body is
    None: the bytes to drip are head). Returns the seconds until the server
    closed the connection (None if it was still open after limit_s)."""
    s = hlib.connect(port)
    t0 = time.time()
    data = head if body is None else body
    if body is not None:
        s.sendall(head)
    s.settimeout(interval)
    i = 0
    try:
        while time.time() - t0 < limit_s:
            if i < len(data):
                try:
                    s.send(data[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.time() - t0
                i += 1
            try:
                chunk = s.recv(4096)
                if not chunk:
                    return time.time() - t0
            except socket.timeout:
                pass
            except (ConnectionResetError, OSError):
                return time.time() - t0
        return None
    finally:
        s.close()


def test_requests(c):
    deadline_s = 4
    d = hlib.Saed(c.saed, c.model, c.work,
                  ["--quiet", "--request-timeout-s", str(deadline_s)] + c.index_args,
                  name="requests")
    if not check("daemon for the request cases starts", d.start()):
        return
    port = d.port
    normal_ok(c, d, "start")
    rss_start = d.rss_kb()
    good_row = json.dumps(c.row)
    enc = "/v1/encode"

    def expect(name, r, status, code=None):
        ok = r is not None and r.status == status and (code is None or r.error_code() == code)
        check(name, ok, "got %s %s (want %d %s)" % (
            r.status if r else "no response", r.error_code() if r else "", status, code or ""))
        normal_ok(c, d, name)

    expect("truncated JSON -> 400", hlib.post_json(port, enc, '{"inputs": [[0.1, 0.2'),
           400, "invalid_json")
    expect("trailing garbage -> 400",
           hlib.post_json(port, enc, c.encode_body + ' {"x": 1}'), 400, "invalid_json")
    deep = "[" * 100000 + "]" * 100000
    expect("100,000 nested brackets as inputs -> 400",
           hlib.post_json(port, enc, '{"inputs": %s}' % deep), 400)
    expect("100,000 nested brackets as the body -> 400", hlib.post_json(port, enc, deep), 400)
    expect("100,000 nested brackets in an unknown field -> 400",
           hlib.post_json(port, enc, '{"zzz": %s, "inputs": [%s]}' % (deep, good_row)), 400)
    expect("strings where numbers belong -> 400",
           hlib.post_json(port, enc, '{"inputs": [[%s]]}' % ", ".join(['"0.5"'] * D_IN)),
           400, "wrong_type")
    expect("top_k as a string -> 400",
           hlib.post_json(port, enc, '{"inputs": [%s], "top_k": "3"}' % good_row), 400)
    expect("1e999 -> 400", hlib.post_json(
        port, enc, '{"inputs": [[1e999%s]]}' % (", 0" * (D_IN - 1))), 400)
    expect("empty batch -> 422", hlib.post_json(port, enc, '{"inputs": []}'), 422,
           "empty_batch")
    expect("both input and inputs -> 400", hlib.post_json(
        port, enc, '{"input": %s, "inputs": [%s]}' % (good_row, good_row)), 400)
    expect("duplicate key -> 400", hlib.post_json(
        port, enc, '{"inputs": [%s], "inputs": [%s]}' % (good_row, good_row)), 400)
    expect("wrong dimension -> 422", hlib.post_json(port, enc, '{"inputs": [[1, 2, 3]]}'),
           422, "wrong_dimension")
    octet = {"Content-Type": "application/octet-stream"}
    expect("binary body not a multiple of 4 x d_in -> 422",
           hlib.request(port, "POST", enc, b"\0" * (4 * D_IN + 4), octet), 422,
           "bad_binary_length")
    chunked_bad = (("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % enc).encode() +
                   b"%x\r\n" % (4 * D_IN + 4) + b"\0" * (4 * D_IN + 4) + b"\r\n0\r\n\r\n")
    expect("chunked binary body not a multiple of 4 x d_in -> 422", hlib.raw(port, chunked_bad),
           422, "bad_binary_length")
    expect("empty binary body -> 422", hlib.request(port, "POST", enc, b"", octet), 422,
           "empty_batch")
    npy_i4 = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + \
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (1, %d), }" % D_IN).ljust(
            117).encode() + b"\n" + b"\0" * (4 * D_IN)
    expect("npy of int32 -> 422", hlib.request(port, "POST", enc, npy_i4,
                                               {"Content-Type": "application/x-npy"}), 422)
    expect("unsupported Content-Type -> 415", hlib.request(
        port, "POST", enc, c.encode_body, {"Content-Type": "text/plain"}), 415)
    expect("wrong method -> 405", hlib.request(port, "DELETE", enc), 405)
    expect("unknown route -> 404", hlib.request(port, "GET", "/v1/nope"), 404)
    rows = ",".join([good_row] * 16385)
    expect("16,385 rows (max_request_rows 16,384) -> 413",
           hlib.post_json(port, enc, '{"inputs": [%s]}' % rows), 413, "too_many_rows")
    expect("binary Content-Length of 16,385 rows -> 413", hlib.raw(
        port, ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
               "Content-Length: %d\r\n\r\n" % (enc, 4 * D_IN * 16385)).encode()), 413)

    # Decode: the fuzz finding (every row empty) is answered, not undefined.
    r = hlib.post_json(port, "/v1/decode", '{"inputs": [{"indices": [], "values": []}]}')
    expect("decode of one empty row -> 200", r, 200)
    if r and r.status == 200:
        check("decode of an empty row is b_dec-shaped", len(r.json()["results"][0]) == D_IN, "")

    # 10 GiB Content-Length: 413 from the headers alone, nothing read. No body
    # byte is ever sent, so a reply at all shows saed did not wait for one
    # (waiting, it would have cut the connection at the deadline instead).
    t0 = time.time()
    r = hlib.raw(port, ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n" % (enc, 10 << 30)).encode(), timeout=10)
    dt = time.time() - t0
    expect("Content-Length 10 GiB -> 413 before the body", r, 413, "body_too_large")
    figure("413 for a 10 GiB Content-Length (s)", "%.3f" % dt)

    # A chunked body over max_body_bytes (64 MiB by default): no longer kept
    # past the cap, and refused with 413 when it ends.
    cut0 = hlib.metric(port, "saed_body_cut_total") or 0
    s = hlib.connect(port, timeout=30)
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
               "Transfer-Encoding: chunked\r\n\r\n" % enc).encode())
    chunk = b"%x\r\n" % (1 << 20) + b"\0" * (1 << 20) + b"\r\n"
    sent = 0
    try:
        for _ in range(80):
            s.sendall(chunk)
            sent += 1 << 20
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    rss = d.rss_kb()
    r = hlib.read_response(s, time.time() + 10)
    s.close()
    cut1 = hlib.metric(port, "saed_body_cut_total") or 0
    ok = r is not None and r.status == 413 and cut1 == cut0 + 1
    check("chunked body of 80 MiB over the 64 MiB cap gets 413", ok,
          "after %d MiB sent: %s; saed_body_cut_total %d -> %d" % (
              sent >> 20, "response %d" % r.status if r else "connection closed", cut0, cut1))
    normal_ok(c, d, "chunked body over the cap")
    figure("chunked over cap: outcome", "413" if r else "connection closed after %d MiB" %
           (sent >> 20))
    figure("chunked over cap: saed RSS after it (KiB)", rss)

    # Headers and URL over connection_memory_limit (64 KiB): libmicrohttpd's 431 / 414.
    big = "a" * 100000
    r = hlib.raw(port, ("GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % big).encode())
    expect("a 100 KB header -> 431", r, 431)
    r = hlib.raw(port, ("GET /v1/health?%s HTTP/1.1\r\nHost: x\r\n\r\n" % big).encode())
    expect("a 100 KB URL -> 414", r, 414)
    many = "".join("X-H%d: v\r\n" % i for i in range(10000))
    r = hlib.raw(port, ("GET /v1/health HTTP/1.1\r\nHost: x\r\n%s\r\n" % many).encode())
    expect("10,000 headers -> 431", r, 431)

    # Slow clients: a byte every 0.5 s is never idle long enough for the
    # inactivity timeout (30 s); the total deadline (request_timeout_s 4)
    # must close them.
    closed0 = hlib.metric(port, "saed_deadline_closed_total") or 0
    req = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
           "%d\r\n\r\n" % (enc, len(c.encode_body))).encode()
    results = {}

    def slow(kind):
        if kind == "headers":
            results[kind] = drip(port, req + c.encode_body.encode(), None, 0.5, 25)
        else:
            results[kind] = drip(port, req, c.encode_body.encode(), 0.5, 25)
    kinds = ("headers", "body", "headers then body")

    def slow_split():
        """The headers end just before the deadline, then the body drips:
        the deadline covers the whole request, not each part of it."""
        s = hlib.connect(port)
        t0 = time.time()
        try:
            s.sendall(req[:-2])
            time.sleep(deadline_s - 0.75)
            s.sendall(req[-2:])
            s.settimeout(0.5)
            body = c.encode_body.encode()
            i = 0
            while time.time() - t0 < 25:
                if i < len(body):
                    s.send(body[i:i + 1])
                    i += 1
                try:
                    if not s.recv(4096):
                        break
                except socket.timeout:
                    pass
            else:
                results["headers then body"] = None
                return
        except OSError:
            pass
        finally:
            s.close()
        results["headers then body"] = time.time() - t0
    ts = [threading.Thread(target=slow, args=(k,)) for k in kinds[:2]]
    ts.append(threading.Thread(target=slow_split))
    for t in ts:
        t.start()
    # Meanwhile, normal requests go on being answered.
    during = all(normal_ok(c, d, "(during slow clients)") for _ in range(3))
    for t in ts:
        t.join()
    closed1 = hlib.metric(port, "saed_deadline_closed_total") or 0
    # Cut: closed before the client gives up (25 s; nothing else closes a
    # connection that sends a byte every 0.5 s before the idle timeout, 30 s),
    # not before the deadline, and counted as a deadline close (below). How
    # soon after the deadline depends on the machine: a figure, not a check.
    for kind in kinds:
        t = results.get(kind)
        check("slow client dripping its %s is cut by the total deadline" % kind,
              t is not None and t >= deadline_s - 0.5,
              "closed after %s s (request_timeout_s %d, connection_timeout_s 30)" % (
                  "%.2f" % t if t is not None else "never", deadline_s))
        figure("slow client (%s) cut after (s)" % kind, "%.2f" % t if t is not None else "never")
    check("saed_deadline_closed_total counts them", closed1 - closed0 >= 3,
          "%d -> %d" % (closed0, closed1))
    check("requests during the slow clients were answered", during, "")
    normal_ok(c, d, "slow clients")

    # Aborted uploads: headers and part of a body, then the client closes,
    # all in one segment. Each connection must be closed by the reaper
    # (server/reaper.h), not hold a slot until the idle timeout (30 s) or the
    # deadline (4 s): libmicrohttpd's edge-triggered epoll misses that FIN.
    # Released before the deadline, with saed_deadline_closed_total unchanged,
    # means nothing but the reaper closed them, however busy the machine.
    base = hlib.metric(port, "saed_open_connections")
    closed0 = hlib.metric(port, "saed_deadline_closed_total") or 0
    for _ in range(20):
        s = hlib.connect(port)
        s.sendall(req + c.encode_body.encode()[:5])
        s.close()
    t0, left = time.time(), None
    while time.time() - t0 < deadline_s - 0.5:
        left = hlib.metric(port, "saed_open_connections")
        if left is not None and base is not None and left <= base:
            break
        time.sleep(0.05)
    released_s = time.time() - t0
    gone = hlib.metric(port, "saed_peer_gone_closed_total")
    closed1 = hlib.metric(port, "saed_deadline_closed_total") or 0
    check("20 aborted uploads release their connections before the deadline, by the reaper",
          left is not None and base is not None and left <= base and gone and gone >= 1 and
          closed1 == closed0,
          "open connections %s before, %s after %.2f s; saed_peer_gone_closed_total %s, "
          "saed_deadline_closed_total %d -> %d" % (base, left, released_s, gone, closed0, closed1))
    figure("aborted uploads: connections released after (s)", "%.2f" % released_s)
    normal_ok(c, d, "aborted uploads")
    # A client that half-closes after sending a whole request still gets its
    # reply: only requests that can no longer complete are cut.
    answered = 0
    for _ in range(5):
        s = hlib.connect(port)
        try:
            s.sendall(req + c.encode_body.encode())
            s.shutdown(socket.SHUT_WR)
            r = hlib.read_response(s, time.time() + 10)
            answered += r is not None and r.status == 200
        finally:
            s.close()
    check("5 clients half-closing after a whole request are answered", answered == 5,
          "%d of 5 got 200" % answered)

    if c.has_index:
        expect("GET /v1/features?q=a (fuzz finding: one-letter query) -> 200",
               hlib.request(port, "GET", "/v1/features?q=a"), 200)
        expect("feature index out of range -> 404",
               hlib.request(port, "GET", "/v1/features/%d" % D_SAE), 404)
        expect("feature index not a number -> 404",
               hlib.request(port, "GET", "/v1/features/1x"), 404)
        expect("feature index huge -> 404",
               hlib.request(port, "GET", "/v1/features/99999999999999999999999"), 404)
        expect("FTS syntax in q is not an error -> 200", hlib.request(
            port, "GET", "/v1/features?q=%22(*%20NEAR%20OR%20-%22"), 200)
        expect("bad limit -> 400", hlib.request(port, "GET", "/v1/features?limit=-1"), 400)
    figure("requests: RSS start -> end (KiB)", "%d -> %d" % (rss_start, d.rss_kb()))
    check("daemon still running after every hostile request", d.alive(), "")
    st = d.stop()
    check("daemon exits 0 on SIGTERM after the hostile requests", st == 0, "exit %s" % st)


# ---------------------------------------------------------------- costly requests

def wait_idle(c, d, limit=120):
    """Waits until a normal request is answered quickly again (the work of
    earlier requests may go on after their replies or cut connections)."""
    t_end = time.time() + limit
    while time.time() < t_end:
        t0 = time.time()
        r = hlib.request(d.port, "GET", "/v1/health", timeout=limit)
        if r is not None and r.status == 200 and time.time() - t0 < 0.05:
            return True
        time.sleep(0.2)
    return False


def not_held_up(c, d, n, send, what, figure_name):
    """n threads run send() at once; a normal request meanwhile must be answered
    correctly (what names the costly requests, plural). How long it took is a
    figure: speed is for the benchmarks, not a check on a shared machine."""
    hs = [threading.Thread(target=send) for _ in range(n)]
    for h in hs:
        h.start()
    time.sleep(0.5)
    t0 = time.time()
    ok = normal_ok(c, d, "(while %d such %s run)" % (n, what.split()[-1]))
    dt = time.time() - t0
    check("%d concurrent %s do not hold up a normal request" % (n, what),
          ok, "the normal request took %.2f s" % dt)
    figure(figure_name, "%.2f" % dt)
    for h in hs:
        h.join()


def test_costly(c):
    """Requests that are valid but cost far more than their size: each must
    be answered (or refused), and several at once must not hold up a normal
    request. saed with its default limits and deadlines. What they cost is
    printed as figures (docs/SECURITY.md), not checked against a number of
    seconds: that depends on the machine and how busy it is."""
    if not c.has_index:
        log("SKIP: route missing: no feature index served")
        return
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet"] + c.index_args, name="costly")
    if not check("daemon for the costly requests starts", d.start()):
        return
    port = d.port
    enc = "/v1/encode"
    # include=features looks up every returned feature in the index: a
    # request of 2,048 rows of large activations (some 70 active features
    # each) must not cost much more than the encode itself.
    rng = random.Random(2)
    rows = [[round(rng.gauss(0, 3), 3) for _ in range(D_IN)] for _ in range(2048)]
    plain = json.dumps({"inputs": rows})
    with_f = json.dumps({"inputs": rows, "include": ["features"]})
    t0 = time.time()
    r0 = hlib.post_json(port, enc, plain, timeout=300)
    t_plain = time.time() - t0
    wait_idle(c, d)
    t0 = time.time()
    r1 = hlib.post_json(port, enc, with_f, timeout=300)
    t_feat = time.time() - t0
    nnz = sum(len(x["indices"]) for x in r0.json()["results"]) if r0 and r0.status == 200 else 0
    check("include features on 2,048 rows (%d features) is answered" % nnz,
          r0 is not None and r0.status == 200 and r1 is not None and r1.status == 200,
          "%.2f s with, %.2f s without" % (t_feat, t_plain))
    figure("include features, 2,048 rows, %d features returned (s)" % nnz,
           "%.2f (encode alone %.2f)" % (t_feat, t_plain))
    wait_idle(c, d)
    not_held_up(c, d, 3, lambda: hlib.post_json(port, enc, with_f, timeout=300),
                "include-features requests", "normal request during 3 include-features requests (s)")
    wait_idle(c, d)

    # A search of many words (20 KB, well inside the URL limit) must cost
    # little or be refused, and several at once must not hold up everyone
    # else: the full-text query runs on the threads that serve every request.
    heavy = "/v1/features?q=" + "+".join(["cat"] * 5000)
    t0 = time.time()
    r = hlib.request(port, "GET", heavy, timeout=300)
    dt = time.time() - t0
    check("a 5,000-word search (20 KB) is answered or refused",
          r is not None and r.status in (200, 400),
          "status %s after %.2f s" % (r.status if r else "none", dt))
    figure("5,000-word search (s)", "%.2f" % dt)
    wait_idle(c, d)
    t0 = time.time()
    r = hlib.request(port, "GET", "/v1/features?q=" + "+".join("w%d" % i for i in range(5000)),
                     timeout=300)
    dt = time.time() - t0
    check("a search of 5,000 distinct words is answered or refused",
          r is not None and r.status in (200, 400),
          "status %s after %.2f s" % (r.status if r else "none", dt))
    figure("5,000 distinct words search (s)", "%.2f" % dt)
    # The words of the explanations, each matching many features: the most
    # a search can ask of the full-text index.
    t0 = time.time()
    r = hlib.request(port, "GET", "/v1/features?sort=relevance&q=" + "+".join(WORDS * 2),
                     timeout=300)
    dt = time.time() - t0
    check("a search of every indexed word is answered",
          r is not None and r.status in (200, 400),
          "status %s after %.2f s" % (r.status if r else "none", dt))
    figure("search of every indexed word (s)", "%.2f" % dt)
    wait_idle(c, d)
    not_held_up(c, d, 4, lambda: hlib.request(port, "GET", heavy, timeout=300),
                "5,000-word searches", "normal request during 4 heavy searches (s)")
    d.stop()


# ---------------------------------------------------------------- auth

def test_auth(c):
    key = "hardening-%d" % random.Random(1).randrange(1 << 40)
    env = dict(os.environ, SAED_API_KEY=key)
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet"] + c.index_args, name="auth", env=env)
    if not check("daemon with an API key (from $SAED_API_KEY) starts", d.start()):
        return
    port = d.port
    good = {"Authorization": "Bearer " + key}
    guarded = [("POST", "/v1/encode"), ("POST", "/v1/decode"), ("GET", "/v1/model"),
               ("GET", "/metrics"), ("GET", "/v1/features"), ("GET", "/v1/features/0"),
               ("GET", "/api/feature/m/l/0")]
    for method, path in guarded:
        for name, h in (("no key", {}), ("wrong key", {"Authorization": "Bearer " + key[:-1]}),
                        ("key as Basic", {"Authorization": "Basic " + key}),
                        ("key plus a byte", {"Authorization": "Bearer " + key + "x"})):
            hh = dict(h)
            hh["Content-Type"] = "application/json"
            r = hlib.request(port, method, path, c.encode_body if method == "POST" else b"", hh)
            check("auth: %s %s with %s -> 401" % (method, path, name),
                  r is not None and r.status == 401 and r.error_code() == "unauthorized" and
                  "www-authenticate" in r.headers, "got %s" % (r.status if r else "none"))
    r = hlib.raw(port, ("POST /v1/encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        "\r\nContent-Length: %d\r\n\r\n" % (10 << 30)).encode(), timeout=10)
    check("auth: 10 GiB body without the key -> 401 before the body",
          r is not None and r.status == 401, "got %s" % (r.status if r else "none"))
    for path in ("/v1/health", "/openapi.json"):
        r = hlib.request(port, "GET", path)
        check("auth: %s stays open" % path, r is not None and r.status == 200,
              "got %s" % (r.status if r else "none"))
    r = hlib.post_json(port, "/v1/encode", c.encode_body, good)
    check("auth: encode with the key -> 200", r is not None and r.status == 200,
          "got %s" % (r.status if r else "none"))
    r = hlib.request(port, "GET", "/metrics", headers=good)
    check("auth: /metrics with the key -> 200", r is not None and r.status == 200,
          "got %s" % (r.status if r else "none"))
    cmdline = open("/proc/%d/cmdline" % d.pid, "rb").read()
    check("auth: the key is not on saed's command line", key.encode() not in cmdline, "")
    check("auth: the key is not in saed's log", key not in d.log_text(), "")
    d.stop()


# ---------------------------------------------------------------- load

def wrk(c, port, seconds, conns, threads=2, timeout="10s"):
    """Runs wrk with mix.lua on the fixture's encode body and words in the
    background (hlib.wrk_mix); returns the Popen."""
    return hlib.wrk_mix(port, seconds, conns, c.body_file, D_SAE if c.has_index else 0, WORDS,
                        threads=threads, timeout=timeout)


def test_load(c):
    seconds = 60 if c.a.full else 20
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet"] + c.index_args, name="load")
    if not check("daemon for the load test starts", d.start()):
        return
    normal_ok(c, d, "start")
    t0 = time.time()
    p = wrk(c, d.port, seconds, 256)
    # RSS as the median of samples over a second, after 10 s and in the last
    # seconds of the run (both under load).
    time.sleep(max(0.0, t0 + 10 - time.time()))
    rss10 = d.rss_median_kb()
    time.sleep(max(0.0, t0 + seconds - 2.5 - time.time()))
    rss_end = d.rss_median_kb()
    still_loaded = p.poll() is None
    res = wrk_result(p)
    check("load: RSS sampled under load", still_loaded, "")
    load_checks("load %d s x 256 connections" % seconds, res)
    change = (rss_end - rss10) / rss10
    check("load: RSS at the end within 5 % of RSS after 10 s", abs(change) <= 0.05,
          "%d KiB -> %d KiB (%+.2f %%)" % (rss10, rss_end, 100 * change))
    figure("load: RSS after 10 s -> end (KiB)", "%d -> %d (%+.2f %%)" % (
        rss10, rss_end, 100 * change))
    normal_ok(c, d, "load")
    d.stop()


def test_overload(c):
    seconds = 30 if c.a.full else 10
    queue = 64
    d = hlib.Saed(c.saed, c.model, c.work,
                  ["--quiet", "--max-queue-rows", str(queue), "--max-request-rows", str(queue)],
                  name="overload")
    if not check("daemon for the overload test starts", d.start()):
        return
    rng = random.Random(5)
    rows = [[round(rng.gauss(0, 1), 5) for _ in range(D_IN)] for _ in range(32)]
    body = json.dumps({"inputs": rows})
    reqf = os.path.join(c.work, "overload.http")
    with open(reqf, "w") as f:
        f.write("POST /v1/encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n%s" % (len(body), body))
    # 16 closed-loop connections of 32 rows against a queue of 64 rows: two
    # requests fit, fourteen are excess at any moment. (Closed-loop latency
    # is connections / throughput, so many more connections would measure
    # the polling threads' throughput on this machine, not how fast a
    # refusal is; docs/SECURITY.md gives the 64-connection figure too.)
    conns = 16
    p = subprocess.Popen([c.hload, "--port", str(d.port), "--conns", str(conns), "--seconds",
                          str(seconds), "--request", reqf],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    rss2 = d.rss_kb()
    peak = rss2
    while p.poll() is None:
        peak = max(peak, d.rss_kb())
        time.sleep(0.25)
    out, err = p.communicate()
    rss_end = d.rss_kb()
    try:
        res = json.loads(out)
    except ValueError:
        check("overload: hload ran", False, out + err)
        d.stop()
        return
    st = res["statuses"]
    ok200, ok503 = st.get("200", {"n": 0}), st.get("503", {"n": 0})
    others = {k: v["n"] for k, v in st.items() if k not in ("200", "503")}
    check("overload: only 200 and 503", not others, "others %s" % others)
    check("overload: the excess got 503", ok503["n"] > 0 and ok200["n"] > 0,
          "%d accepted, %d refused" % (ok200["n"], ok503["n"]))
    check("overload: every 503 has Retry-After", res["retry_after_missing"] == 0,
          "%d without" % res["retry_after_missing"])
    errs = sum(res["errors"].values())
    check("overload: no socket errors or timeouts", errs == 0, json.dumps(res["errors"]))
    # A refusal waits for no encode: its median latency is below an accepted
    # request's, measured in the same run (no number of milliseconds, which
    # would depend on the machine and its load).
    if ok503["n"] and ok200["n"]:
        check("overload: a 503 comes sooner than an accepted reply (medians)",
              ok503["p50_ms"] < ok200["p50_ms"],
              "503 p50 %.2f ms, 200 p50 %.2f ms" % (ok503["p50_ms"], ok200["p50_ms"]))
    if ok503["n"]:
        figure("overload: 503 latency p50/p99/max (ms), %d connections" % conns,
               "%.2f/%.2f/%.2f over %d" % (ok503["p50_ms"], ok503["p99_ms"], ok503["max_ms"],
                                           ok503["n"]))
    if ok200["n"]:
        figure("overload: accepted latency p50/p99/max (ms)", "%.2f/%.2f/%.2f over %d" % (
            ok200["p50_ms"], ok200["p99_ms"], ok200["max_ms"], ok200["n"]))
    change = (peak - rss2) / rss2
    check("overload: RSS flat (peak from 2 s to the end within 5 % of RSS at 2 s)",
          change <= 0.05, "%d KiB at 2 s, peak %d, end %d (%+.2f %%)" % (
              rss2, peak, rss_end, 100 * change))
    figure("overload: RSS at 2 s / peak / end (KiB)", "%d / %d / %d" % (rss2, peak, rss_end))
    normal_ok(c, d, "overload")
    d.stop()


def test_reload(c):
    seconds = 60 if c.a.full else 20
    n_hup = 100
    live = os.path.join(c.work, "reload-model")
    shutil.copytree(c.model, live)
    wpath = os.path.join(live, "sae_weights.safetensors")
    d = hlib.Saed(c.saed, live, c.work, ["--quiet"] + c.index_args, name="reload")
    if not check("daemon for the reload test starts", d.start()):
        return
    normal_ok(c, d, "start")
    # wrk runs until the last sample is taken, however long the reloads take
    # on this machine (a fixed wrk duration would end early on a busy one).
    p = wrk(c, d.port, None, 64)
    time.sleep(2)

    # Reloads first, under the same load and swapping the weights file as
    # the measured ones do, so the allocator's arenas have settled before
    # the baseline is taken: from a cold start they grow by 1.5-2.2 MiB over
    # the first 20 reloads and then stay (measured the same on fe06134),
    # which is warm-up, not a leak. A swap makes a new snapshot, whose index
    # replies are pre-rendered on `threads` threads (prerender_features): a
    # warm-up without swaps never ran that, and the baseline came before its
    # arenas grew (23.4 MiB, then 26.3 after 20 swapped reloads and 26.4 after
    # 100). The leak check is the 20th-to-100th comparison.
    def swap():
        shutil.copyfile(c.model + "/sae_weights.safetensors", wpath + ".new")
        os.rename(wpath + ".new", wpath)

    n_warm = 10
    for i in range(n_warm):
        swap()
        d.signal(signal.SIGHUP)
        d.wait_log("saed: reloaded", i + 1, timeout=30)
    fds0, files0, rss0 = d.n_fds(), hlib.n_files(d.pid), d.rss_median_kb()
    # 100 SIGHUPs spread over the run, each after swapping the weights file
    # for an identical copy (a new inode, as a deploy would), so every
    # reload maps a new file and the old mapping must be released. Each is
    # sent once the previous reload is logged: two SIGHUPs pending at once
    # are one signal (POSIX does not queue them), which on a busy machine
    # would make fewer reloads than signals.
    span = seconds - 8
    t_start = time.time()
    reloaded = True
    rss20 = rss0
    for i in range(n_hup):
        swap()
        d.signal(signal.SIGHUP)
        reloaded = d.wait_log("saed: reloaded", n_warm + i + 1, timeout=30) and reloaded
        if i + 1 == 20:
            rss20 = d.rss_median_kb(0.5, 5)
        time.sleep(max(0.0, t_start + span * (i + 1) / n_hup - time.time()))
    figure("reload: time for %d reloads under load (s)" % n_hup, "%.1f" % (time.time() - t_start))
    time.sleep(1)
    # Still under load: the same conditions as the first sample.
    still_loaded = p.poll() is None
    fds1, files1, rss1 = d.n_fds(), hlib.n_files(d.pid), d.rss_median_kb()
    if still_loaded:
        p.send_signal(signal.SIGINT)
    res = wrk_result(p)
    load_checks("reload: wrk x 64 connections with %d SIGHUPs" % n_hup, res)
    check("reload: all %d reloads succeeded" % n_hup, reloaded and
          d.log_count("reload failed") == 0,
          "%d reloaded, %d failed" % (d.log_count("saed: reloaded") - n_warm,
                                      d.log_count("reload failed")))
    check("reload: both samples taken under load", still_loaded, "")
    # A leaked snapshot would also stay mapped: checked below.
    hlib.reload_stable("reload", (fds0, files0, rss0), rss20, (fds1, files1, rss1))
    maps = 0
    with open("/proc/%d/maps" % d.pid) as f:
        for line in f:
            if "sae_weights" in line:
                maps += 1
    check("reload: only the current weights file stays mapped", maps <= 2,
          "%d mappings of sae_weights" % maps)
    normal_ok(c, d, "100 reloads")
    d.stop()


# ---------------------------------------------------------------- index builds

def index_corpus(c, work, rows):
    """Writes the kill corpus of `rows` rows into work: a fixture model (model/),
    its activations (acts.npy) and tokens.jsonl. Returns mkfixture's result."""
    r = hlib.run([c.mkfixture, "--out", os.path.join(work, "model"), "--arch", "standard",
                  "--d-in", str(D_IN), "--d-sae", str(D_SAE), "--target-l0", "8",
                  "--activations", os.path.join(work, "acts.npy"), "--rows", str(rows)])
    rng = random.Random(3)
    with open(os.path.join(work, "tokens.jsonl"), "w") as f:
        left = rows
        d = 0
        while left:
            n = min(left, rng.randint(20, 200))
            f.write(json.dumps({"id": "d%d" % d, "tokens": [" " + rng.choice(WORDS)
                                                           for _ in range(n)]}) + "\n")
            left -= n
            d += 1
    return r


def test_index(c):
    # The kill corpus is sized from a measurement: the 20 kill moments are
    # spread over one build, which must last long enough for them to fall
    # into its phases (reading, encoding, writing) and not all into process
    # start-up. From `rows`, the corpus grows until a build takes min_s on
    # this machine (a slow or busy one needs no growing); nothing asserts
    # how long a build takes.
    rows = 100000 if not c.a.full else 400000
    min_s = 0.5 if not c.a.full else 1.0
    work = os.path.join(c.work, "idx")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "model")
    acts = os.path.join(work, "acts.npy")
    tokens = os.path.join(work, "tokens.jsonl")
    target = os.path.join(work, "features.db")

    def build(out, extra=(), **kw):
        return [c.sae, "index", "--model", model, "--activations", acts, "--tokens", tokens,
                "--out", out, "--quiet"] + list(extra)

    for attempt in range(5):
        r = index_corpus(c, work, rows)
        if not check("index: fixture corpus of %d rows" % rows, r.returncode == 0,
                     r.stderr.strip()):
            return
        r = hlib.run(build(target, ["--top", "10"]))
        if not check("index: first build", r.returncode == 0, r.stderr.strip()):
            return
        # The second build differs (other settings), so a torn or early rename
        # could not pass for the old file. It is the build the kills interrupt.
        t0 = time.monotonic()
        r = hlib.run(build(os.path.join(work, "other.db"), ["--top", "20", "--seed", "9"]))
        full_s = time.monotonic() - t0
        if not check("index: second build", r.returncode == 0, r.stderr.strip()):
            return
        if full_s >= min_s:
            break
        rows = int(rows * min(8.0, 1.25 * min_s / max(full_s, 0.01)))
    before = hlib.sha256(target)
    size = os.path.getsize(target)
    figure("index: build time of the kill corpus (s)", "%.2f (%d rows)" % (full_s, rows))

    new_hash = hlib.sha256(os.path.join(work, "other.db"))
    saved = os.path.join(work, "previous.db")
    shutil.copyfile(target, saved)
    check("index: the two builds differ", new_hash != before, "")

    rng = random.Random(int(os.environ.get("HARDENING_SEED", "20240607")))
    kills = 20
    intact = replaced = 0
    moments = sorted(rng.uniform(0.0, full_s * 1.05) for _ in range(kills))
    for i, at in enumerate(moments):
        p = subprocess.Popen(build(target, ["--top", "20", "--seed", "9"]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(at)
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = hlib.sha256(target) if os.path.exists(target) else "missing"
        # Killed before the rename: the previous index, byte for byte. Killed
        # after it (the process was still exiting): the complete new one,
        # byte for byte (the build is deterministic). Nothing in between.
        ok = got in (before, new_hash)
        intact += got == before
        replaced += got == new_hash
        check("index: SIGKILL %d at %.2f s leaves the previous index byte-identical "
              "(or the complete new one)" % (i + 1, at), ok,
              "previous" if got == before else "new" if got == new_hash else "neither: " + got)
        if got != before:
            shutil.copyfile(saved, target + ".restore")
            os.rename(target + ".restore", target)
    check("index: kills landed mid-build (the previous index intact after at least one)",
          intact >= 1, "%d of %d" % (intact, kills))
    figure("index: SIGKILLs: previous index intact / complete new index / other",
           "%d / %d / %d of %d (moments %s s)" % (
               intact, replaced, kills - intact - replaced, kills,
               ", ".join("%.2f" % m for m in moments)))
    stale = [f for f in os.listdir(work) if ".tmp-" in f]
    r = hlib.run(build(target, ["--top", "20", "--seed", "9"]))
    after = [f for f in os.listdir(work) if ".tmp-" in f]
    check("index: the next build completes and removes the killed builds' temporary files",
          r.returncode == 0 and not after, "%d stale before, %d after" % (len(stale), len(after)))
    r = hlib.run(build(target, ["--top", "10"]))  # the old content again

    # Full disk: the target on a tmpfs with room for the old index and a
    # little more, not for a second one.
    mnt = os.path.join(work, "tmpfs")
    os.makedirs(mnt, exist_ok=True)
    fs_size = size + size // 4
    if os.environ.get("HARDENING_NO_MOUNT"):  # exercise the fallback
        m = subprocess.CompletedProcess([], 1, "", "HARDENING_NO_MOUNT is set")
    else:
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % fs_size, "tmpfs", mnt],
                           capture_output=True, text=True)
    if m.returncode:
        log("mount -t tmpfs not permitted (%s); using RLIMIT_FSIZE instead" % m.stderr.strip())
        disk_target = os.path.join(work, "fsize.db")
        shutil.copy(target, disk_target)
        old = hlib.sha256(disk_target)
        r = subprocess.run(["bash", "-c", "trap '' XFSZ; ulimit -f %d; exec \"$@\"" %
                            ((size // 2) // 1024), "bash"] +
                           build(disk_target, ["--top", "20", "--seed", "9"]),
                           capture_output=True, text=True)
        how = "RLIMIT_FSIZE %d KiB" % ((size // 2) // 1024)
    else:
        disk_target = os.path.join(mnt, "features.db")
        shutil.copy(target, disk_target)
        old = hlib.sha256(disk_target)
        r = hlib.run(build(disk_target, ["--top", "20", "--seed", "9"]))
        how = "tmpfs of %d bytes" % fs_size
    try:
        msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        check("index: a full disk (%s) fails the build with status 1" % how, r.returncode == 1,
              "exit %d: %s" % (r.returncode, msg[:200]))
        check("index: ... and leaves the previous index byte-identical",
              hlib.sha256(disk_target) == old, "")
        left = [f for f in os.listdir(os.path.dirname(disk_target)) if ".tmp-" in f]
        check("index: ... and removes its temporary file", not left, "left: %s" % left)
        figure("index: full disk outcome", "%s: exit %d, %s" % (how, r.returncode, msg[:120]))
    finally:
        if m.returncode == 0:
            subprocess.run(["umount", mnt])


# ---------------------------------------------------------------- static files

def test_static(c):
    secret = b"root:"  # /etc/passwd's first line starts with it
    with open("/etc/passwd", "rb") as f:
        if not f.read().startswith(secret):
            log("/etc/passwd does not start with root:; the leak check is weaker")
    paths = ["/../../../../etc/passwd", "/web/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
             "/%2E%2E/%2E%2E/%2E%2E/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
             "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd", "//etc/passwd", "/etc/passwd",
             "/%2fetc%2fpasswd", "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
             "/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/assets/....//....//etc/passwd",
             "/assets/%00../../etc/passwd", "/assets/..\\..\\..\\etc\\passwd",
             "/assets/%2e%2e%5c%2e%2e%5cetc%5cpasswd", "/assets/.htaccess", "/assets/.",
             "/assets/..", "/assets/", "/assets//etc/passwd", "/index.html/../../etc/passwd",
             "/features/..%2f..%2f..%2fetc%2fpasswd", "/assets/%252e%252e/%252e%252e/etc/passwd",
             "http://x/../../etc/passwd", "/assets/leak.js", "/assets/outside/passwd",
             "/leakdir/passwd", "/assets/" + "a" * 5000]

    def attempt(d, what):
        for p in paths:
            r = hlib.raw(d.port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" %
                                  p).encode())
            leaked = r is not None and secret in r.body
            check("static (%s): %s refused" % (what, p[:80]),
                  r is not None and r.status in (400, 403, 404, 414) and not leaked,
                  "status %s" % (r.status if r else "none"))
        normal_ok(c, d, "path traversal attempts (%s)" % what)

    # The default folder: the source tree's web/ (saed runs from its build folder).
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet"], name="static")
    if not check("daemon for the static test starts", d.start()):
        return
    r = hlib.request(d.port, "GET", "/")
    served = r is not None and r.status == 200 and b"<" in r.body
    check("static: GET / serves the browser", served, "status %s" % (r.status if r else "none"))
    if served:
        attempt(d, "default web root")
    d.stop()

    # A web root with symlinks pointing out of it: a file symlink in assets/,
    # a folder symlink beside it, and a root whose assets/ is itself a
    # symlink to /etc.
    web2 = os.path.join(c.work, "web-links")
    shutil.copytree(os.path.join(ROOT, "web"), web2, symlinks=True)
    os.symlink("/etc/passwd", os.path.join(web2, "assets", "leak.js"))
    os.symlink("/etc", os.path.join(web2, "assets", "outside"))
    os.symlink("/etc", os.path.join(web2, "leakdir"))
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet", "--web-root", web2], name="static-links")
    if check("daemon with a web root holding symlinks out starts", d.start()):
        r = hlib.request(d.port, "GET", "/assets/leak.js")
        check("static: a file symlink to /etc/passwd is not followed",
              r is not None and r.status == 404 and secret not in r.body,
              "status %s" % (r.status if r else "none"))
        attempt(d, "symlinks in web root")
        d.stop()
    web3 = os.path.join(c.work, "web-assets-link")
    os.makedirs(web3)
    shutil.copy(os.path.join(ROOT, "web", "index.html"), web3)
    os.symlink("/etc", os.path.join(web3, "assets"))
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet", "--web-root", web3], name="static-dir")
    if d.start():
        r = hlib.request(d.port, "GET", "/assets/passwd")
        check("static: assets/ as a symlink to /etc is not followed",
              r is not None and r.status == 404 and secret not in r.body,
              "status %s" % (r.status if r else "none"))
        d.stop()
    else:
        check("static: a web root whose assets/ is a symlink out is refused at start-up",
              "saed: error" in d.log_text(), d.log_text()[-200:])
    web4 = os.path.join(c.work, "web-index-link")
    os.makedirs(os.path.join(web4, "assets"))
    os.symlink("/etc/passwd", os.path.join(web4, "index.html"))
    d = hlib.Saed(c.saed, c.model, c.work, ["--quiet", "--web-root", web4], name="static-index")
    if d.start():
        r = hlib.request(d.port, "GET", "/")
        check("static: index.html as a symlink to /etc/passwd is not followed",
              r is not None and r.status != 200 and secret not in r.body,
              "status %s" % (r.status if r else "none"))
        d.stop()
    else:
        check("static: a web root whose index.html is a symlink out is refused at start-up",
              "saed: error" in d.log_text(), d.log_text()[-200:])


# ---------------------------------------------------------------- main

TESTS = [("weights", test_weights), ("requests", test_requests), ("costly", test_costly),
         ("auth", test_auth),
         ("load", test_load),
         ("overload", test_overload), ("reload", test_reload), ("index", test_index),
         ("static", test_static)] + round2.TESTS + many.TESTS


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--ci", action="store_true", help="short runs (default)")
    mode.add_argument("--full", action="store_true", help="the full-length runs")
    ap.add_argument("--saed", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--mkfixture", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    for p in (a.saed, a.sae, a.mkfixture):
        if not os.access(p, os.X_OK):
            raise SystemExit("hardening: %s is not an executable" % p)
    a.saed, a.sae, a.mkfixture = map(os.path.abspath, (a.saed, a.sae, a.mkfixture))
    only = [x for x in a.only.split(",") if x]
    for o in only:
        if o not in dict(TESTS):
            raise SystemExit("hardening: unknown test %s" % o)
    c = setup(a)
    t_all = time.time()
    try:
        for name, fn in TESTS:
            if only and name not in only:
                continue
            log("--- %s" % name)
            t0 = time.time()
            try:
                fn(c)
            except Exception as e:  # a crash of the test itself is a failure
                import traceback
                traceback.print_exc()
                check("%s ran to the end" % name, False, repr(e))
            finally:
                hlib.Saed.kill_all()
                hlib.Saed.running.clear()
            log("--- %s took %.1f s" % (name, time.time() - t0))
    finally:
        hlib.Saed.kill_all()
        if not a.keep and not a.workdir:
            shutil.rmtree(c.work, ignore_errors=True)
    passed, failed = hlib.tally()
    log("all tests took %.1f s" % (time.time() - t_all))
    print("hardening: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
