"""The plugin's shared state: store, the answering index, the model, the work queue.

Why one object: the ingest worker, the change follower, the re-index job and the
REST handlers run in different threads and must agree on which generation of
vectors answers and which one is being written. The Engine owns that decision;
each of those parts only calls it.
"""
from __future__ import annotations

import os
import threading

from .config import Config
from .embed import Embedder, ModelUnavailable
from .index import VectorIndex
from .logs import Log
from .metrics import Latencies
from .store import Store
from .workqueue import WorkQueue


class Engine:
    def __init__(self, config: Config, log=print):
        self.config = config
        self.log = Log.wrap(log)  # .info/.warning/.error (see logs.py)
        self.latency = Latencies()  # embed and query durations (metrics.py)
        self.store = Store(config.index_directory)
        self.queue = WorkQueue()
        self.embedder: Embedder | None = None
        self.model_error: str | None = "model not loaded yet"
        self.started = False  # set once ORTHANC_STARTED work is done (model, threads)
        self.sdk_missing: list[str] = []  # orthanc-python names we use but it lacks
        self.active = self._new_index(self.store.active_generation)
        self.active.load(self.store)
        self.store.warm_cache(self.active.generation)  # queries read no SQLite rows
        self.target: VectorIndex | None = None
        self.reindex_progress: dict = {"running": False}
        self._rebuild_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.deletions_done = 0  # delete() calls finished since start (status "deletions")

    def _new_index(self, generation: int) -> VectorIndex:
        c = self.config
        return VectorIndex(c.index_directory, generation, trees=c.annoy_trees,
                           search_k=c.annoy_search_k, candidates=c.candidates,
                           rebuild_threshold=c.rebuild_threshold)

    # -- model -------------------------------------------------------------------------------
    def load_model(self) -> bool:
        """Load the ONNX model; on failure keep running and answer 503 until it exists."""
        c = self.config
        try:
            self.embedder = Embedder(c.model_path, threads=c.threads, device=c.device)
            self.model_error = None
            self.log.info(f"CBMIR: model {c.model_path} v{self.embedder.version} "
                          f"dim {self.embedder.dim} on {', '.join(self.embedder.providers)}")
            return True
        except ModelUnavailable as error:
            self.embedder = None
            self.model_error = str(error)
            self.log.error(f"CBMIR: model unavailable, queries answer 503: {error}")
            return False

    def worker_embedder(self) -> Embedder | None:
        """A second session of the same model for the ingest worker, created by the calling
        (low-priority) thread so onnxruntime's pool threads inherit its priority, and not
        spinning; queries keep the normal-priority session. Falls back to the shared one."""
        if self.embedder is None:
            return None
        c = self.config
        # Threads 0 (auto): half the cores. onnxruntime's default (one thread per core) waits
        # for its slowest thread, so a busy machine slows it down ~2x (bench/README.md).
        threads = c.threads or max(1, (os.cpu_count() or 2) // 2)
        try:
            return Embedder(c.model_path, threads=threads, device=c.device, allow_spinning=False)
        except ModelUnavailable:
            return self.embedder

    def model_changed(self) -> bool:
        """True when the answering vectors were made by another model version."""
        if self.embedder is None:
            return False
        rows = self.store.rows("generation=? LIMIT 1", (self.active.generation,))
        return bool(rows) and rows[0]["model_version"] != self.embedder.version

    # -- writing -----------------------------------------------------------------------------
    def write_index(self) -> VectorIndex:
        """New vectors go to the re-index generation while one runs, else the active one."""
        return self.target if self.target is not None else self.active

    def added(self, index: VectorIndex, ids, vectors) -> None:
        index.add(ids, vectors)
        self.maybe_rebuild(index)

    def maybe_rebuild(self, index: VectorIndex) -> None:
        if index is not self.active or not index.needs_rebuild():
            return
        with self._lock:
            if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
                return
            self._rebuild_thread = threading.Thread(target=self._rebuild, args=(index,),
                                                    name="cbmir-rebuild", daemon=True)
            self._rebuild_thread.start()

    def _rebuild(self, index: VectorIndex) -> None:
        try:
            index.rebuild(self.store)
            self.log.info(f"CBMIR: rebuilt Annoy index ({index.describe()['built']} vectors, "
                          f"{index.last_build_seconds} s)")
        except Exception as error:  # the fresh tier keeps answering
            self.log.error(f"CBMIR: index rebuild failed: {error!r}")

    def delete(self, level: str, orthanc_id: str) -> int:
        """Remove a deleted resource from the store and every index; counted in status once
        done, so a client can wait for Orthanc's asynchronous DELETED callback."""
        ids = self.store.delete_resource(level, orthanc_id)
        for index in (self.active, self.target):
            if index is not None:
                index.remove(ids)
        with self._lock:
            self.deletions_done += 1
        return len(ids)

    # -- re-index ------------------------------------------------------------------------------
    def start_reindex(self, list_instances, resume_generation: int | None = None) -> bool:
        """Re-embed every instance into a new generation; the active one answers meanwhile."""
        with self._lock:
            if self.target is not None:
                return False
            if resume_generation is None:
                self.store.activate_generation(self.active.generation)  # drop leftovers
                generation = self.active.generation + 1
            else:
                generation = resume_generation
            self.target = self._new_index(generation)
            self.target.load(self.store)
            self.store.set_state("reindex_generation", generation)
            self.reindex_progress = {"running": True, "generation": generation,
                                     "total": None, "done": 0}
        threading.Thread(target=self._reindex, args=(list_instances,), name="cbmir-reindex",
                         daemon=True).start()
        return True

    def _reindex(self, list_instances) -> None:
        target = self.target
        try:
            instances = list_instances()
            self.reindex_progress["total"] = len(instances)
            for instance in instances:
                self.queue.put(instance, force=True)
            remaining = set(instances)
            while remaining and not self.queue.stopped:
                self.queue.wait_done(remaining, timeout=1.0)
                remaining = {i for i in remaining if self.queue.is_pending(i)}
                self.reindex_progress["done"] = len(instances) - len(remaining)
            if self.queue.stopped:
                return  # resumed at next start from the persisted reindex_generation
            target.rebuild(self.store)
            with self._lock:
                self.store.activate_generation(target.generation)
                old, self.active, self.target = self.active, target, None
                self.store.set_state("reindex_generation", 0)
            old.discard_files()
            self.reindex_progress = {"running": False, "generation": target.generation,
                                     "total": len(instances), "done": len(instances)}
            self.log.info(f"CBMIR: re-index done, generation {target.generation} answers")
        except Exception as error:
            self.reindex_progress["error"] = repr(error)
            self.log.error(f"CBMIR: re-index failed: {error!r}")
            with self._lock:
                self.target = None

    # -- reading -----------------------------------------------------------------------------
    def status(self) -> dict:
        counts = self.store.counts(self.active.generation)
        model = ({"available": True, **{k: v for k, v in self.embedder.describe().items()}}
                 if self.embedder else {"available": False, "error": self.model_error,
                                        "path": str(self.config.model_path)})
        return {"started": self.started, "sdk_missing": self.sdk_missing,
                "indexed": counts["indexed"], "indexed_frames": counts["frames"],
                "pending": self.queue.pending(), "failed": counts["failed"],
                "skipped": counts["skipped"], "deletions": self.deletions_done,
                "model": model,
                "index": self.active.describe(), "reindex": dict(self.reindex_progress),
                "latency": self.latency.describe(),
                "checkpoint": int(self.store.get_state("changes_checkpoint", "0")),
                "recent_failures": self.store.recent_failures(5),
                "config": {"modalities": list(self.config.modalities),
                           "label_tag": self.config.label_tag_text,
                           "batch_size": self.config.batch_size}}
