"""Sparse rows: the CSR result of an encode, and the binary wire formats.

saed's binary encode reply (and decode body) is, for each row, little-endian
``u32 count, u32 indices[count], f32 values[count]``. These helpers turn a
reply into CSR arrays and CSR arrays into a body without a per-element Python
loop (only one step per row).
"""
from __future__ import annotations

import sys
from typing import Any, List, Optional, Tuple

import numpy as np


class SparseRows:
    """A CSR matrix of encoded features: row ``i``'s features are
    ``indices[indptr[i]:indptr[i+1]]`` with ``values`` at the same positions,
    in saed's order (values descending, ties by index ascending).

    Attributes:
        indptr: (n + 1,) int64 row starts.
        indices: (nnz,) int32 feature indices.
        values: (nnz,) float32 activations (also reachable as ``data``, as in scipy).
        shape: (n, d_sae).
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 shape: Tuple[int, int]) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)
        self.values = np.asarray(values, dtype=np.float32)
        self.shape = (int(shape[0]), int(shape[1]))

    @property
    def data(self) -> np.ndarray:
        """The values, under scipy's name."""
        return self.values

    @property
    def nnz(self) -> int:
        """How many features are stored."""
        return int(self.indptr[-1])

    def __len__(self) -> int:
        return self.shape[0]

    def row(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Row ``i`` as (indices, values)."""
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[a:b], self.values[a:b]

    def toarray(self) -> np.ndarray:
        """The dense (n, d_sae) float32 matrix (zeros where no feature is stored)."""
        out = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out

    def __repr__(self) -> str:
        return "SparseRows(shape=%r, nnz=%d)" % (self.shape, self.nnz)


def as_result(rows: SparseRows) -> Any:
    """``rows`` as a scipy.sparse.csr_matrix (with a ``values`` alias of
    ``data``) when scipy is installed, else as the SparseRows itself."""
    try:
        import scipy.sparse as sp  # type: ignore
    except ImportError:
        return rows
    m = sp.csr_matrix((rows.values, rows.indices, rows.indptr), shape=rows.shape)
    try:
        m.values = m.data  # the same array, under this client's name
    except AttributeError:
        pass
    return m


def csr_parts(x: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(indptr, indices, values, n_rows) of a SparseRows, a scipy sparse
    matrix, or an (indptr, indices, values) tuple."""
    if isinstance(x, tuple) and len(x) == 3:
        indptr, indices, values = x
    else:
        if hasattr(x, "tocsr"):
            x = x.tocsr()
        indptr, indices = x.indptr, x.indices
        values = x.values if hasattr(x, "values") and not callable(x.values) else x.data
    indptr = np.asarray(indptr, dtype=np.int64)
    return indptr, np.asarray(indices), np.asarray(values), len(indptr) - 1


def parse_encode_reply(buf: bytes, n_rows: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a binary encode reply of ``n_rows`` rows into (counts, indices,
    values). Raises ValueError when the bytes do not hold exactly n_rows rows."""
    if len(buf) % 4:
        raise ValueError("binary reply of %d bytes is not whole u32 words" % len(buf))
    words = np.frombuffer(buf, dtype="<u4")
    if sys.byteorder == "little":
        view: Any = memoryview(buf).cast("I")  # fast Python ints for the per-row walk
    else:
        view = words.tolist()
    counts = np.empty(n_rows, dtype=np.int64)
    heads = np.empty(n_rows, dtype=np.int64)
    p, total = 0, len(words)
    for i in range(n_rows):
        if p >= total:
            raise ValueError("binary reply ends after %d of %d rows" % (i, n_rows))
        c = view[p]
        counts[i] = c
        heads[i] = p
        p += 1 + 2 * c
    if p != total:
        raise ValueError("binary reply has %d words, %d rows use %d" % (total, n_rows, p))
    nnz = int(counts.sum())
    starts = np.zeros(n_rows, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    within = np.arange(nnz, dtype=np.int64) - np.repeat(starts, counts)
    idx_pos = np.repeat(heads + 1, counts) + within
    val_pos = idx_pos + np.repeat(counts, counts)
    indices = words[idx_pos].astype(np.int32)
    values = words[val_pos].view("<f4").astype(np.float32)
    return counts, indices, values


def decode_body(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> bytes:
    """The binary decode body of CSR rows (``u32 count, u32 indices, f32
    values`` per row)."""
    counts = np.diff(indptr).astype(np.int64)
    n = len(counts)
    nnz = int(counts.sum())
    words = np.empty(n + 2 * nnz, dtype="<u4")
    heads = np.arange(n, dtype=np.int64) + 2 * (indptr[:-1] - indptr[0])
    words[heads] = counts
    starts = indptr[:-1] - indptr[0]
    within = np.arange(nnz, dtype=np.int64) - np.repeat(starts, counts)
    idx_pos = np.repeat(heads + 1, counts) + within
    words[idx_pos] = np.asarray(indices, dtype=np.int64).astype("<u4")
    words[idx_pos + np.repeat(counts, counts)] = np.asarray(values, dtype="<f4").view("<u4")
    return words.tobytes()


def concat(parts: List[Tuple[np.ndarray, np.ndarray, np.ndarray]], d_sae: int,
           n_rows: Optional[int] = None) -> SparseRows:
    """One SparseRows from per-chunk (counts, indices, values), in order."""
    counts = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
    values = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32)
    return SparseRows(indptr, indices, values, (len(counts) if n_rows is None else n_rows, d_sae))
