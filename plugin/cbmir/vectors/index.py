"""Two-tier nearest-neighbour index: a built, memory-mapped Annoy file plus exact
search over the vectors added since it was built.

Why two tiers: Annoy cannot add items after `build()`. New vectors go to a small
"fresh" tier searched exactly; when it passes a threshold a background rebuild
makes a new Annoy file from the store and swaps it in atomically. Annoy only
proposes candidates: every score is the exact cosine (re-ranked against the
vectors saved beside the Annoy file), so an answer does not depend on which
tier holds a vector. Deleted ids are filtered until the next rebuild drops them.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from cbmir.vectors.percentile import ReferenceSample

MANIFEST = "index-{generation}.json"


class _Built:
    """An immutable loaded Annoy tier: the Annoy file, its row ids and vectors (mmap)."""

    def __init__(self, annoy_index, ids: np.ndarray, vectors: np.ndarray, info: dict):
        self.annoy = annoy_index
        self.ids = ids
        self.vectors = vectors
        self.info = info
        self.id_set = set(int(i) for i in ids)

    @classmethod
    def load(cls, directory: Path, info: dict) -> "_Built":
        from annoy import AnnoyIndex

        annoy_index = AnnoyIndex(int(info["dim"]), "angular")
        annoy_index.load(str(directory / info["annoy"]))  # memory-mapped
        ids = np.load(directory / info["ids"])
        vectors = np.load(directory / info["vectors"], mmap_mode="r")
        return cls(annoy_index, ids, vectors, info)


class VectorIndex:
    """Search, add and remove for one store generation; thread-safe."""

    def __init__(self, directory: str | Path, generation: int = 1, *, trees: int, search_k: int,
                 candidates: int, rebuild_threshold: int):
        """The settings come from the caller (the plugin: CBMIR.AnnoyTrees, AnnoySearchK,
        Candidates, RebuildThreshold, defaults in cbmir.service.config.Config)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.generation = generation
        self.trees = trees
        self.search_k = search_k
        self.candidates = candidates
        self.rebuild_threshold = rebuild_threshold
        self._lock = threading.Lock()
        self._rebuild_lock = threading.Lock()
        self._built: _Built | None = None
        self._fresh: dict[int, np.ndarray] = {}
        self._fresh_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._deleted: set[int] = set()
        self.rebuilding = False
        self.last_build_seconds: float | None = None
        self.reference = ReferenceSample(self)  # scores -> percentiles (percentile.py)

    # -- loading and maintenance -------------------------------------------------------------
    def load(self, store) -> None:
        """Open the saved Annoy tier when it exists; every other stored vector becomes fresh."""
        manifest = self.directory / MANIFEST.format(generation=self.generation)
        built = None
        if manifest.is_file():
            try:
                built = _Built.load(self.directory, json.loads(manifest.read_text()))
            except Exception:  # a damaged cache is rebuilt from the store
                built = None
        ids, vectors = store.vectors(self.generation)
        in_store = set(int(i) for i in ids)
        with self._lock:
            self._built = built
            known = built.id_set if built else set()
            self._fresh = {int(i): v for i, v in zip(ids, vectors) if int(i) not in known}
            self._fresh_cache = None
            self._deleted = known - in_store
        self.reference.invalidate()

    def add(self, ids, vectors: np.ndarray) -> None:
        with self._lock:
            for row_id, vector in zip(ids, np.asarray(vectors, dtype=np.float32)):
                self._fresh[int(row_id)] = vector
            self._fresh_cache = None

    def add_missing(self, ids, vectors: np.ndarray) -> int:
        """Add only the rows this index does not hold yet; returns how many. Why: a cluster
        replica's feed (cbmir.service.replica) repeats rows it loaded or wrote itself."""
        count = 0
        with self._lock:
            built = self._built.id_set if self._built is not None else set()
            for row_id, vector in zip(ids, np.asarray(vectors, dtype=np.float32)):
                row_id = int(row_id)
                if row_id not in self._fresh and row_id not in built:
                    self._fresh[row_id] = vector
                    count += 1
            if count:
                self._fresh_cache = None
        return count

    def remove(self, ids) -> None:
        with self._lock:
            for row_id in ids:
                row_id = int(row_id)
                if self._fresh.pop(row_id, None) is None and self._built is not None \
                        and row_id in self._built.id_set:
                    self._deleted.add(row_id)
            self._fresh_cache = None

    def needs_rebuild(self) -> bool:
        return len(self._fresh) >= self.rebuild_threshold and not self.rebuilding

    def rebuild(self, store) -> bool:
        """Build a new Annoy tier from the store and swap it in. False when one is running."""
        from annoy import AnnoyIndex

        if not self._rebuild_lock.acquire(blocking=False):
            return False
        try:
            self.rebuilding = True
            started = time.monotonic()
            ids, vectors = store.vectors(self.generation)
            if len(ids) == 0:
                return True
            stamp = f"{self.generation}-{int(time.time() * 1000)}"
            names = {"annoy": f"annoy-{stamp}.ann", "ids": f"ids-{stamp}.npy",
                     "vectors": f"vectors-{stamp}.npy"}
            annoy_index = AnnoyIndex(vectors.shape[1], "angular")
            for position, vector in enumerate(vectors):
                annoy_index.add_item(position, vector)
            annoy_index.build(self.trees, n_jobs=1)
            try:
                annoy_index.save(str(self.directory / names["annoy"]))
                annoy_index.unload()
                np.save(self.directory / names["ids"], ids)
                np.save(self.directory / names["vectors"], vectors)
            except Exception:  # a full disk: leave no partial files to fill it further
                self._remove_files(names)
                raise
            info = dict(names, dim=int(vectors.shape[1]), count=int(len(ids)),
                        trees=self.trees, generation=self.generation, built=time.time())
            built = _Built.load(self.directory, info)
            manifest = self.directory / MANIFEST.format(generation=self.generation)
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            with self._lock:
                old = self._built
                self._built = built
                self._fresh = {i: v for i, v in self._fresh.items() if i not in built.id_set}
                self._fresh_cache = None
                self._deleted = {i for i in self._deleted if i in built.id_set}
                os.replace(tmp, manifest)
            if old is not None:
                self._remove_files(old.info)
            self.reference.refresh()
            self.last_build_seconds = round(time.monotonic() - started, 3)
            return True
        finally:
            self.rebuilding = False
            self._rebuild_lock.release()

    def _remove_files(self, info: dict) -> None:
        for key in ("annoy", "ids", "vectors"):
            try:
                (self.directory / info[key]).unlink()
            except OSError:
                pass  # still mapped elsewhere or already gone: harmless

    def discard_files(self) -> None:
        """Delete this generation's files (after a re-index replaced it)."""
        manifest = self.directory / MANIFEST.format(generation=self.generation)
        if self._built is not None:
            self._remove_files(self._built.info)
        manifest.unlink(missing_ok=True)

    # -- search ------------------------------------------------------------------------------
    def _fresh_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        if self._fresh_cache is None:
            ids = np.fromiter(self._fresh.keys(), dtype=np.int64, count=len(self._fresh))
            matrix = (np.vstack(list(self._fresh.values())) if self._fresh
                      else np.zeros((0, 1), dtype=np.float32))
            self._fresh_cache = (ids, matrix)
        return self._fresh_cache

    def search(self, vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Up to n (row id, exact cosine) pairs, best first, over both tiers."""
        query = np.asarray(vector, dtype=np.float32).ravel()
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        with self._lock:
            built, deleted = self._built, set(self._deleted)
            fresh_ids, fresh_matrix = self._fresh_matrix()
        ids_parts, score_parts = [], []
        if len(fresh_ids):
            ids_parts.append(fresh_ids)
            score_parts.append(fresh_matrix @ query)
        if built is not None and len(built.ids):
            wanted = min(len(built.ids), max(n, self.candidates) + len(deleted))
            positions = built.annoy.get_nns_by_vector(query, wanted, search_k=self.search_k)
            positions = np.asarray(positions, dtype=np.int64)
            if len(positions):
                candidate_ids = built.ids[positions]
                scores = np.asarray(built.vectors[np.sort(positions)], dtype=np.float32) @ query
                order = np.argsort(positions)
                exact = np.empty(len(positions), dtype=np.float32)
                exact[order] = scores
                keep = np.array([int(i) not in deleted for i in candidate_ids], dtype=bool)
                ids_parts.append(candidate_ids[keep])
                score_parts.append(exact[keep])
        if not ids_parts:
            return []
        all_ids = np.concatenate(ids_parts)
        all_scores = np.concatenate(score_parts)
        top = np.argsort(-all_scores, kind="stable")[:n]
        return [(int(all_ids[i]), float(all_scores[i])) for i in top]

    def build_stamp(self):
        """Changes whenever a rebuild swaps in a new Annoy tier."""
        built = self._built
        return None if built is None else built.info.get("annoy")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to n (row ids, unit vectors) drawn at random, without replacement, over both
        tiers; deleted rows left out. All of them when the index holds n or fewer."""
        with self._lock:
            built, deleted = self._built, set(self._deleted)
            fresh_ids, fresh_matrix = self._fresh_matrix()
        n_built = len(built.ids) if built is not None else 0
        pool = n_built + len(fresh_ids)
        picks = np.arange(pool) if pool <= n else np.sort(rng.choice(pool, n, replace=False))
        in_built, in_fresh = picks[picks < n_built], picks[picks >= n_built] - n_built
        ids = [fresh_ids[in_fresh]]
        rows = [np.asarray(fresh_matrix[in_fresh], dtype=np.float32)] if len(in_fresh) else []
        if len(in_built):
            ids.insert(0, built.ids[in_built])
            rows.insert(0, np.asarray(built.vectors[in_built], dtype=np.float32))
        ids = np.concatenate(ids).astype(np.int64)
        if not rows:
            return ids, np.zeros((0, 1), dtype=np.float32)
        matrix = np.vstack(rows)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        keep = np.array([int(i) not in deleted for i in ids], dtype=bool)
        return ids[keep], matrix[keep]

    def __len__(self) -> int:
        built = len(self._built.ids) if self._built is not None else 0
        return built - len(self._deleted) + len(self._fresh)

    def describe(self) -> dict:
        built = self._built
        return {"generation": self.generation, "size": len(self),
                "built": int(len(built.ids)) if built else 0, "fresh": len(self._fresh),
                "deleted_pending": len(self._deleted), "rebuilding": self.rebuilding,
                "rebuild_threshold": self.rebuild_threshold, "trees": self.trees,
                "search_k": self.search_k, "candidates": self.candidates,
                "last_build_seconds": self.last_build_seconds}
