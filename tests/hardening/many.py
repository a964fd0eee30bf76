"""many.py: the hardening test of issue 14 ("Many SAEs in one saed"), run by
hardening.py like its own tests (--only saes):

  saes  four SAEs in one saed (--sae ID=DIR, each with --index ID=FILE), wrk
        on three of them (/v1/saes/{id}/encode and /features/{i}, and
        /v1/search) and, apart, on the fourth; 110 SIGHUPs (10 to warm up,
        then the 100 measured), each after breaking the fourth's folder or
        repairing it in turn. A break is what a deploy gone wrong leaves,
        renamed in as a deploy renames: the weights truncated, cfg.json not
        JSON, the weights deleted, a cfg.json of another shape. A repair
        renames in new copies of the good files (a new inode each time, so
        every repair maps a new weights file and the old one must go). Checks:
        0 failed requests to the other three, and none to the fourth either
        (its previous version serves while it is broken); every break logged
        and counted as a failed reload of that SAE only, every repair as a
        reload of it; the other three never loaded again; open files and RSS
        stable from reload 20 to 100; one mapping of the fourth's weights
        left; each SAE then answers as `sae encode`."""
import json
import os
import shutil
import signal
import time

import hlib
from hlib import check, figure, load_checks, wrk_result

WORDS = ["cat", "dog", "river", "mountain", "code", "music", "red", "blue"]
HEALTHY = ["a", "b", "c"]
BROKEN = "broken"


def put(path, data):
    """Writes data next to path and renames it over path (what a deploy
    does: a reader sees the old file or the new one, never half)."""
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.rename(path + ".new", path)


