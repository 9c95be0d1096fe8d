"""Where a similarity score falls in this archive: "closer than 99.8 % of the archive".

Why: with a well-trained model every same-type pair has a cosine near 0.995, so raw
scores (0.9996, 0.9995, ...) say nothing to a reader and cannot be compared across
queries or models. A result's percentile is the share of the archive's images that
are less similar to the query than that result, estimated from a random sample of the
index's vectors (all of them while the archive is smaller than the sample). The sample
is drawn when the index loads or rebuilds, and again when the index has changed by more
than a tenth since, so a query pays one small matrix-vector product (4096 x 128) and a
sort, never a pass over the archive.
"""
from __future__ import annotations

import threading

import numpy as np

SAMPLE_SIZE = 4096
GROWTH = 0.1  # re-draw once the index size moved by this fraction since the last draw
TIE = 1e-6  # cosines closer than this are equal (answers round scores to 6 decimals)


def percentiles(sample: np.ndarray, query: np.ndarray, scores, exclude=None) -> np.ndarray:
    """Percent (0-100, floored to 0.01) of `sample` rows whose cosine to `query` is below each
    score by more than TIE; NaN for every score when the sample is empty.

    `exclude` (bool mask over the sample rows) drops rows that are the query itself, so an
    image is not counted as a neighbour of its own."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if sample is None or len(sample) == 0:
        return np.full(len(scores), np.nan)
    q = np.asarray(query, dtype=np.float32).ravel()
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    # Not `sample @ q`: OpenBLAS runs a 4096-row product on its thread pool, and waking that pool
    # cost ~25 ms per query on a busy machine (p50, measured); einsum stays on this thread (~0.3 ms).
    reference = np.einsum("ij,j->i", sample, q)
    if exclude is not None and np.any(exclude):
        reference = reference[~exclude]
    if len(reference) == 0:
        return np.full(len(scores), np.nan)
    reference = np.sort(reference.astype(np.float64))
    # "Less similar" means lower by more than float noise: the search and this product add
    # in different orders, and a result (which is in the sample) must not count below itself.
    below = np.searchsorted(reference, scores - TIE, side="left")
    return np.floor(below * 10000.0 / len(reference)) / 100.0


class ReferenceSample:
    """A random sample of one VectorIndex's vectors (ids and unit rows), kept in memory."""

    def __init__(self, index, size: int = SAMPLE_SIZE, growth: float = GROWTH, seed: int = 0):
        self.index = index
        self.size = size
        self.growth = growth
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, 1), dtype=np.float32)
        self._stamp = None  # (build stamp, index size) when drawn; None: draw on next use

    def invalidate(self) -> None:
        self._stamp = None

    def refresh(self) -> None:
        """Draw a new sample now (the rebuild thread calls this, off the query path)."""
        stamp = (self.index.build_stamp(), len(self.index))
        ids, matrix = self.index.sample(self.size, self._rng)
        with self._lock:
            self._ids, self._matrix, self._stamp = ids, matrix, stamp

    def _stale(self) -> bool:
        stamp = self._stamp
        if stamp is None or stamp[0] != self.index.build_stamp():
            return True
        drawn, now = stamp[1], len(self.index)
        if drawn == now:
            return False
        # Exact (every vector sampled) while the archive is small: any change re-draws.
        return drawn < self.size or abs(now - drawn) > self.growth * drawn

    def current(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stale():
            self.refresh()
        with self._lock:
            return self._ids, self._matrix

    def percentiles(self, query: np.ndarray, scores, exclude_ids=()) -> np.ndarray:
        ids, matrix = self.current()
        exclude = np.isin(ids, np.fromiter(exclude_ids, dtype=np.int64)) if exclude_ids else None
        return percentiles(matrix, query, scores, exclude)

    def describe(self) -> dict:
        return {"sampled": int(len(self._ids)), "sample_size": self.size}
