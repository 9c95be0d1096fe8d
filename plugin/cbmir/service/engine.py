"""The plugin's shared state: store, the answering index, the model, the work queue.

Why one object: the ingest worker, the change follower, the re-index job and the
REST handlers run in different threads and must agree on which generation of
vectors answers and which one is being written. The Engine owns that decision;
each of those parts only calls it.

What the REST routes and the metrics may ask (they never touch `store`, `queue` or `target`):
`counters`, `model_available`
and `model_error`, `instances_for_sop`, `answering_generation`, `indexed_rows`,
`indexed_instances`, `rejection`, `request_indexing`,
`search`, `answering_embedder`, `start_reindex` and `reindex_status`, `status`. The wiring
drives the life cycle: `load_model`, `resume_work` (after the worker and follower started;
the engine then counts as `started`), `enqueue` and `delete` from the change callback, `stop`.
The worker and the follower, the engine's own writers, use its store and queue directly.
"""
from __future__ import annotations

import collections
import os
import threading
import time

from cbmir.core.embed import Embedder, ModelUnavailable
from cbmir.service.config import Config
from cbmir.service.logs import Log
from cbmir.service.metrics import Latencies
from cbmir.service.workqueue import WorkQueue
from cbmir.vectors.index import VectorIndex
from cbmir.vectors.search import find_similar
from cbmir.vectors.store import Store

SWITCH_GRACE_SECONDS = 2.0  # old rows outlive a switch-over this long, for queries in flight


