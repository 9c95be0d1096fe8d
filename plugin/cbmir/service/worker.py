"""The ingest worker: instance ID -> frames -> model input -> vectors -> store + index.

Why a daemon thread at low priority: storing must not get slower, so nothing
runs in Orthanc's storing thread (instances are enqueued from the change
callback) and the worker yields the CPU to Orthanc's own threads. This worker decodes
with `cbmir.core.decode.iter_frames` (pydicom + pylibjpeg), the one path `/cbmir/query`
and `cbmir embed` use too, one frame at a time; Orthanc 1.10's own decoder is not
used because it gets some layouts wrong (docs/design.md, "Data path").
onnxruntime releases the GIL while it computes. Every outcome is recorded
(vector, skipped or failed with a reason) and no exception escapes.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from cbmir.core import decode, limits
from cbmir.core.embed import embed_in_batches
from cbmir.core.preprocess import preprocess
from cbmir.service import retry
from cbmir.service.gateway import NotFound
from cbmir.service.instance_reader import Gone, Skip, read_instance
from cbmir.service.lanes import LARGE_FRAME_PIXELS, Lanes, lane_count, lower_priority, split
from cbmir.service.workqueue import Pacer
from cbmir.vectors.store import Record


class Ingestor:
    """Runs the worker loop over the engine's queue; Orthanc is reached through `gateway`."""

    def __init__(self, gateway, engine):
        self.gateway = gateway
        self.engine = engine
        self.config = engine.config
        self.thread: threading.Thread | None = None
        self.processed = 0
        self.seconds = 0.0
        self.embedder = None  # the worker's own low-priority session (see Engine.worker_embedder)
        # stays off the CPU while images arrive, for at most IndexDelaySeconds per image
        self.pacer = Pacer(engine.queue, hold=self.config.index_delay_seconds)
        self.backoff = retry.Backoff()  # after a failed index write (status "store_error")
        engine.store_error = self.backoff.describe
        self._own_attempts: dict[str, int] = {}  # attempt rows this process left (not deaths)
        self.lanes = Lanes(self._lane_count(on_gpu=False))  # sized again for each model session
        self.large_frames = threading.Lock()  # see cbmir.service.lanes.LARGE_FRAME_PIXELS

    def _lane_count(self, on_gpu: bool) -> int:
        return lane_count(self.config.index_threads, self.config.threads, on_gpu)

    def _fit_lanes(self, embedder) -> None:
        """One lane on a GPU (a session with whole batches keeps it busy), else one per core;
        decided by where the session really runs (a CUDA request may fall back to the CPU)."""
        count = self._lane_count(on_gpu="CUDAExecutionProvider" in embedder.providers)
        if count != self.lanes.count:
            self.lanes.shutdown()
            self.lanes = Lanes(count)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cbmir-ingest", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        self.lanes.shutdown()

    def describe(self) -> dict | None:
        """Instances indexed by this process and their rate (status "ingest"); None before any."""
        if self.seconds <= 0:
            return None
        return {"processed": self.processed,
                "images_per_second": round(self.processed / self.seconds, 1),
                "lanes": self.lanes.count}

    def _run(self) -> None:
        engine = self.engine
        lower_priority()
        if engine.embedder is None:
            engine.load_model()
        seen_model = _file_stamp(self.config.model_path)
        while not engine.queue.stopped:
            if engine.embedder is None:
                # Items stay pending until a model is available; one installed (or fixed)
                # while Orthanc runs is picked up without a restart.
                stamp = _file_stamp(self.config.model_path)
                if stamp != seen_model:
                    seen_model = stamp
                    engine.load_model()
                time.sleep(0.5)
                continue
            if self.embedder is None or self.embedder.model_path != engine.embedder.model_path:
                self.embedder = engine.worker_embedder()
                self._fit_lanes(self.embedder)
            if self.backoff.waiting():  # the index could not be written: wait, then retry
                time.sleep(min(0.5, self.backoff.waiting()))
                continue
            # Wait for work without taking it, so the first image of a burst waits its turn too.
            if not engine.queue.wait_for_work(timeout=0.5):
                continue
            arrivals_only = self.pacer.wait_turn()
            batch = engine.queue.get_batch(self.pacer.batch_size(self.config.batch_size),
                                           timeout=0, arrivals_only=arrivals_only)
            if not batch:
                continue
            try:
                # while images arrive, one lane (Pacer): storing keeps the other cores
                self.process(batch, lanes=1 if arrivals_only else None)
                failures = self.backoff.succeeded()
                if failures:
                    engine.log.warning(f"CBMIR: the index is writable again after {failures} "
                               f"failed attempt(s)")
            except Exception as error:  # never let the worker die, never lose the batch
                if retry.is_store_error(error, self.engine.store):
                    engine.queue.requeue(batch)  # still pending: the checkpoint waits for it
                    delay = self.backoff.failed(error)
                    engine.log.error(f"CBMIR: cannot write the index ({error!r}); {len(batch)} "
                               f"instance(s) stay queued, retrying in {delay:g} s")
                else:
                    engine.log.error(f"CBMIR: worker error on {len(batch)} instance(s) "
                                     f"{' '.join(i for i, _ in batch)}: {error!r}")
                    self.reject_batch(batch, error)
            finally:
                engine.queue.done([instance for instance, _ in batch])

    # -- one batch ------------------------------------------------------------------------------
    def process(self, batch: list[tuple[str, bool]], lanes: int | None = None) -> None:
        """Attempt counters first (see cbmir.service.retry): an instance whose earlier attempt died
        with the process runs alone; one that died MAX_ATTEMPTS times is recorded failed."""
        store = self.engine.store
        stored = store.attempts(instance for instance, _ in batch)
        normal = []
        for item in batch:
            deaths = stored[item[0]] - self._own_attempts.get(item[0], 0)
            if deaths >= retry.MAX_ATTEMPTS:
                store.reject(item[0], "failed", retry.killed_reason(deaths))
                store.end_attempt([item[0]])
                self._own_attempts.pop(item[0], None)
                self.engine.log.error(f"CBMIR: failed {item[0]}: {retry.killed_reason(deaths)}")
            elif deaths > 0:
                self.process_group([item])
            else:
                normal.append(item)
        if normal:
            self.process_group(normal, lanes)

    def process_group(self, group: list[tuple[str, bool]], lanes: int | None = None) -> None:
        instances = [instance for instance, _ in group]
        store = self.engine.store
        store.begin_attempt(instances)
        for instance in instances:
            self._own_attempts[instance] = self._own_attempts.get(instance, 0) + 1
        try:
            self._process(group, lanes)
        finally:  # an exception is not a death: clear the counter (best effort on a full disk)
            try:
                store.end_attempt(instances)
                for instance in instances:
                    self._own_attempts.pop(instance, None)
            except Exception:  # noqa: BLE001 - remembered in _own_attempts instead
                pass

    def reject_batch(self, batch, error: Exception) -> None:
        """An unexpected error for a whole batch: record each as failed (visible), not lost."""
        for instance, _ in batch:
            try:
                self.engine.store.reject(instance, "failed", f"{type(error).__name__}: {error}")
            except Exception:  # noqa: BLE001 - unwritable: keep it queued instead
                self.engine.queue.requeue([(instance, False)])

    def _process(self, batch: list[tuple[str, bool]], lanes: int | None = None) -> None:
        """Store reads and writes stay in this (the worker) thread; reading, decoding and
        embedding run in up to `lanes` lanes (cbmir.service.lanes), results in batch order."""
        started = time.monotonic()
        engine = self.engine
        embedder = self.embedder or engine.embedder
        # Where new vectors go: the active generation (searchable at once) and, during a
        # re-index, its target; each with the model that made that generation.
        plan = engine.write_plan(embedder)
        self.drop_overwritten(batch, plan)  # before the mark: these deletions are our own
        mark = engine.deletion_mark()
        jobs = []  # (instance, [(index, model)]) still to embed
        for instance, force in batch:
            targets = [(index, model) for index, model in plan
                       if not engine.store.has_instance(instance, index.generation)]
            if targets and (force or self.rejected_file_changed(instance)):
                jobs.append((instance, targets))
        chunks = split(jobs, lanes or self.lanes.count)
        outcomes = [outcome for chunk in self.lanes.map(self._embed_chunk, chunks)
                    for outcome in chunk]
        work: dict[int, tuple] = {}  # generation -> (index, records)
        for (instance, targets), outcome in zip(jobs, outcomes):
            if isinstance(outcome, _Rejected):
                engine.store.reject(instance, outcome.kind, outcome.reason, outcome.meta)
                log = engine.log.info if outcome.kind == "skipped" else engine.log.error
                log(f"CBMIR: {outcome.kind} {instance}: {outcome.reason}")
                continue
            if outcome is None:  # deleted since it was queued
                continue
            meta, vectors = outcome
            for index, model in targets:
                _, records = work.setdefault(index.generation, (index, []))
                records += [Record(instance=instance, frame=frame, vector=vector,
                                   model_version=model.version, **meta)
                            for frame, vector in enumerate(vectors[id(model)])]
        written = []
        for index, records in work.values():
            ids = engine.store.add(records, index.generation)
            new = [(row_id, r.vector) for row_id, r in zip(ids, records) if row_id is not None]
            if new:
                engine.added(index, [row_id for row_id, _ in new], np.stack([v for _, v in new]))
            written += records
        if not written:
            return
        stale = engine.deleted_since(mark, written)
        if stale:
            self.drop_deleted_meanwhile(stale)
        self.processed += len({r.instance for r in written})
        for instance in dict.fromkeys(r.instance for r in written):
            engine.log.info(f"CBMIR: indexed {instance}")
        self.seconds += time.monotonic() - started

    # -- one lane's work (no store access here) -----------------------------------------------
    def _embed_chunk(self, chunk: list[tuple[str, list]]) -> list:
        """Per job: (meta, {id(model): (frames, D) vectors}), a _Rejected, or None (gone).
        Each model embeds the chunk's frames together, once even when it serves two
        generations."""
        prepared = [self._prepare(instance, targets) for instance, targets in chunk]
        models = {id(model): model for _, targets in chunk for _, model in targets}
        for key, model in models.items():
            owners = [p for p, (_, targets) in zip(prepared, chunk) if isinstance(p, _Prepared)
                      and any(m is model for _, m in targets)]
            counts = [len(p.inputs[model.input_size]) for p in owners]
            fresh = embed_in_batches(lambda part, model=model: model.embed_inputs(np.stack(part)),
                                     [x for p in owners for x in p.inputs[model.input_size]],
                                     self.config.batch_size, model.dim,
                                     lambda n, took: self.engine.latency.record("embed", took, n))
            for owner, vectors in zip(owners, np.split(fresh, np.cumsum(counts)[:-1])):
                owner.vectors[key] = vectors
        return [(p.meta, p.vectors) if isinstance(p, _Prepared) else p for p in prepared]

    def _prepare(self, instance: str, targets: list):
        """Model inputs of one instance for each input size its targets need, or the outcome
        that replaces them (_Rejected, None when deleted). A frame over LARGE_FRAME_PIXELS is
        decoded by one lane at a time."""
        meta = {}
        try:
            fingerprint = self.gateway.file_fingerprint(instance)  # before the file
            meta = {"fingerprint": fingerprint}  # what a rejection records, at least
            stored = read_instance(self.gateway, self.config, instance, fingerprint)
            meta = stored.meta
            inputs = {model.input_size: [] for _, model in targets}
            large = stored.frame_pixels > LARGE_FRAME_PIXELS
            with self.large_frames if large else nullcontext():
                for frame in stored.frames:  # a generator: one frame in memory at a time
                    for size, sized in inputs.items():
                        sized.append(preprocess(limits.reduce(frame, size), size))
            return _Prepared(meta, inputs)
        except (Gone, NotFound):  # deleted since it was queued
            return None
        except (Skip, decode.NotAnImage, limits.TooLarge) as reason:
            return _Rejected("skipped", str(reason), meta)
        except Exception as error:  # a lane never touches the store: any error is this file's
            return _Rejected("failed", f"{type(error).__name__}: {error}", meta)

    def drop_overwritten(self, batch: list[tuple[str, bool]], plan) -> None:
        """An overwrite keeps the instance ID, so one whose DELETED callback never reached
        this plugin (Orthanc killed -9 in between, or the plugin off at the time) comes back
        through the /changes replay looking "already indexed". Its stored file's fingerprint
        (one small REST call) tells: when it is not the one the rows were made from, the rows
        go and the instance is embedded again below. Rows without a fingerprint (written by
        an earlier release) count as changed when the replay brings them back, except while
        a re-index is writing them anew anyway."""
        store = self.engine.store
        for instance, _ in batch:
            held = [index.generation for index, _ in plan
                    if store.has_instance(instance, index.generation)]
            if not held:
                continue
            stored = store.fingerprint(instance, held[0])
            if stored is None and len(held) < len(plan):
                continue
            if stored is not None:
                try:
                    if self.gateway.file_fingerprint(instance) == stored:
                        continue  # the same file: nothing to do
                except NotFound:
                    continue  # deleted: its DELETED callback or the reconciliation removes it
            self.engine.delete("instance", instance)
            self.engine.log.info(f"CBMIR: {instance} was overwritten since it was indexed "
                                 f"(its file changed): indexing it again")

    def rejected_file_changed(self, instance: str) -> bool:
        """False for an instance recorded skipped/failed from the file Orthanc still has (or
        from an unknown file: rejections an earlier release wrote); True for one never
        rejected, or overwritten since, unseen (then it is tried again: one REST call)."""
        rejected = self.engine.store.rejection(instance)
        if rejected is None:
            return True
        if not rejected.get("fingerprint"):
            return False
        try:
            changed = self.gateway.file_fingerprint(instance) != rejected["fingerprint"]
        except NotFound:
            return False  # deleted: its DELETED callback or the reconciliation removes it
        if changed:
            self.engine.log.info(f"CBMIR: {instance} was overwritten since it was "
                                 f"{rejected['kind']}: trying it again")
        return changed

    def drop_deleted_meanwhile(self, instances: set[str]) -> None:
        """An instance deleted while it was being embedded must not stay indexed: its
        DELETED callback may have run before our insert. Checked after the insert, so
        either this check or that callback removes it. An instance that Orthanc still has
        was overwritten meanwhile (OverwriteInstances: delete, then store again): our rows
        hold the old content, so they go and the instance is queued again."""
        for instance in instances:
            self.engine.delete("instance", instance)
            if self.gateway.instance_exists(instance):
                self.engine.queue.put(instance, force=True)


def _file_stamp(path) -> tuple | None:
    """(mtime, size) of the model and its card, None while the model is missing."""
    try:
        model = os.stat(path)
    except OSError:
        return None
    try:  # the card may live inside the ONNX file only (embed.load_card)
        card_mtime = os.stat(os.path.splitext(path)[0] + ".json").st_mtime
    except OSError:
        card_mtime = None
    return model.st_mtime, model.st_size, card_mtime


@dataclass
class _Prepared:
    meta: dict
    inputs: dict[int, list[np.ndarray]]  # model input size -> one input per frame
    vectors: dict[int, np.ndarray] = field(default_factory=dict)  # id(model) -> (frames, D)


@dataclass
class _Rejected:
    kind: str  # "skipped" or "failed"
    reason: str
    meta: dict
