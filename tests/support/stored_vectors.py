"""Read the vectors a test Orthanc's CBMIR plugin stored, straight from its SQLite store.

Why: the invariant "the stored vector equals what `cbmir embed` computes" needs the
stored vector itself, which no REST answer carries. The store is opened read-only
(WAL lets it be read while the plugin writes).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np


def store_path(server) -> Path:
    return Path(server.cbmir["IndexDirectory"]) / "cbmir.sqlite"


def stored_vectors(server, instance: str) -> dict[int, np.ndarray]:
    """frame -> float32 vector of `instance` in the answering generation ({} when none)."""
    with sqlite3.connect(f"file:{store_path(server)}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute("SELECT value FROM state WHERE key='active_generation'").fetchone()
        generation = int(row[0]) if row else 1
        rows = conn.execute("SELECT frame, vector FROM vectors WHERE instance=? AND generation=?",
                            (instance, generation)).fetchall()
    return {int(frame): np.frombuffer(blob, dtype=np.float32) for frame, blob in rows}


def overwrite_vector(server, instance: str, frame: int, vector: np.ndarray) -> int:
    """Replace a stored vector (every generation), as an earlier release might have written
    it. Only while that Orthanc is stopped. Returns the rows changed."""
    with sqlite3.connect(store_path(server), timeout=30) as conn:
        changed = conn.execute("UPDATE vectors SET vector=? WHERE instance=? AND frame=?",
                               (np.asarray(vector, np.float32).tobytes(), instance, frame)).rowcount
    return changed
