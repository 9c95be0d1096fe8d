"""cbmir.service.worker (the Ingestor) on the fake orthanc module and a fake model: every outcome
recorded (indexed, skipped, failed, gone), parents computed or asked, the worker thread's loop."""
from __future__ import annotations

import io
import time

import numpy as np
import pydicom

from cbmir.service.gateway import Gateway
from cbmir.service.worker import Ingestor, orthanc_ids
from support.dicom_factory import mr_image, structured_report
from support.fake_embedder import fake_engine
from support.fake_orthanc import FakeOrthanc


def slice_bytes(modality="MR", seed=0, label="low grade") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 4000, (32, 32))
    return mr_image(pixels, f"P{seed}", f"1.2.3.{seed}", f"1.2.3.{seed}.1", label=label,
                    modality=modality)


def orthanc_id(data: bytes) -> str:
    return orthanc_ids(pydicom.dcmread(io.BytesIO(data)))["instance"]


def setup(tmp_path, **config):
    orthanc, lines = FakeOrthanc(), []
    engine = fake_engine(tmp_path, lines, **config)
    return orthanc, engine, Ingestor(Gateway(orthanc), engine), lines


def test_a_stored_slice_is_indexed_with_its_metadata_without_asking_orthanc(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    data = slice_bytes()
    instance = orthanc_id(data)
    orthanc.store(instance, data)
    ingestor.process([(instance, False)])
    (row,) = engine.indexed_rows(instance)
    assert (row["patient_id"], row["modality"], row["label"]) == ("P0", "MR", "low grade")
    assert row["orthanc_series"] == orthanc_ids(pydicom.dcmread(io.BytesIO(data)))["series"]
    assert orthanc.calls == []  # the IDs computed from the UIDs matched: no REST call
    assert ingestor.describe()["processed"] == 1


def test_parents_are_asked_when_the_computed_id_differs(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("odd-id", slice_bytes(), series="se-9", study="st-9", patient="pa-9")
    ingestor.process([("odd-id", False)])
    (row,) = engine.indexed_rows("odd-id")
    assert (row["orthanc_series"], row["orthanc_study"], row["orthanc_patient"]) == (
        "se-9", "st-9", "pa-9")
    assert orthanc.calls == ["/instances/odd-id", "/instances/odd-id/study"]


def test_an_instance_deleted_before_the_worker_came_is_neither_indexed_nor_rejected(tmp_path):
    _, engine, ingestor, _ = setup(tmp_path)
    ingestor.process([("gone", False)])
    assert engine.indexed_rows("gone") == [] and engine.rejection("gone") is None
    assert ingestor.describe() is None


def test_other_modalities_and_objects_without_pixels_are_skipped_with_the_reason(tmp_path):
    orthanc, engine, ingestor, lines = setup(tmp_path)
    orthanc.store("ct", slice_bytes(modality="CT"))
    orthanc.store("sr", structured_report())
    ingestor.process([("ct", False), ("sr", False)])
    assert engine.rejection("ct")["kind"] == "skipped"
    assert "modality CT not in CBMIR.Modalities" in engine.rejection("ct")["reason"]
    assert engine.rejection("sr")["kind"] == "skipped"
    assert any("skipped ct" in line for line in lines)


def test_a_file_that_cannot_be_decoded_is_failed_with_the_reason(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("cut", slice_bytes()[:-300])  # pixel data cut short
    ingestor.process([("cut", False)])
    assert engine.rejection("cut")["kind"] == "failed" and engine.indexed_rows("cut") == []


def test_an_instance_deleted_while_it_was_embedded_is_dropped_and_an_overwritten_one_requeued(
        tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    for name, seed in (("deleted", 1), ("overwritten", 2)):
        orthanc.store(name, slice_bytes(seed=seed))
    ingestor.process([("deleted", False), ("overwritten", False)])
    orthanc.delete("deleted")
    ingestor.drop_deleted_meanwhile({"deleted", "overwritten"})
    assert engine.indexed_rows("deleted") == [] and engine.indexed_rows("overwritten") == []
    assert not engine.queue.is_pending("deleted") and engine.queue.is_pending("overwritten")


def test_the_worker_thread_indexes_what_arrives_and_stops(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path, index_delay_seconds=0)
    orthanc.store("a", slice_bytes(seed=3))
    ingestor.start()
    engine.enqueue("a", arrival=True)
    deadline = time.monotonic() + 20
    while engine.queue.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(engine.indexed_rows("a")) == 1 and engine.status()["pending"] == 0
    engine.stop()
    ingestor.join(5)
    assert not ingestor.thread.is_alive()
