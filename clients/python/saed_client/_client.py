"""The saed client: one call encodes or decodes any number of rows.

A job is split into chunks no larger than the server's limits (``GET
/v1/model``'s ``limits``), which several threads send at once, each over its
own keep-alive connection, in saed's binary format. A chunk that gets 503 is
sent again after ``Retry-After``; one whose connection is lost is sent again
over a new connection; both within a bounded total wait. Results are stored by
chunk number, so a retried chunk can neither be lost nor counted twice. Every
reply's ``X-SAE-Weights-Digest`` must equal the digest the job started with.
"""
from __future__ import annotations

import http.client
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._csr import SparseRows, as_result, concat, csr_parts, decode_body, parse_encode_reply

ProgressFn = Callable[[int, int], None]

_DEFAULT_LIMITS = {"max_request_rows": 16384, "max_body_bytes": 64 << 20,
                   "max_queue_rows": 16384, "max_batch_rows": 128}
_REPLY_BYTES = 128 << 20  # max_reply_bytes' default: bounds a decode chunk


class SaedError(Exception):
    """saed answered with an error (``status``, ``code`` as in docs/API.md) or
    could not be reached within the retry budget."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class WeightsChangedError(SaedError):
    """The server's weights changed during a job: ``expected`` is the digest
    the job started with, ``got`` the one a later reply carried."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__("the server's weights changed during the job: started with "
                         "X-SAE-Weights-Digest %s, a reply carried %s" % (expected, got),
                         0, "weights_changed")
        self.expected = expected
        self.got = got


class NotSupportedError(SaedError):
    """The server has no such route (an older saed)."""


class _Progress:
    """Counts rows done, calls the user's callback and draws a bar on stderr
    when it is a terminal. Thread-safe."""

    def __init__(self, what: str, total: int, fn: Union[None, bool, ProgressFn]) -> None:
        self.what, self.total, self.done = what, total, 0
        self.fn = fn if callable(fn) else None
        self.bar = fn is True or (fn is None and sys.stderr.isatty())
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.drawn = 0.0

    def add(self, rows: int) -> None:
        with self.lock:
            self.done += rows
            done = self.done
        if self.fn:
            self.fn(done, self.total)
        if self.bar:
            now = time.monotonic()
            if now - self.drawn >= 0.1 or done == self.total:
                self.drawn = now
                frac = done / self.total if self.total else 1.0
                rate = done / max(now - self.t0, 1e-9)
                sys.stderr.write("\r%s [%-30s] %d/%d rows %3.0f%% %.0f rows/s" % (
                    self.what, "#" * int(30 * frac), done, self.total, 100 * frac, rate))
                if done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