class Engine:
    def __init__(self, config: Config, log=print):
        self.config = config
        self.log = Log.wrap(log)  # .info/.warning/.error (see logs.py)
        self.latency = Latencies()  # embed and query durations (metrics.py)
        self.store = self._open_store()
        self.queue = self._new_queue()
        self.embedder: Embedder | None = None
        self.model_error: str | None = "model not loaded yet"
        self._started = False  # set by resume_work, once ORTHANC_STARTED work is done
        self.active = self._new_index(self.store.active_generation)
        self.active.load(self.store)
        self.store.warm_cache(self.active.generation)  # queries read no SQLite rows
        self.target: VectorIndex | None = None
        self.reindex_progress: dict = {"running": False}
        self._rebuild_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.deletions_done = 0  # delete() calls finished since start (status "deletions")
        self._deleted = collections.deque(maxlen=10_000)  # (seq, level, id): see deleted_since
        self._deletion_seq = 0
        self._old_model: tuple[str, Embedder | None] | None = None  # (version, its embedder)
        self.store_error = None  # callable -> dict | None: the worker's failed writes (status)
        if int(self.store.get_state("reindex_generation", "0") or 0) == 0:
            try:  # rows a switch-over left when the process was killed during its grace
                self.store.drop_generations(self.active.generation)
            except Exception as error:  # noqa: BLE001 - harmless leftovers, next start retries
                log(f"CBMIR: cannot drop old generations: {error!r}")

    def _open_store(self):
        """The vector store (cbmir.service.cluster overrides it with PostgreSQL)."""
        return Store(self.config.index_directory)

    def _new_queue(self) -> WorkQueue:
        return WorkQueue()

    def _new_index(self, generation: int) -> VectorIndex:
        c = self.config
        return VectorIndex(c.index_directory, generation, trees=c.annoy_trees,
                           search_k=c.annoy_search_k, candidates=c.candidates,
                           rebuild_threshold=c.rebuild_threshold)

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True once `resume_work` ran (model loaded, worker and follower running)."""
        return self._started

    def resume_work(self, list_instances) -> None:
        """At start, once the model is loaded and the worker runs: resume the re-index the last
        process left, start one when the model changed since the index was built, or rebuild
        a large fresh tier (a lost Annoy file, a crash before a rebuild), which would otherwise
        wait for the next stored image. `list_instances()`: every instance ID of Orthanc."""
        resume = int(self.store.get_state("reindex_generation", "0") or 0)
        if resume and resume != self.active.generation:
            self.start_reindex(list_instances, resume_generation=resume)
        elif self.model_changed():
            self.log.warning("CBMIR: the model changed since the index was built: re-indexing")
            self.start_reindex(list_instances)
        else:
            self.maybe_rebuild(self.active)
        self._started = True

    def enqueue(self, instance: str, arrival: bool = False) -> None:
        """Queue an instance for the worker (`arrival`: just stored, see workqueue.Pacer)."""
        self.queue.put(instance, arrival=arrival)

    def stop(self) -> None:
        """Stop the queue: the worker, the follower and a running re-index end."""
        self.queue.stop()

    # -- model -------------------------------------------------------------------------------
    @property
    def model_available(self) -> bool:
        return self.embedder is not None

    def load_model(self) -> bool:
        """Load the ONNX model; on failure keep running and answer 503 until it exists."""
        c = self.config
        try:
            self.embedder = Embedder(c.model_path, threads=c.threads, device=c.device)
            self.model_error = None
            self._remember_model(self.embedder)
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
        # One intra-op thread: the worker runs this session from several lanes at once, each
        # computing in its own thread (cbmir.service.lanes says why).
        try:
            return Embedder(c.model_path, threads=1, device=c.device, allow_spinning=False)
        except ModelUnavailable:
            return self.embedder

    def model_changed(self) -> bool:
        """True when the answering vectors were made by another model version."""
        if self.embedder is None:
            return False
        rows = self.store.rows("generation=? LIMIT 1", (self.active.generation,))
        return bool(rows) and rows[0]["model_version"] != self.embedder.version

    def _remember_model(self, embedder: Embedder) -> None:
        """Where each model version lives, so that while a re-index moves to a new model the
        old one can still embed new arrivals (and uploads) for the generation it made."""
        try:
            self.store.set_state(f"model_path:{embedder.version}", str(embedder.model_path))
        except Exception as error:  # an unwritable index must not stop the model
            self.log.warning(f"CBMIR: cannot record the model path: {error!r}")

    def embedder_for(self, index: VectorIndex, current: Embedder | None) -> Embedder | None:
        """The model whose vectors fill `index` (None: that model is not available).

        An empty generation takes the current model. An older model is loaded from the
        path recorded when it was last loaded, if that file still holds the same version."""
        if current is None:
            return None
        rows = self.store.rows("generation=? LIMIT 1", (index.generation,))
        version = rows[0]["model_version"] if rows else current.version
        if version == current.version:
            return current
        with self._lock:
            if self._old_model is not None and self._old_model[0] == version:
                return self._old_model[1]
        path = self.store.get_state(f"model_path:{version}")
        old = None
        if path and os.path.isfile(path):
            try:
                old = Embedder(path, threads=1, device=self.config.device, allow_spinning=False)
            except ModelUnavailable:
                old = None
            if old is not None and old.version != version:
                old = None
        self.log(f"CBMIR: generation {index.generation} was made by model v{version}: "
                 + (f"{path} embeds new images for it until the re-index ends" if old else
                    "that model is gone; new images are searchable once the re-index ends"))
        with self._lock:
            self._old_model = (version, old)
        return old

    def answering_embedder(self) -> Embedder | None:
        """The model for query uploads: the one that made the answering generation."""
        return self.embedder_for(self.active, self.embedder)

    def write_plan(self, embedder: Embedder | None) -> list[tuple[VectorIndex, Embedder]]:
        """(index, model) pairs a new vector must reach: the active generation, so a new image
        is searchable within the usual delay even while a re-index runs, and the re-index
        target. While a re-index moves to a new model whose predecessor is gone, only the
        target (the image becomes searchable at the switch)."""
        target = self.target
        if target is None:
            return [(self.active, embedder)]
        active = self.embedder_for(self.active, embedder)
        return ([(self.active, active)] if active is not None else []) + [(target, embedder)]

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
        with self._lock:
            self._deletion_seq += 1
            self._deleted.append((self._deletion_seq, level.lower(), orthanc_id))
        ids = self.store.delete_resource(level, orthanc_id)
        for index in (self.active, self.target):
            if index is not None:
                index.remove(ids)
        with self._lock:
            self.deletions_done += 1
        return len(ids)

    def deletion_mark(self) -> int:
        with self._lock:
            return self._deletion_seq

    def deleted_since(self, mark: int, records) -> set[str]:
        """Instances of `records` under a resource deleted after `mark` (all of them when the
        log no longer reaches back that far)."""
        with self._lock:
            log = [entry for entry in self._deleted if entry[0] > mark]
            complete = not self._deleted or self._deleted[0][0] <= mark + 1
        if not log:
            return set()
        if not complete:
            return {r.instance for r in records}
        deleted = {(level, resource) for _, level, resource in log}
        return {r.instance for r in records
                if ("instance", r.instance) in deleted or ("series", r.orthanc_series) in deleted
                or ("study", r.orthanc_study) in deleted
                or ("patient", r.orthanc_patient) in deleted}

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
            # Switch in memory and in the store at once, keeping the old rows a little:
            # a query that took the old generation a moment ago still finds its rows
            # (no 409, no empty answer), and every query after it takes the new one.
            with self._lock:
                self.store.switch_generation(target.generation)
                old, self.active, self.target = self.active, target, None
                self._old_model = None
            self.reindex_progress = {"running": False, "generation": target.generation,
                                     "total": len(instances), "done": len(instances),
                                     "old_generation": old.generation}  # until dropped
            self.log.info(f"CBMIR: re-index done, generation {target.generation} answers")
            self.store.warm_cache(target.generation)
            time.sleep(SWITCH_GRACE_SECONDS)
            self.store.drop_generations(target.generation, only=old.generation)
            old.discard_files()
            self.reindex_progress.pop("old_generation", None)
        except Exception as error:
            self.reindex_progress["error"] = repr(error)
            self.log.error(f"CBMIR: re-index failed: {error!r}")
            with self._lock:
                self.target = None

    # -- reading -----------------------------------------------------------------------------
    def instances_for_sop(self, sop_uid: str) -> list[str]:
        """Indexed Orthanc instance IDs with this SOPInstanceUID (any generation)."""
        return self.store.instances_for_sop(sop_uid)

    @property
    def answering_generation(self) -> int:
        return self.active.generation

    def indexed_rows(self, instance: str, generation: int | None = None) -> list[dict]:
        """The instance's stored frames (with vectors) in `generation` (default: answering)."""
        return self.store.instance_rows(
            instance, self.active.generation if generation is None else generation)

    def indexed_instances(self, generation: int) -> list[str]:
        """Instance IDs with vectors in `generation`."""
        return self.store.instances(generation)

    def rejection(self, instance: str) -> dict | None:
        """{"kind": "skipped"|"failed", "reason": ...} when the instance was not indexed."""
        return self.store.rejection(instance)

    def request_indexing(self, instance: str) -> int:
        """Make sure the worker sees an instance Orthanc has; returns how many are pending."""
        self.queue.put(instance)
        return self.queue.pending()

    def search(self, vector, params, query: dict) -> list[dict]:
        """Results for a query vector from the answering generation (cbmir.vectors.search)."""
        return find_similar(self.active, self.store, vector, params, query)

    def reindex_status(self) -> dict:
        """A copy of the re-index progress: running, generation, total, done (error)."""
        return dict(self.reindex_progress)

    def counters(self) -> dict:
        """What /cbmir/status and the metrics share (one store count): indexed, frames,
        failed, skipped of the answering generation; this node's pending work and the age of
        its oldest item; the answering index (size, fresh); whether a model is loaded."""
        return {**self.store.counts(self.active.generation), "pending": self.queue.pending(),
                "queue_age_seconds": self.queue.oldest_age(), "index": self.active.describe(),
                "model_available": self.embedder is not None}

    def status(self) -> dict:
        counts = self.counters()
        model = ({"available": True, **{k: v for k, v in self.embedder.describe().items()}}
                 if self.embedder else {"available": False, "error": self.model_error,
                                        "path": str(self.config.model_path)})
        return {"started": self.started,
                "indexed": counts["indexed"], "indexed_frames": counts["frames"],
                "pending": counts["pending"], "failed": counts["failed"],
                "skipped": counts["skipped"], "deletions": self.deletions_done,
                "model": model,
                "index": counts["index"], "reindex": dict(self.reindex_progress),
                "latency": self.latency.describe(),
                "checkpoint": int(self.store.get_state("changes_checkpoint", "0")),
                "recent_failures": self.store.recent_failures(5),
                "store_error": self.store_error() if self.store_error else None,
                "in_progress": self.store.in_progress(),
                "config": {"modalities": list(self.config.modalities),
                           "label_tag": self.config.label_tag_text,
                           "batch_size": self.config.batch_size}}