def breakers(model):
    """The four ways the fourth SAE's folder is broken, in turn: (what, fn
    of its folder)."""
    with open(os.path.join(model, "sae_weights.safetensors"), "rb") as f:
        weights = f.read()
    with open(os.path.join(model, "cfg.json")) as f:
        cfg = json.load(f)
    other = dict(cfg, d_sae=cfg["d_sae"] * 2)
    return [
        ("weights truncated",
         lambda d: put(os.path.join(d, "sae_weights.safetensors"), weights[:len(weights) // 2])),
        ("cfg.json not JSON", lambda d: put(os.path.join(d, "cfg.json"), b"{\"d_in\": 64,")),
        ("weights deleted", lambda d: os.unlink(os.path.join(d, "sae_weights.safetensors"))),
        ("cfg.json of another shape",
         lambda d: put(os.path.join(d, "cfg.json"), json.dumps(other).encode())),
    ]


def repair(model, d):
    """Renames new copies of the good cfg.json and weights into folder d."""
    for name in ("cfg.json", "sae_weights.safetensors"):
        shutil.copyfile(os.path.join(model, name), os.path.join(d, name + ".new"))
        os.rename(os.path.join(d, name + ".new"), os.path.join(d, name))


def encode_ok(c, d, sae):
    """An encode on /v1/saes/{sae}/encode answered as `sae encode` answers it."""
    r = hlib.post_json(d.port, "/v1/saes/%s/encode" % sae, c.encode_body)
    if r is None or r.status != 200:
        return False
    got, ref = r.json()["results"][0], c.reference
    return (got["indices"] == ref["indices"] and
            all(abs(x - y) <= 1e-5 * max(1.0, abs(y)) for x, y in zip(got["values"],
                                                                       ref["values"])))


def sae_metric(d, sae, result):
    """saed_sae_reloads_total{sae, result}, or None."""
    return hlib.metric(d.port, 'saed_sae_reloads_total{sae="%s",result="%s"}' % (sae, result))


def test_saes(c):
    if not c.has_index:
        hlib.log("SKIP: saes: this saed serves no index")
        return
    seconds = 60 if c.a.full else 20
    n_warm, n_hup = 10, 100
    root = os.path.join(c.work, "many")
    args = ["--quiet"]
    for sae in HEALTHY + [BROKEN]:
        shutil.copytree(c.model, os.path.join(root, sae))
        args += ["--sae", "%s=%s" % (sae, os.path.join(root, sae)),
                 "--index", "%s=%s" % (sae, c.index)]
    broken_dir = os.path.join(root, BROKEN)
    d = hlib.Saed(c.saed, None, c.work, args, name="saes")
    if not check("saes: saed with four SAEs starts", d.start()):
        return
    check("saes: each SAE answers as sae encode at the start",
          all(encode_ok(c, d, s) for s in HEALTHY + [BROKEN]), "")
    cpus = os.cpu_count() or 1
    conns_others, conns_broken = max(16, 16 * cpus), max(4, 4 * cpus)
    others = hlib.wrk_mix(d.port, None, conns_others, c.body_file, 256, WORDS, HEALTHY)
    on_broken = hlib.wrk_mix(d.port, None, conns_broken, c.body_file, 256, WORDS, [BROKEN],
                             threads=1)
    time.sleep(2)
    kinds = breakers(c.model)
    want = {"fail": 0, "ok": 0}
    count = {"fail": 0, "ok": 0}
    logged = True

    def hup(i):
        """The i-th SIGHUP: even i breaks the fourth SAE (the next way),
        odd i repairs it; waits for the reload's log line."""
        nonlocal logged
        if i % 2 == 0:
            kinds[(i // 2) % len(kinds)][1](broken_dir)
            key, needle = "fail", "saed: reload failed, still serving weights"
        else:
            repair(c.model, broken_dir)
            key, needle = "ok", "saed: reloaded in"
        want[key] += 1
        d.signal(signal.SIGHUP)
        logged = d.wait_log(needle, want[key], timeout=30) and logged
    # The allocator's arenas settle over the first reloads (as in the
    # reload test): the baseline is taken after n_warm of them.
    for i in range(n_warm):
        hup(i)
    fds0, files0, rss0 = d.n_fds(), hlib.n_files(d.pid), d.rss_median_kb()
    span = seconds - 8
    t_start = time.time()
    rss20 = rss0
    for i in range(n_hup):
        hup(n_warm + i)
        if i + 1 == 20:
            rss20 = d.rss_median_kb(0.5, 5)
        time.sleep(max(0.0, t_start + span * (i + 1) / n_hup - time.time()))
    figure("saes: time for %d break/repair reloads under load (s)" % n_hup,
           "%.1f" % (time.time() - t_start))
    time.sleep(1)
    still_loaded = others.poll() is None and on_broken.poll() is None
    fds1, files1, rss1 = d.n_fds(), hlib.n_files(d.pid), d.rss_median_kb()
    for p in (others, on_broken):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    load_checks("saes: wrk x %d on the three others during %d SIGHUPs" % (conns_others,
                                                                          n_warm + n_hup),
                wrk_result(others))
    load_checks("saes: wrk x %d on the SAE broken and repaired" % conns_broken,
                wrk_result(on_broken))
    check("saes: both samples taken under load", still_loaded, "")
    count["fail"] = d.log_count("saed: reload failed, still serving weights")
    count["ok"] = d.log_count("saed: reloaded in")
    check("saes: each break a failed reload, each repair a reload (logged)",
          logged and count == want and d.log_count("saed: reload failed") == want["fail"],
          "breaks %d logged %d, repairs %d logged %d" % (want["fail"], count["fail"],
                                                       want["ok"], count["ok"]))
    m = {r: sae_metric(d, BROKEN, r) for r in ("ok", "failed", "unchanged")}
    check("saes: the broken SAE's reloads counted (ok, failed, unchanged)",
          m == {"ok": want["ok"], "failed": want["fail"], "unchanged": 0}, "%s" % m)
    untouched = {s: (sae_metric(d, s, "unchanged"), sae_metric(d, s, "ok"),
                     sae_metric(d, s, "failed"), d.log_count("saed: %s: loaded" % s))
                 for s in HEALTHY}
    total = n_warm + n_hup
    check("saes: the other three untouched by every reload (unchanged, ok, failed, loads)",
          all(v == (total, 0, 0, 0) for v in untouched.values()), "%s" % untouched)
    hlib.reload_stable("saes", (fds0, files0, rss0), rss20, (fds1, files1, rss1))
    maps = 0
    with open("/proc/%d/maps" % d.pid) as f:
        for line in f:
            if os.path.join(broken_dir, "sae_weights") in line:
                maps += 1
    check("saes: only the broken SAE's current weights file stays mapped", maps <= 2,
          "%d mappings" % maps)
    check("saes: each SAE answers as sae encode after the reloads",
          all(encode_ok(c, d, s) for s in HEALTHY + [BROKEN]) and d.alive(), "")
    d.stop()


TESTS = [("saes", test_saes)]
