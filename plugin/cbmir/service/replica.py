"""A node's in-memory replica of the shared vector table (cluster mode).

Why: every node answers /cbmir/similar and /cbmir/query over the whole archive from
its own two-tier Annoy index (cbmir.vectors.index), but vectors are written by
whichever node claimed the work. A daemon thread polls PostgreSQL every
`CBMIR.ReplicaPollSeconds` for rows and tombstones with a `seq` above the last one
applied (they commit in seq order: cbmir.vectors.pg_store), adds/removes them, and
follows the cluster's generation state: a re-index started elsewhere makes this node
take part in it (and build the target), and the flip of the active-generation row
makes it switch at the next poll. It also writes this node's heartbeat (cbmir_index.nodes)
so /cbmir/status on any node lists every node's replica.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np

HEARTBEAT_SECONDS = 2.0


class Replica:
    def __init__(self, engine, store, poll_seconds: float = 0.25, list_instances=None):
        self.engine, self.store = engine, store
        self.poll_seconds = poll_seconds
        self.list_instances = list_instances
        self.applied = 0  # seq applied (set from the store before the first load)
        self.caught_up_at = time.time()
        self.applied_rows = 0
        self.applied_tombstones = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # catch_up asks for a poll now
        self._applied = threading.Condition()
        self._thread: threading.Thread | None = None
        self._beat = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cbmir-replica", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
                self.error = None
            except Exception as error:  # noqa: BLE001 - PostgreSQL away: answer from memory
                if self.error is None:
                    self.engine.log.warning(f"CBMIR: replica poll failed: {error!r}")
                self.error = f"{type(error).__name__}: {error}"
            with self._applied:
                self._applied.notify_all()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def wake(self) -> None:
        """Poll now (a notification of new rows: cbmir.service.notify)."""
        self._wake.set()

    def catch_up(self, timeout: float = 2.0) -> bool:
        """Wait (at most `timeout`) until this replica has applied every row committed now.
        Why: a request that found an instance's rows in PostgreSQL (not in the row cache the
        feed fills) must not search a replica that lacks them yet (an empty answer)."""
        target = self.store.last_seq()
        deadline = time.monotonic() + timeout
        with self._applied:
            while self.applied < target and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._wake.set()
                self._applied.wait(min(left, 0.1))
        return True

    # -- one poll ------------------------------------------------------------------------------
    def poll(self) -> int:
        """Follow the generation state, then apply new rows and tombstones; returns how many."""
        self.follow_generations()
        engine = self.engine
        indexes = {index.generation: index for index in (engine.active, engine.target)
                   if index is not None}
        applied = 0
        while True:
            rows, tombs, high = self.store.changes_since(self.applied, sorted(indexes))
            if high == self.applied:
                break
            by_generation: dict[int, list[dict]] = {}
            for row in rows:
                by_generation.setdefault(row["generation"], []).append(row)
            for generation, group in by_generation.items():
                index = indexes.get(generation)
                if index is None:
                    continue
                added = index.add_missing([r["id"] for r in group],
                                          np.stack([r["vector"] for r in group]))
                applied += added
                if index is engine.active:
                    cache = self.store.cache
                    self.store.cache.put([r for r in group if cache.get(r["id"]) is None])
            if tombs:
                ids = [row_id for _, row_id, _ in tombs]
                for index in indexes.values():
                    index.remove(ids)
                self.store.cache.drop(ids)
                applied += len(tombs)
                self.applied_tombstones += len(tombs)
            self.applied_rows += len(rows)
            self.applied = high
        self.caught_up_at = time.time()
        if applied:
            engine.maybe_rebuild(engine.active)
        if time.monotonic() - self._beat > HEARTBEAT_SECONDS:
            self.heartbeat()
        return applied

    def follow_generations(self) -> None:
        """Take part in a re-index started on another node; switch when the row flips."""
        engine = self.engine
        active = int(self.store.get_state("active_generation", "1"))
        reindex = int(self.store.get_state("reindex_generation", "0") or 0)
        running = engine.reindex_progress.get("running")
        if reindex and reindex != engine.active.generation and engine.target is None \
                and not running and self.list_instances is not None:
            engine.log.info(f"CBMIR: joining the cluster re-index to generation {reindex}")
            engine.start_reindex(self.list_instances, resume_generation=reindex)
            return
        if active == engine.active.generation or running:
            return  # a local re-index switches by itself when its queue is empty
        with engine._lock:
            old = engine.active
            if engine.target is not None and engine.target.generation == active:
                new, engine.target = engine.target, None
            else:
                new = engine._new_index(active)
                new.load(self.store)
            engine.active = new
            engine._old_model = None
            engine.reindex_progress = {"running": False, "generation": active}
        self.store.warm_cache(active)
        engine.log.info(f"CBMIR: generation {active} answers (switched by the cluster)")
        engine.maybe_rebuild(new)
        old.discard_files()

    def heartbeat(self) -> None:
        self._beat = time.monotonic()
        with self.store.connection() as conn:
            conn.execute("INSERT INTO cbmir_index.nodes (name, seen, replica) VALUES (%s, now(), %s) "
                         "ON CONFLICT (name) DO UPDATE SET seen=now(), replica=excluded.replica",
                         (self.store.node, json.dumps(self.describe())))

    def describe(self) -> dict:
        index = self.engine.active
        return {"generation": index.generation, "size": len(index), "seq_applied": self.applied,
                "lag_seconds": round(time.time() - self.caught_up_at, 3),
                "rows_applied": self.applied_rows, "tombstones_applied": self.applied_tombstones,
                "poll_seconds": self.poll_seconds, "error": self.error}
