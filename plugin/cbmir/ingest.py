"""The ingest worker: instance ID -> frames -> model input -> vectors -> store + index.

Why a daemon thread at low priority: storing must not get slower, so nothing
runs in Orthanc's storing thread (instances are enqueued from the change
callback) and the worker yields the CPU to Orthanc's own threads. This worker decodes
with `cbmir.decode.iter_frames` (pydicom + pylibjpeg), the one path `/cbmir/query`
and `cbmir embed` use too, one frame at a time; Orthanc 1.10's own decoder is not
used because it gets some layouts wrong (docs/design.md, "Data path").
onnxruntime releases the GIL while it computes. Every outcome is recorded
(vector, skipped or failed with a reason) and no exception escapes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

from . import decode
from .preprocess import preprocess
from .store import Record
from .workqueue import Pacer

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
    """Runs the worker loop over the engine's queue."""

    def __init__(self, orthanc, engine):
        self.orthanc = orthanc
        self.engine = engine
        self.config = engine.config
        self.thread: threading.Thread | None = None
        self.processed = 0
        self.seconds = 0.0
        self.embedder = None  # the worker's own low-priority session (see Engine.worker_embedder)
        # stays off the CPU while images arrive, for at most IndexDelaySeconds per image
        self.pacer = Pacer(engine.queue, hold=self.config.index_delay_seconds)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cbmir-ingest", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

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
            except Exception as error:  # never let the worker die
                engine.log.error(f"CBMIR: worker error on {len(batch)} instance(s) "
                                 f"{' '.join(i for i, _ in batch)}: {error!r}")
            finally:
                engine.queue.done([instance for instance, _ in batch])

    # -- one batch ------------------------------------------------------------------------------
    def process(self, batch: list[tuple[str, bool]]) -> None:
        started = time.monotonic()
        engine = self.engine
        deletions = engine.store.deletions
        embedder = self.embedder or engine.embedder
        index = engine.write_index()
        generation = index.generation
        records, inputs = [], []
        for instance, force in batch:
            if engine.store.has_instance(instance, generation):
                continue
            if not force and engine.store.rejection(instance) is not None:
                continue
            meta = {}
            try:
                meta, frames = self.load(instance)
                size = embedder.input_size
                prepared = [preprocess(frame, size) for frame in frames]
            except _Gone:
                continue
            except Skip as reason:
                engine.store.reject(instance, "skipped", str(reason), meta)
                engine.log.info(f"CBMIR: skipped {instance}: {reason}")
                continue
            except Exception as error:
                engine.store.reject(instance, "failed", f"{type(error).__name__}: {error}", meta)
                engine.log.error(f"CBMIR: failed {instance}: {type(error).__name__}: {error}")
                continue
            for frame_number, model_input in enumerate(prepared):
                records.append(Record(instance=instance, frame=frame_number,
                                      vector=np.zeros(0, np.float32), **meta))
                inputs.append(model_input)
        if not records:
            return
        vectors, embed_began = [], time.perf_counter()
        for start in range(0, len(inputs), self.config.batch_size):
            vectors.append(embedder.embed_inputs(
                np.stack(inputs[start:start + self.config.batch_size])))
        vectors = np.concatenate(vectors)
        engine.latency.record("embed", time.perf_counter() - embed_began, len(inputs))
        for record, vector in zip(records, vectors):
            record.vector = vector
            record.model_version = embedder.version
        ids = engine.store.add(records, generation)
        new = [(row_id, vector) for row_id, vector in zip(ids, vectors) if row_id is not None]
        if new:
            engine.added(index, [row_id for row_id, _ in new], np.stack([v for _, v in new]))
        if engine.store.deletions != deletions:
            self.drop_deleted_meanwhile({r.instance for r in records})
        self.processed += len({r.instance for r in records})
        for instance in dict.fromkeys(r.instance for r in records):
            engine.log.info(f"CBMIR: indexed {instance} (generation {generation})")
        self.seconds += time.monotonic() - started

    def drop_deleted_meanwhile(self, instances: set[str]) -> None:
        """An instance deleted while it was being embedded must not stay indexed: its
        DELETED callback may have run before our insert. Checked after the insert, so
        either this check or that callback removes it; only needed when some deletion
        happened since the batch started (Orthanc deletes before it calls back)."""
        for instance in instances:
            try:
                self.orthanc.RestApiGet(f"/instances/{instance}")
            except self.orthanc.OrthancException:
                self.engine.delete("instance", instance)

    def load(self, instance: str) -> tuple[dict, Iterator[np.ndarray]]:
        """Metadata and display-ready frames (decoded lazily, one at a time) of a stored
        instance; raises Skip or errors (decoding errors while iterating the frames)."""
        orthanc = self.orthanc
        try:
            dicom = orthanc.GetDicomForInstance(instance)
        except orthanc.OrthancException as error:
            raise _Gone(instance) from error  # deleted since it was queued
        dataset = decode.read_dataset(bytes(dicom))
        parents = orthanc_ids(dataset)
        if parents.get("instance") != instance:  # unusual tags: ask Orthanc (2 more calls)
            try:
                series = json.loads(orthanc.RestApiGet(f"/instances/{instance}"))["ParentSeries"]
                study = json.loads(orthanc.RestApiGet(f"/instances/{instance}/study"))
            except orthanc.OrthancException as error:
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
        if "PixelData" not in dataset and "FloatPixelData" not in dataset \
                and "DoubleFloatPixelData" not in dataset:
            raise Skip(f"no pixel data (SOP class {dataset_text(dataset, 'SOPClassUID')})")
        return meta, decode.iter_frames(dataset)


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


def read_first_frame(data: bytes) -> np.ndarray:
    """Uploaded query body (DICOM or picture) -> one display-ready frame."""
    if decode.looks_like_dicom(data):
        return decode.decode_dicom_bytes(data)[0]
    return decode.read_picture_bytes(io.BytesIO(data).getvalue())
