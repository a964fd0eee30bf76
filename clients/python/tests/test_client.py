"""saed_client against a real saed on loopback (unittest, no network).

Every encode is checked row for row against `sae encode --model` on the same
rows (exact float32 equality), so a lost, duplicated or misplaced row fails:
the big jobs draw their rows from a small base block at random, and each
result row must be its base row's.

env: SAED_BIN, SAE_BIN, MKFIXTURE (meson sets them), SAE_TEST_TMP.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import numpy as np

import saed_client
from saed_client import Client, NotSupportedError, SaedError, WeightsChangedError

SAED, SAE, MK = os.environ["SAED_BIN"], os.environ["SAE_BIN"], os.environ["MKFIXTURE"]
D_IN, D_SAE, BASE = 16, 64, 400


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Daemon:
    """A saed process on 127.0.0.1 (port 0: any free one), its log in tmp."""

    def __init__(self, tmp: str, model: str, args: list, port: int = 0) -> None:
        self.log = tempfile.mktemp(prefix="saed-", suffix=".log", dir=tmp)
        with open(self.log, "w") as f:
            self.p = subprocess.Popen([SAED, "--model", model, "--listen", "127.0.0.1:%d" % port]
                                      + args, stdout=subprocess.DEVNULL, stderr=f)
        until = time.monotonic() + 30
        self.port = 0
        while time.monotonic() < until and not self.port:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", read(self.log))
            if m:
                self.port = int(m.group(1))
            elif self.p.poll() is not None:
                raise RuntimeError("saed exited: " + read(self.log))
            else:
                time.sleep(0.02)
        if not self.port:
            self.kill()
            raise RuntimeError("saed did not start: " + read(self.log))
        self.url = "http://127.0.0.1:%d" % self.port

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()


def mkmodel(out: str, seed: int) -> None:
    subprocess.run([MK, "--out", out, "--arch", "standard", "--d-in", str(D_IN), "--d-sae",
                    str(D_SAE), "--target-l0", "8", "--seed", str(seed)], check=True,
                   stdout=subprocess.DEVNULL)


def as_rows(r):
    """(indptr, indices, values) of a SparseRows or csr_matrix."""
    return np.asarray(r.indptr), np.asarray(r.indices), np.asarray(r.data)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="pyclient.", dir=os.environ.get("SAE_TEST_TMP"))
        cls.model = os.path.join(cls.tmp, "m")
        cls.model2 = os.path.join(cls.tmp, "m2")
        mkmodel(cls.model, 3)
        mkmodel(cls.model2, 4)
        rng = np.random.default_rng(7)
        cls.base = (rng.standard_normal((BASE, D_IN)) * 2).astype("<f4")
        npy = os.path.join(cls.tmp, "base.npy")
        np.save(npy, cls.base)
        out = subprocess.run([SAE, "encode", "--model", cls.model, "--activations", npy,
                              "--quiet"], check=True, capture_output=True, text=True).stdout
        cls.ref = [json.loads(line) for line in out.splitlines()]
        assert len(cls.ref) == BASE
        cls.ref_counts = np.array([len(r["indices"]) for r in cls.ref], dtype=np.int64)
        cls.ref_indptr = np.concatenate([[0], np.cumsum(cls.ref_counts)])
        cls.ref_indices = np.array([i for r in cls.ref for i in r["indices"]], dtype=np.int64)
        cls.ref_values = np.array([v for r in cls.ref for v in r["values"]], dtype=np.float32)
        cls.daemons = []

    @classmethod
    def tearDownClass(cls) -> None:
        for d in cls.daemons:
            d.kill()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start(self, args=(), port=0, model=None) -> Daemon:
        d = Daemon(self.tmp, model or self.model, list(args), port)
        self.daemons.append(d)
        return d

    def check_rows(self, result, pick) -> None:
        """result must be the reference rows base[pick], in order."""
        indptr, indices, values = as_rows(result)
        counts = self.ref_counts[pick]
        self.assertEqual(len(indptr), len(pick) + 1)
        np.testing.assert_array_equal(np.diff(indptr), counts)
        starts = np.repeat(self.ref_indptr[pick], counts)
        within = np.arange(int(counts.sum())) - np.repeat(indptr[:-1], counts)
        np.testing.assert_array_equal(indices, self.ref_indices[starts + within])
        np.testing.assert_array_equal(values, self.ref_values[starts + within])

    def test_base_block_and_decode(self) -> None:
        d = self.start()
        c = Client(d.url, progress=False)
        r = c.encode(self.base)
        self.check_rows(r, np.arange(BASE))
        self.assertEqual(r.shape, (BASE, D_SAE))
        dense = r.toarray()
        self.assertEqual(dense.shape, (BASE, D_SAE))
        self.assertEqual(int((dense != 0).sum()), int(self.ref_counts.sum()))
        one = c.encode(self.base[5])  # a single (d_in,) row
        self.check_rows(one, np.array([5]))
        top = c.encode(self.base, top_k=2)
        self.assertTrue(np.all(np.diff(as_rows(top)[0]) <= 2))
        x_hat = c.decode(r)
        self.assertEqual(x_hat.shape, (BASE, D_IN))
        self.assertTrue(np.all(np.isfinite(x_hat)))
        # The first ten rows alone decode to the same bytes as in the block.
        again = Client(d.url, progress=False, concurrency=3)
        ip, ix, vs = as_rows(r)
        np.testing.assert_array_equal(again.decode((ip[:11], ix, vs)), x_hat[:10])
        self.assertIn("limits", c.model())
        with self.assertRaises(ValueError):
            c.encode(np.zeros((3, D_IN + 1), np.float32))
        with self.assertRaises(NotSupportedError):
            c.encode_text(["hello"])
        with self.assertRaises(SaedError) as e:
            Client(d.url, sae="nope", progress=False).encode(self.base)
        self.assertEqual(e.exception.status, 404)

    def test_million_rows(self) -> None:
        d = self.start()
        pick = np.random.default_rng(1).integers(0, BASE, 1_000_000)
        seen = []
        c = Client(d.url, concurrency=4, progress=lambda done, total: seen.append((done, total)),
                   stream_min_rows=0)  # the chunked requests; test_stream has the stream
        r = c.encode(self.base[pick])
        self.check_rows(r, pick)
        self.assertEqual(seen[-1], (1_000_000, 1_000_000))
        self.assertGreaterEqual(c.stats["requests"], 1_000_000 // 16384)

    def metric(self, d: Daemon, name: str) -> float:
        with urllib.request.urlopen(d.url + "/metrics") as r:
            m = re.search(r"^%s (\S+)$" % re.escape(name), r.read().decode(), re.M)
        return float(m.group(1)) if m else -1.0

    def test_stream(self) -> None:
        """Above stream_min_rows the client uses POST /v1/encode/stream when
        /v1/model's limits offer it: one request, every row in order;
        without the route (max_streams 0) the chunked requests serve them."""
        d = self.start(["--max-batch-rows", "256"])
        pick = np.random.default_rng(5).integers(0, BASE, 200_000)
        c = Client(d.url, progress=False, stream_min_rows=1000)
        r = c.encode(self.base[pick], top_k=64)
        self.check_rows(r, pick)
        self.assertEqual(self.metric(d, "saed_stream_rows_total"), 200_000)
        self.assertEqual(c.stats["requests"], 2)  # GET /v1/model and the stream
        off = self.start(["--max-streams", "0"])
        c2 = Client(off.url, progress=False, stream_min_rows=1000)
        self.check_rows(c2.encode(self.base[pick[:5000]]), pick[:5000])
        self.assertEqual(self.metric(off, "saed_stream_rows_total"), 0)

    def stream_restart(self, model: str, during: str):
        """Streams 400k rows (stream_min_rows 1000, top_k off: ~70 bytes a
        row of reply, more than loopback's socket buffers hold) and kills
        saed mid-job, starting it again on its port with `model`: `during`
        "upload" after the client has sent 8 of the body's pieces (no reply
        yet: saed answers once the body ends), "reply" at the first reply
        frame (the rest of the reply is cut). Returns (client, pick, first
        daemon, second daemon, result or the exception)."""
        d = self.start(["--max-batch-rows", "256"])
        state = {"killed": None}

        def restart() -> None:
            if state["killed"] is None:
                d.kill()
                state["killed"] = self.start(["--max-batch-rows", "256"], port=d.port, model=model)

        class Cut(Client):
            def _stream_body(self, X, start, stop):
                for i, piece in enumerate(super()._stream_body(X, start, stop)):
                    if during == "upload" and i == 8:
                        restart()
                    yield piece

        pick = np.random.default_rng(11).integers(0, BASE, 400_000)
        c = Cut(d.url, stream_min_rows=1000,
                progress=lambda done, total: restart() if during == "reply" else None)
        try:
            r = c.encode(self.base[pick])
        except SaedError as e:
            r = e
        self.assertIsNotNone(state["killed"], "saed was not restarted")
        return c, pick, d, state["killed"], r

    def test_stream_restarted_during_upload(self) -> None:
        """saed dies while the body is going up: nothing was answered, so the
        client reconnects and sends every row again, in one stream."""
        c, pick, _, d2, r = self.stream_restart(self.model, "upload")
        self.assertNotIsInstance(r, Exception, str(r))
        self.check_rows(r, pick)
        self.assertGreater(c.stats["reconnects"], 0)
        self.assertEqual(self.metric(d2, "saed_stream_rows_total"), len(pick))

    def test_stream_restarted_during_reply(self) -> None:
        """saed dies while its reply is being read: the whole frames read are
        kept and the stream resumes after the last row they carried, so the
        new saed answers only the rest, and no row is lost or twice."""
        c, pick, _, d2, r = self.stream_restart(self.model, "reply")
        self.assertNotIsInstance(r, Exception, str(r))
        self.check_rows(r, pick)
        self.assertGreater(c.stats["stream_resumes"], 0)
        again = self.metric(d2, "saed_stream_rows_total")
        self.assertGreater(again, 0)
        self.assertLess(again, len(pick))

    def test_stream_weights_changed_midway(self) -> None:
        """The restarted saed serves other weights: the resumed stream's
        reply carries another digest, and the job raises naming both."""
        first = Client(self.start().url, progress=False).model()["weights_digest"]
        for during in ("upload", "reply"):
            _, _, _, d2, r = self.stream_restart(self.model2, during)
            self.assertIsInstance(r, WeightsChangedError, during)
            second = Client(d2.url, progress=False).model()["weights_digest"]
            self.assertNotEqual(first, second)
            self.assertEqual((r.expected, r.got), (first, second))
            self.assertIn(first, str(r))
            self.assertIn(second, str(r))

    def test_stream_reload_midway(self) -> None:
        """A SIGHUP reload of other weights while a stream's body is going up:
        saed stops the stream at a chunk boundary ("reload", naming the new
        digest) and the job raises WeightsChangedError with both digests."""
        live = os.path.join(self.tmp, "live")
        shutil.copytree(self.model, live)
        d = self.start(["--max-batch-rows", "256"], model=live)
        first = Client(d.url, progress=False).model()["weights_digest"]
        test = self

        class Reload(Client):
            def _stream_body(self, X, start, stop):
                for i, piece in enumerate(super()._stream_body(X, start, stop)):
                    if i == 8:  # swap the weights file, reload, wait till it served
                        tmp = os.path.join(live, "w.tmp")
                        shutil.copy(os.path.join(test.model2, "sae_weights.safetensors"), tmp)
                        os.rename(tmp, os.path.join(live, "sae_weights.safetensors"))
                        d.p.send_signal(signal.SIGHUP)
                        until = time.monotonic() + 30
                        while (test.metric(d, 'saed_reloads_total{result="ok"}') < 1
                               and time.monotonic() < until):
                            time.sleep(0.02)
                    yield piece

        pick = np.random.default_rng(14).integers(0, BASE, 100_000)
        with self.assertRaises(WeightsChangedError) as e:
            Reload(d.url, progress=False, stream_min_rows=1000).encode(self.base[pick])
        second = Client(d.url, progress=False).model()["weights_digest"]
        self.assertNotEqual(first, second)
        self.assertEqual((e.exception.expected, e.exception.got), (first, second))
        self.assertEqual(self.metric(d, 'saed_streams_ended_total{stopped="reload"}'), 1)

    def test_stream_503_and_row_cap(self) -> None:
        """With saed's one stream slot taken (a stream held open mid-body),
        the stream route answers 503 and the client sends the rows as
        chunked requests instead; with the slot free again and
        stream_max_rows 30k, 100k rows go as four streams in turn."""
        d = self.start(["--max-streams", "1"])
        held = socket.create_connection(("127.0.0.1", d.port))
        held.sendall(b"POST /v1/encode/stream HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" b"40\r\n" + b"\0" * 64 + b"\r\n")
        until = time.monotonic() + 30
        while self.metric(d, "saed_streams") != 1 and time.monotonic() < until:
            time.sleep(0.02)
        self.assertEqual(self.metric(d, "saed_streams"), 1)
        pick = np.random.default_rng(12).integers(0, BASE, 100_000)
        c = Client(d.url, progress=False, stream_min_rows=1000, stream_max_rows=30_000)
        self.check_rows(c.encode(self.base[pick]), pick)
        self.assertEqual(self.metric(d, "saed_stream_rows_total"), 0)
        self.assertGreater(c.stats["requests"], 2)  # /v1/model, the 503, the chunks
        held.close()
        while self.metric(d, "saed_streams") != 0 and time.monotonic() < until:
            time.sleep(0.02)
        c = Client(d.url, progress=False, stream_min_rows=1000, stream_max_rows=30_000)
        self.check_rows(c.encode(self.base[pick]), pick)
        self.assertEqual(self.metric(d, "saed_stream_rows_total"), 100_000)
        self.assertEqual(c.stats["requests"], 5)  # /v1/model and four streams

    def test_stream_spool_cap(self) -> None:
        """saed's max_stream_spool_bytes stops a stream whose reply would
        pass it ("spool_full"); the client resumes from the row the status
        names in a new stream until every row is answered, each once."""
        d = self.start(["--max-batch-rows", "256", "--max-stream-spool-bytes", "1000000"])
        pick = np.random.default_rng(13).integers(0, BASE, 60_000)
        c = Client(d.url, progress=False, stream_min_rows=1000)
        self.check_rows(c.encode(self.base[pick]), pick)
        self.assertGreater(c.stats["stream_resumes"], 0)
        self.assertEqual(self.metric(d, "saed_stream_rows_total"), 60_000)
        self.assertEqual(self.metric(d, 'saed_streams_ended_total{stopped="spool_full"}'),
                         c.stats["stream_resumes"])

    def test_forced_503(self) -> None:
        # One chunk fills the queue and waits 0.3 s for a batch that never
        # fills: the other seven requests in flight get 503 + Retry-After.
        # The worker waits only while more rows are on their way, so a
        # request is held open mid-body for the whole test: its headers are
        # in, its rows never come, and every batch waits out its 0.3 s (on a
        # loaded machine the client's threads could otherwise arrive one
        # after the other, each finding the queue empty).
        d = self.start(["--max-queue-rows", "128", "--max-request-rows", "128",
                        "--max-batch-rows", "1024", "--max-batch-wait-us", "300000",
                        "--workers", "1"])
        held = socket.create_connection(("127.0.0.1", d.port))
        self.addCleanup(held.close)
        held.sendall(b"POST /v1/encode HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Accept: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % (4 * D_IN) + b"\0" * 4)
        pick = np.random.default_rng(2).integers(0, BASE, 2048)
        c = Client(d.url, concurrency=8, progress=False)
        self.assertEqual(c.limits()["max_request_rows"], 128)
        r = c.encode(self.base[pick])
        self.check_rows(r, pick)
        self.assertGreater(c.stats["retries_503"], 0)
        # A budget of no waiting at all gives up, saying why.
        with self.assertRaises(SaedError) as e:
            Client(d.url, concurrency=8, progress=False, retry_seconds=0).encode(self.base[pick])
        self.assertIn("503", str(e.exception))

    def restart_midway(self, model: str):
        """Encodes 300k rows in 2048-row chunks; at the first finished chunk
        saed is killed and started again on its port with `model`. Returns
        (client, pick, result or the exception)."""
        d = self.start(["--max-request-rows", "2048"])
        state = {"done": False}

        def on_progress(done: int, total: int) -> None:
            if not state["done"]:
                state["done"] = True
                d.kill()
                self.start(["--max-request-rows", "2048"], port=d.port, model=model)

        pick = np.random.default_rng(3).integers(0, BASE, 300_000)
        c = Client(d.url, concurrency=4, progress=on_progress, stream_min_rows=0)
        try:
            return c, pick, c.encode(self.base[pick])
        except SaedError as e:
            return c, pick, e

    def test_restarted_daemon(self) -> None:
        c, pick, r = self.restart_midway(self.model)
        self.assertNotIsInstance(r, Exception, str(r))
        self.check_rows(r, pick)
        self.assertGreater(c.stats["reconnects"], 0)

    def test_weights_changed_midway(self) -> None:
        first = Client(self.start().url, progress=False).model()["weights_digest"]
        c, _, r = self.restart_midway(self.model2)
        self.assertIsInstance(r, WeightsChangedError)
        d2 = Client(self.daemons[-1].url, progress=False).model()["weights_digest"]
        self.assertNotEqual(first, d2)
        self.assertIn(first, str(r))
        self.assertIn(d2, str(r))

    def test_unreachable(self) -> None:
        d = self.start()
        d.kill()
        with self.assertRaises(SaedError) as e:
            Client(d.url, progress=False, retry_seconds=0.3).encode(self.base)
        self.assertIn("127.0.0.1:%d" % d.port, str(e.exception))

    def test_package(self) -> None:
        self.assertTrue(saed_client.Client.encode.__doc__)
        self.assertTrue(saed_client.SparseRows.toarray.__doc__)


if __name__ == "__main__":
    unittest.main(verbosity=2)
