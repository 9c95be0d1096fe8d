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

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

from cbmir.core import decode, limits
from cbmir.core.embed import embed_in_batches
from cbmir.core.preprocess import preprocess
from cbmir.service import retry
from cbmir.service.gateway import NotFound
from cbmir.service.workqueue import Pacer
from cbmir.vectors.store import Record

WORKER_NICE = 10


def lower_priority(nice: int = WORKER_NICE) -> None:
    """Lower this thread's CPU priority (Linux niceness is per thread).

    Why: on a small server the worker's decode/embed competes with Orthanc's own
    threads for the same cores; storing an image must win. Best effort only.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


class Skip(Exception):
    """Not for this index (other modality, no pixels): recorded once as 'skipped'."""


def element_text(value) -> str:
    """A DataElement or plain value as text; multi-values joined with a backslash."""
    value = getattr(value, "value", value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def dataset_text(dataset, keyword: str) -> str:
    return element_text(dataset.get(keyword))


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

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cbmir-ingest", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def describe(self) -> dict | None:
        """Instances indexed by this process and their rate (status "ingest"); None before any."""
        if self.seconds <= 0:
            return None
        return {"processed": self.processed,
                "images_per_second": round(self.processed / self.seconds, 1)}

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
                self.process(batch)
                failures = self.backoff.succeeded()
                if failures:
                    engine.log.warning(f"CBMIR: the index is writable again after {failures} "
                               f"failed attempt(s)")
            except Exception as error:  # never let the worker die, never lose the batch
                if retry.is_store_error(error):
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
    def process(self, batch: list[tuple[str, bool]]) -> None:
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
            self.process_group(normal)

    def process_group(self, group: list[tuple[str, bool]]) -> None:
        instances = [instance for instance, _ in group]
        store = self.engine.store
        store.begin_attempt(instances)
        for instance in instances:
            self._own_attempts[instance] = self._own_attempts.get(instance, 0) + 1
        try:
            self._process(group)
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

    def _process(self, batch: list[tuple[str, bool]]) -> None:
        started = time.monotonic()
        engine = self.engine
        mark = engine.deletion_mark()
        embedder = self.embedder or engine.embedder
        # Where new vectors go: the active generation (searchable at once) and, during a
        # re-index, its target; each with the model that made that generation.
        plan = engine.write_plan(embedder)
        work: dict[int, tuple] = {}  # generation -> (index, embedder, records, inputs)
        for instance, force in batch:
            targets = [(index, model) for index, model in plan
                       if not engine.store.has_instance(instance, index.generation)]
            if not targets:
                continue
            if not force and engine.store.rejection(instance) is not None:
                continue
            meta = {}
            try:
                meta, frames = self.load(instance)
                prepared = {model.input_size: [] for _, model in targets}
                for frame in frames:  # one pass: `frames` may be a generator (one frame at a time)
                    for size, inputs in prepared.items():
                        inputs.append(preprocess(limits.reduce(frame, size), size))
                del frames
            except _Gone:
                continue
            except (Skip, decode.NotAnImage, limits.TooLarge) as reason:
                engine.store.reject(instance, "skipped", str(reason), meta)
                engine.log.info(f"CBMIR: skipped {instance}: {reason}")
                continue
            except Exception as error:
                if retry.is_store_error(error):
                    raise
                engine.store.reject(instance, "failed", f"{type(error).__name__}: {error}", meta)
                engine.log.error(f"CBMIR: failed {instance}: {type(error).__name__}: {error}")
                continue
            for index, model in targets:
                _, _, records, inputs = work.setdefault(index.generation, (index, model, [], []))
                for frame_number, model_input in enumerate(prepared[model.input_size]):
                    records.append(Record(instance=instance, frame=frame_number,
                                          vector=np.zeros(0, np.float32), **meta))
                    inputs.append(model_input)
        embedded: dict[tuple, np.ndarray] = {}  # (model, instance, frame) -> vector: once each
        written = []
        for index, model, records, inputs in work.values():
            todo = [n for n, r in enumerate(records)
                    if (id(model), r.instance, r.frame) not in embedded]
            fresh = embed_in_batches(lambda chunk: model.embed_inputs(np.stack(chunk)),
                                     [inputs[n] for n in todo], self.config.batch_size, model.dim,
                                     lambda n, took: engine.latency.record("embed", took, n))
            for n, vector in zip(todo, fresh):
                embedded[(id(model), records[n].instance, records[n].frame)] = vector
            vectors = np.stack([embedded[(id(model), r.instance, r.frame)] for r in records])
            for record, vector in zip(records, vectors):
                record.vector = vector
                record.model_version = model.version
            ids = engine.store.add(records, index.generation)
            new = [(row_id, vector) for row_id, vector in zip(ids, vectors) if row_id is not None]
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

    def load(self, instance: str) -> tuple[dict, Iterator[np.ndarray]]:
        """Metadata and display-ready frames (decoded lazily, one at a time) of a stored
        instance; raises Skip or errors (decoding errors while iterating the frames)."""
        try:
            dicom = self.gateway.instance_dicom(instance)
        except NotFound as error:
            raise _Gone(instance) from error  # deleted since it was queued
        # The header alone first (bounded, also for deflated files): a size over the limits
        # is refused before any pixel is decoded (cbmir.core.limits).
        try:
            dataset = limits.read_header(dicom)
        except limits.BadHeader as error:
            raise decode.UndecodableImage(str(error)) from error
        parents = orthanc_ids(dataset)
        if parents.get("instance") != instance:  # unusual tags: ask Orthanc (2 more calls)
            try:
                series = self.gateway.instance(instance)["ParentSeries"]
                study = self.gateway.instance_study(instance)
            except NotFound as error:
                raise _Gone(instance) from error
            parents = {"series": series, "study": study.get("ID", ""),
                       "patient": study.get("ParentPatient", "")}
        group, element = self.config.label_tag
        label_element = dataset.get((group << 16) | element)
        meta = {"sop_uid": dataset_text(dataset, "SOPInstanceUID"),
                "study_uid": dataset_text(dataset, "StudyInstanceUID"),
                "series_uid": dataset_text(dataset, "SeriesInstanceUID"),
                "patient_id": dataset_text(dataset, "PatientID"),
                "modality": dataset_text(dataset, "Modality").upper(),
                "series_description": dataset_text(dataset, "SeriesDescription"),
                "study_date": dataset_text(dataset, "StudyDate"),
                "label": element_text(label_element),
                "orthanc_series": parents["series"], "orthanc_study": parents["study"],
                "orthanc_patient": parents["patient"]}
        if not self.config.accepts_modality(meta["modality"]):
            raise Skip(f"modality {meta['modality'] or '(none)'} not in CBMIR.Modalities")
        limits.check_size(dataset, self.config.max_frame_pixels, self.config.max_instance_pixels)
        # One frame's pixels in memory at a time, also for deflated files (cbmir.core.decode).
        return meta, decode.iter_frames_from_bytes(dicom, dataset)


def _orthanc_hash(text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def orthanc_ids(dataset) -> dict:
    """Orthanc's resource IDs of an instance, computed as Orthanc does (SHA-1 of the UIDs).

    Why: asking Orthanc (/instances/{id}, /instances/{id}/study) takes its database
    lock twice per image while uploads wait for the same lock; the caller checks the
    computed instance ID against the real one and asks Orthanc when they differ.
    """
    keys = [dataset_text(dataset, k) for k in
            ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    return {level: _orthanc_hash("|".join(keys[:n])) for n, level in
            ((1, "patient"), (2, "study"), (3, "series"), (4, "instance"))}


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


class _Gone(Exception):
    """The instance was deleted from Orthanc before the worker reached it."""