class Client:
    """A client of one saed (and one of its SAEs).

    Args:
        url: the server, e.g. ``http://127.0.0.1:8080`` (http or https).
        api_key: sent as ``Authorization: Bearer KEY`` when given.
        sae: the SAE id on a server with many (``/v1/saes/{sae}/...``); None
            for the default SAE.
        timeout: seconds one request may take (connect, send, answer).
        concurrency: requests in flight at once, each on its own connection.
        retry_seconds: the most a job waits in total, over all its retries
            (503 ``Retry-After`` and lost connections), before it raises.
        stream_min_rows: arrays of more rows than this go through ``POST
            /v1/encode/stream`` (one connection, constant server memory) when
            the server offers it (``limits.max_streams`` > 0); 0 turns that off.
        stream_max_rows: the most rows one stream request carries (0: no
            limit); a longer array goes as several streams, one after the
            other. saed spools a stream's reply on disk until its body ends
            (4 + 8·k bytes a row for k features), so this bounds that disk
            and what a lost connection sends again.
        progress: None draws a bar when stderr is a terminal; False never;
            True always; a callable gets ``(rows_done, rows_total)``.
    """

    def __init__(self, url: str, api_key: Optional[str] = None, sae: Optional[str] = None,
                 timeout: float = 300.0, concurrency: int = 4, retry_seconds: float = 120.0,
                 progress: Union[None, bool, ProgressFn] = None,
                 stream_min_rows: int = 65536, stream_max_rows: int = 4 << 20) -> None:
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("url must be http://HOST[:PORT] or https://...: %r" % url)
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        base = u.path.rstrip("/")
        self.prefix = base + ("/v1/saes/%s" % urllib.parse.quote(sae, safe="") if sae else "/v1")
        self.api_key, self.sae, self.timeout = api_key, sae, timeout
        self.concurrency = max(1, int(concurrency))
        self.retry_seconds = retry_seconds
        self.progress = progress
        self.stream_min_rows = stream_min_rows
        self.stream_max_rows = max(0, int(stream_max_rows))
        self.stats: Dict[str, int] = {"requests": 0, "retries_503": 0, "reconnects": 0,
                                      "stream_resumes": 0}
        self._stats_lock = threading.Lock()
        self._model: Optional[Dict[str, Any]] = None

    # --- connections and single requests --------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        """A new connection to the server (not yet opened)."""
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        h = {"Connection": "keep-alive"}
        if self.api_key:
            h["Authorization"] = "Bearer " + self.api_key
        if extra:
            h.update(extra)
        return h

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _request(self, conn: List[Optional[http.client.HTTPConnection]], method: str, path: str,
                 body: Optional[bytes], headers: Dict[str, str],
                 budget: List[float]) -> Tuple[int, Dict[str, str], bytes]:
        """Sends one request over ``conn[0]`` (replaced when lost), retrying
        503s after Retry-After and lost connections with a growing pause while
        ``budget[0]`` (seconds left to wait, shared by the job) lasts.
        Returns (status, headers with lower-case names, body)."""
        backoff = 0.05
        while True:
            try:
                if conn[0] is None:
                    conn[0] = self._connect()
                c = conn[0]
                c.request(method, path, body=body, headers=self._headers(headers))
                r = c.getresponse()
                data = r.read()
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                self._count("requests")
                if hdrs.get("connection", "").lower() == "close":
                    c.close()
                    conn[0] = None
                if r.status != 503:
                    return r.status, hdrs, data
                self._count("retries_503")
                try:
                    wait = float(hdrs.get("retry-after", "1"))
                except ValueError:
                    wait = 1.0
                why = "503 %s" % _error_code(data)
            except (OSError, http.client.HTTPException) as e:
                if conn[0] is not None:
                    conn[0].close()
                conn[0] = None
                self._count("reconnects")
                wait, backoff = backoff, min(backoff * 2, 2.0)
                why = "connection to %s:%d lost (%s)" % (self.host, self.port,
                                                         e.__class__.__name__ + ": " + str(e))
            if budget[0] <= 0:
                raise SaedError("gave up after %.0f s of retries: %s" % (self.retry_seconds, why),
                                503, "retry_budget_spent")
            wait = min(max(wait, 0.0), budget[0])
            budget[0] -= wait
            time.sleep(wait)

    def _get_json(self, path: str) -> Dict[str, Any]:
        conn: List[Optional[http.client.HTTPConnection]] = [None]
        try:
            status, _, data = self._request(conn, "GET", path, None, {"Accept": "application/json"},
                                            [self.retry_seconds])
        finally:
            if conn[0] is not None:
                conn[0].close()
        if status != 200:
            raise _error(status, data, "GET " + path)
        return json.loads(data)

    def model(self, refresh: bool = False) -> Dict[str, Any]:
        """``GET /v1/model`` (of the chosen SAE): d_in, d_sae, weights_digest,
        limits, ... Cached; ``refresh`` asks again."""
        if self._model is None or refresh:
            self._model = self._get_json(self.prefix + "/model")
        return self._model

    def limits(self) -> Dict[str, int]:
        """The server's request limits (an older saed's /v1/model has none:
        its defaults then)."""
        lim = dict(_DEFAULT_LIMITS)
        lim.update(self.model().get("limits") or {})
        return lim

    # --- jobs -----------------------------------------------------------------------

    def _run(self, what: str, path: str, chunks: Sequence[Tuple[int, int]],
             body_of: Callable[[int, int], bytes], headers: Dict[str, str],
             parse: Callable[[bytes, int], Any], digest: str, total_rows: int) -> List[Any]:
        """Sends every chunk (a (start, stop) row range) to ``path`` from
        ``concurrency`` threads and returns each chunk's parsed reply, in
        chunk order. Raises the first error any chunk met."""
        results: List[Any] = [None] * len(chunks)
        nxt = [0]
        lock = threading.Lock()
        failure: List[BaseException] = []
        budget = [float(self.retry_seconds)]
        prog = _Progress(what, total_rows, self.progress)

        def worker() -> None:
            conn: List[Optional[http.client.HTTPConnection]] = [None]
            try:
                while True:
                    with lock:
                        if failure or nxt[0] >= len(chunks):
                            return
                        i = nxt[0]
                        nxt[0] += 1
                    a, b = chunks[i]
                    status, hdrs, data = self._request(conn, "POST", path, body_of(a, b), headers,
                                                       budget)
                    if status != 200:
                        raise _error(status, data, "POST %s (rows %d-%d)" % (path, a, b))
                    got = hdrs.get("x-sae-weights-digest", "")
                    if got != digest:
                        raise WeightsChangedError(digest, got)
                    results[i] = parse(data, b - a)
                    prog.add(b - a)
            except BaseException as e:  # handed to the caller's thread below
                with lock:
                    failure.append(e)
            finally:
                if conn[0] is not None:
                    conn[0].close()

        n_threads = min(self.concurrency, len(chunks))
        if n_threads <= 1:
            worker()
        else:
            threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if failure:
            raise failure[0]
        return results

    def _start(self) -> Tuple[Dict[str, Any], Dict[str, int], str]:
        """The model, limits and the digest a new job pins (asked afresh)."""
        m = self.model(refresh=True)
        return m, self.limits(), m["weights_digest"]

    def encode(self, X: Any, top_k: Optional[int] = None,
               threshold: Optional[float] = None) -> Any:
        """Encodes the rows of X, an (n, d_in) (or (d_in,)) float array of any
        n, and returns their features as CSR: a scipy.sparse.csr_matrix when
        scipy is installed (``values`` an alias of ``data``), else a
        :class:`SparseRows` (``indptr``, ``indices``, ``values``,
        ``toarray()``). Row order is X's; within a row values descend.
        ``top_k`` / ``threshold`` filter the returned list as in docs/API.md.

        Raises WeightsChangedError when the weights change during the job,
        SaedError on an error reply or when the retry budget is spent."""
        m, lim, digest = self._start()
        d_in, d_sae = int(m["d_in"]), int(m["d_sae"])
        X = np.asarray(X)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != d_in:
            raise ValueError("X has shape %r; the server's d_in is %d" % (X.shape, d_in))
        X = np.ascontiguousarray(X, dtype="<f4")
        n = X.shape[0]
        q: Dict[str, str] = {}
        if top_k is not None:
            q["top_k"] = str(int(top_k))
        if threshold is not None:
            q["threshold"] = repr(float(threshold))
        path = self.prefix + "/encode" + ("?" + urllib.parse.urlencode(q) if q else "")
        parts: List[Any] = []
        done = 0
        if self.stream_min_rows and n > self.stream_min_rows and int(lim.get("max_streams", 0)) > 0:
            done = self._encode_stream(X, q, digest, parts)
        if done < n:
            rows = max(1, min(int(lim["max_request_rows"]),
                              int(lim["max_body_bytes"]) // (4 * d_in)))
            chunks = [(a, min(a + rows, n)) for a in range(done, n, rows)]
            parts += self._run("encode", path, chunks, lambda a, b: X[a:b].tobytes(),
                               {"Content-Type": "application/octet-stream",
                                "Accept": "application/octet-stream"},
                               parse_encode_reply, digest, n - done)
        return as_result(concat(parts, d_sae, n))

    def _stream_body(self, X: np.ndarray, start: int, stop: int) -> Iterator[Any]:
        """The chunked body of one stream request: rows start..stop of X in
        pieces of 4096 rows (a generator, so a body is never copied whole)."""
        for i in range(start, stop, 4096):
            yield memoryview(X[i:min(i + 4096, stop)]).cast("B")

    def _encode_stream(self, X: np.ndarray, q: Dict[str, str], digest: str,
                       parts: List[Any]) -> int:
        """Encodes X through ``POST /v1/encode/stream``, appending each reply
        frame's rows to ``parts`` in order, and returns how many rows of X
        were answered (the first ones): all of them, or fewer after a 503
        (no stream slot), when the caller sends the rest as chunked requests.

        Each request carries at most ``stream_max_rows`` rows. A request
        resumes from the row after the last one any reply carried: after a
        clean stop other than ``reload`` (the status record names the row)
        and after a lost connection or a cut reply (a restarted daemon:
        whole frames received are kept, the rest is sent again). Waits share
        ``retry_seconds``. ``reload`` or another digest on a resumed request
        raises WeightsChangedError."""
        path = self.prefix + "/encode/stream" + ("?" + urllib.parse.urlencode(q) if q else "")
        n = X.shape[0]
        start, backoff = 0, 0.05
        budget = float(self.retry_seconds)
        prog = _Progress("encode", n, self.progress)
        while start < n:
            stop = min(n, start + self.stream_max_rows) if self.stream_max_rows else n
            got_rows, status, why = 0, None, ""
            c = self._connect()
            try:
                try:
                    c.request("POST", path, body=self._stream_body(X, start, stop),
                              encode_chunked=True,
                              headers=self._headers({"Content-Type": "application/octet-stream"}))
                except (OSError, http.client.HTTPException) as e:
                    # saed answers a refusal (503 no stream slot, 401, 415)
                    # before reading the body, then closes: the reply may be
                    # waiting although sending the rest of the body failed.
                    try:
                        r = c.getresponse()
                    except (OSError, http.client.HTTPException):
                        raise e from None
                else:
                    r = c.getresponse()
                self._count("requests")
                if r.status == 503:
                    r.read()
                    return start
                if r.status != 200:
                    raise _error(r.status, r.read(), "POST " + path)
                got = r.getheader("X-SAE-Weights-Digest", "")
                if got != digest:
                    raise WeightsChangedError(digest, got)
                while status is None:
                    head = r.read(16)
                    if len(head) < 16:
                        raise http.client.IncompleteRead(head, 16 - len(head))
                    kind, rows = struct.unpack_from("<II", head)
                    nbytes = struct.unpack_from("<Q", head, 8)[0]
                    data = r.read(nbytes)
                    if len(data) < nbytes:
                        raise http.client.IncompleteRead(data, nbytes - len(data))
                    if kind == 1:
                        parts.append(parse_encode_reply(data, rows))
                        got_rows += rows
                        prog.add(rows)
                    elif kind == 2:
                        status = json.loads(data)
            except (OSError, http.client.HTTPException) as e:
                self._count("reconnects")
                why = "connection to %s:%d lost (%s: %s)" % (self.host, self.port,
                                                             e.__class__.__name__, e)
            finally:
                c.close()
            start += got_rows
            wait = 0.0
            if status is not None:
                stopped = status.get("stopped", "")
                if int(status["rows"]) != got_rows:
                    raise SaedError("the stream's status record says %s rows, its frames carried "
                                    "%d" % (status["rows"], got_rows), 0, "bad_reply")
                if stopped == "end" and start == stop:
                    backoff = 0.05
                    continue
                if stopped == "reload":
                    raise WeightsChangedError(digest, status.get("new_weights_digest", ""))
                if stopped not in ("deadline", "error", "spool_full"):
                    raise SaedError("the stream stopped at row %d (%s): %s"
                                    % (start, stopped, status.get("message", "")), 0, stopped)
                why = "the stream stopped at row %d (%s): %s" % (start, stopped,
                                                                 status.get("message", ""))
                self._count("stream_resumes")
                if got_rows:
                    continue  # progress: resume at once
                wait, backoff = backoff, min(backoff * 2, 2.0)
            else:
                self._count("stream_resumes")
                if not got_rows:
                    wait, backoff = backoff, min(backoff * 2, 2.0)
            if budget <= 0 and wait > 0:
                raise SaedError("gave up after %.0f s of retries: %s" % (self.retry_seconds, why),
                                503, "retry_budget_spent")
            wait = min(wait, budget)
            budget -= wait
            time.sleep(wait)
        return start

    def decode(self, csr: Any) -> np.ndarray:
        """Decodes CSR feature rows (what :meth:`encode` returned, any scipy
        sparse matrix, or an (indptr, indices, values) tuple) to an (n, d)
        float32 array: d is d_in, or d_out for a transcoder. Raises as
        :meth:`encode`."""
        m, lim, digest = self._start()
        indptr, indices, values, n = csr_parts(csr)
        d = int(m.get("d_out") or m["d_in"])
        max_rows = max(1, min(int(lim["max_request_rows"]), _REPLY_BYTES // (4 * d)))
        chunks: List[Tuple[int, int]] = []
        a = 0
        body_cap = int(lim["max_body_bytes"])
        while a < n:  # rows until the row or body limit
            b = min(a + max_rows, n)
            while b > a + 1 and 4 * ((b - a) + 2 * int(indptr[b] - indptr[a])) > body_cap:
                b = a + max(1, (b - a) // 2)
            chunks.append((a, b))
            a = b

        def body_of(a: int, b: int) -> bytes:
            return decode_body(indptr[a:b + 1], indices[indptr[a]:indptr[b]],
                               values[indptr[a]:indptr[b]])

        def parse(data: bytes, k: int) -> np.ndarray:
            if len(data) != 4 * k * d:
                raise SaedError("decode reply of %d bytes for %d rows of %d" % (len(data), k, d))
            return np.frombuffer(data, dtype="<f4").reshape(k, d)

        parts = self._run("decode", self.prefix + "/decode", chunks, body_of,
                          {"Content-Type": "application/octet-stream",
                           "Accept": "application/octet-stream"}, parse, digest, n)
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, d), np.float32)

    def encode_text(self, texts: Sequence[str], **options: Any) -> Any:
        """Encodes texts with the server's language model (``POST
        /v1/encode_text``) and returns its JSON reply. Raises
        NotSupportedError when the server has no such route."""
        body = json.dumps(dict(options, texts=list(texts))).encode()
        conn: List[Optional[http.client.HTTPConnection]] = [None]
        path = self.prefix + "/encode_text"
        try:
            status, _, data = self._request(conn, "POST", path, body,
                                            {"Content-Type": "application/json"},
                                            [self.retry_seconds])
        finally:
            if conn[0] is not None:
                conn[0].close()
        if status in (404, 405):
            raise NotSupportedError("this saed has no %s (it does not encode text; send "
                                    "activations to encode())" % path, status, "not_supported")
        if status != 200:
            raise _error(status, data, "POST " + path)
        return json.loads(data)


def _error_code(data: bytes) -> str:
    """The ``error.code`` of an error reply body, or ''."""
    try:
        return str(json.loads(data)["error"]["code"])
    except Exception:
        return ""


def _error(status: int, data: bytes, what: str) -> SaedError:
    """A SaedError for an error reply, with saed's code and message."""
    try:
        err = json.loads(data)["error"]
        code, msg = str(err.get("code", "")), str(err.get("message", ""))
    except Exception:
        code, msg = "", data[:200].decode("utf-8", "replace")
    return SaedError("%s: HTTP %d %s: %s" % (what, status, code, msg), status, code)
