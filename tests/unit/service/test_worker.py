"""cbmir.service.worker (the Ingestor) on the fake orthanc module and a fake model: every outcome
recorded (indexed, skipped, failed, gone), parents computed or asked, the worker thread's loop."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pydicom

from cbmir.service.gateway import Gateway
from cbmir.service.instance_reader import orthanc_ids
from cbmir.service.worker import Ingestor
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


def test_a_stored_slice_is_indexed_with_its_metadata_asking_orthanc_only_its_file(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    data = slice_bytes()
    instance = orthanc_id(data)
    orthanc.store(instance, data)
    ingestor.process([(instance, False)])
    (row,) = engine.indexed_rows(instance)
    assert (row["patient_id"], row["modality"], row["label"]) == ("P0", "MR", "low grade")
    assert row["orthanc_series"] == orthanc_ids(pydicom.dcmread(io.BytesIO(data)))["series"]
    # the IDs computed from the UIDs matched: one REST call only, the file's fingerprint
    assert orthanc.calls == [f"/instances/{instance}/attachments/dicom/info"]
    assert row.get("fingerprint") is None  # not in the rows queries read
    assert engine.store.fingerprint(instance, 1) == orthanc.instances[instance]["uuid"]
    assert ingestor.describe()["processed"] == 1


def test_parents_are_asked_when_the_computed_id_differs(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("odd-id", slice_bytes(), series="se-9", study="st-9", patient="pa-9")
    ingestor.process([("odd-id", False)])
    (row,) = engine.indexed_rows("odd-id")
    assert (row["orthanc_series"], row["orthanc_study"], row["orthanc_patient"]) == (
        "se-9", "st-9", "pa-9")
    assert orthanc.calls == ["/instances/odd-id/attachments/dicom/info", "/instances/odd-id",
                             "/instances/odd-id/study"]


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


def test_an_instance_overwritten_unseen_is_indexed_again_from_its_new_file(tmp_path):
    """The /changes replay brings an instance already indexed whose file was replaced (the
    DELETED callback never came: kill -9, or the plugin off): its rows are replaced."""
    orthanc, engine, ingestor, lines = setup(tmp_path)
    first, second = slice_bytes(seed=4, label="first"), slice_bytes(seed=5, label="second")
    orthanc.store("x", first)
    ingestor.process([("x", False)])
    (old,) = engine.indexed_rows("x")
    orthanc.store("x", second)  # an overwrite: same ID, a new file, no callback
    orthanc.calls.clear()
    ingestor.process([("x", False)])
    (new,) = engine.indexed_rows("x")
    assert (old["label"], new["label"]) == ("first", "second")
    assert not np.allclose(old["vector"], new["vector"])
    assert engine.store.fingerprint("x", 1) == orthanc.instances["x"]["uuid"]
    assert engine.status()["index"]["size"] == 1  # the old vector left the index too
    assert any("x was overwritten" in line for line in lines)


def test_an_instance_replayed_with_the_same_file_costs_one_rest_call_and_no_embedding(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("x", slice_bytes(seed=6))
    ingestor.process([("x", False)])
    (before,) = engine.indexed_rows("x")
    orthanc.calls.clear()
    batches = len(engine.embedder.batches)
    ingestor.process([("x", False)])
    (after,) = engine.indexed_rows("x")
    assert after["id"] == before["id"] and len(engine.embedder.batches) == batches
    assert orthanc.calls == ["/instances/x/attachments/dicom/info"]


def test_rows_without_a_fingerprint_are_indexed_again_when_the_replay_brings_them(tmp_path):
    """Rows an earlier release wrote have no fingerprint (unknown): re-embedded once, with
    no REST call to compare; then they have one."""
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("x", slice_bytes(seed=7))
    ingestor.process([("x", False)])
    engine.store._conn().execute("UPDATE vectors SET fingerprint=NULL")
    (before,) = engine.indexed_rows("x")
    orthanc.calls.clear()
    ingestor.process([("x", False)])
    (after,) = engine.indexed_rows("x")
    assert after["id"] != before["id"] and engine.status()["indexed_frames"] == 1
    assert engine.store.fingerprint("x", 1) == orthanc.instances["x"]["uuid"]
    assert "/instances/x/attachments/dicom/info" in orthanc.calls  # only for the new rows


def test_an_indexed_instance_deleted_from_orthanc_is_left_to_its_deleted_callback(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("x", slice_bytes(seed=8))
    ingestor.process([("x", False)])
    orthanc.delete("x")
    ingestor.process([("x", False)])  # no error; the rows go with the DELETED callback
    assert len(engine.indexed_rows("x")) == 1 and engine.rejection("x") is None


def test_a_skipped_instance_overwritten_unseen_is_tried_again_from_its_new_file(tmp_path):
    """Issue 11 point 9 for rejections: a CT skipped, then overwritten by an MR with the same
    ID while the plugin did not see it, is indexed when the replay brings it back."""
    orthanc, engine, ingestor, lines = setup(tmp_path)
    orthanc.store("x", slice_bytes(seed=6, modality="CT"))
    ingestor.process([("x", False)])
    assert engine.rejection("x")["fingerprint"] == orthanc.instances["x"]["uuid"]
    orthanc.store("x", slice_bytes(seed=6, label="now MR"))  # same ID, new file, no callback
    ingestor.process([("x", False)])
    (row,) = engine.indexed_rows("x")
    assert row["label"] == "now MR" and engine.rejection("x") is None
    assert any("x was overwritten since it was skipped" in line for line in lines)


def test_a_rejected_instance_replayed_with_the_same_file_is_left_alone(tmp_path):
    orthanc, engine, ingestor, _ = setup(tmp_path)
    orthanc.store("x", slice_bytes(seed=7, modality="CT"))
    ingestor.process([("x", False)])
    before = engine.rejection("x")
    orthanc.calls.clear()
    ingestor.process([("x", False)])
    assert orthanc.calls == ["/instances/x/attachments/dicom/info"]  # no file read
    assert engine.rejection("x") == before and engine.indexed_rows("x") == []


def _mixed_batch(orthanc) -> list[tuple[str, bool]]:
    """Six slices, a CT (skipped) and a cut file (failed) between them, one gone."""
    batch = []
    for seed in range(6):
        data = slice_bytes(seed=seed)
        orthanc.store(orthanc_id(data), data)
        batch.append((orthanc_id(data), False))
    orthanc.store("ct", slice_bytes(modality="CT", seed=9))
    orthanc.store("cut", slice_bytes(seed=8)[:-300])
    return batch[:2] + [("ct", False), ("gone", False)] + batch[2:4] + [("cut", False)] + batch[4:]


def test_lanes_give_every_instance_the_outcome_and_vector_one_lane_gives(tmp_path):
    results = {}
    for lanes in (1, 3):
        orthanc, engine, ingestor, _ = setup(tmp_path / str(lanes), index_threads=lanes)
        batch = _mixed_batch(orthanc)
        ingestor.process(batch)
        assert ingestor.lanes.count == lanes and ingestor.describe()["lanes"] == lanes
        results[lanes] = {position: ([(r["frame"], r["patient_id"],
                                       np.round(r["vector"], 6).tolist())
                                      for r in engine.indexed_rows(instance)],
                                     (engine.rejection(instance) or {}).get("kind"))
                          for position, (instance, _) in enumerate(batch)}
    assert results[1] == results[3]
    assert results[3][2][1] == "skipped" and results[3][6][1] == "failed"  # the CT, the cut file
    assert results[3][3] == ([], None)  # gone
    assert sum(1 for rows, _ in results[3].values() if rows) == 6


def test_large_frames_are_decoded_by_one_lane_at_a_time(tmp_path, monkeypatch):
    from cbmir.service import worker

    def most_at_once(large_frame_pixels) -> int:
        monkeypatch.setattr(worker, "LARGE_FRAME_PIXELS", large_frame_pixels)
        active, most, lock = [0], [0], threading.Lock()
        real = worker.preprocess

        def slow_preprocess(frame, size):
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1
            return real(frame, size)

        monkeypatch.setattr(worker, "preprocess", slow_preprocess)
        orthanc, _, ingestor, _ = setup(tmp_path / str(large_frame_pixels), index_threads=2)
        batch = []
        for seed in range(4):
            data = slice_bytes(seed=seed)
            orthanc.store(orthanc_id(data), data)
            batch.append((orthanc_id(data), False))
        ingestor.process(batch)
        monkeypatch.setattr(worker, "preprocess", real)
        return most[0]

    assert most_at_once(10**9) == 2  # ordinary frames: both lanes at once
    assert most_at_once(16) == 1  # 32 x 32 frames counted as large: one lane at a time


def test_lanes_follow_where_the_model_session_really_runs(tmp_path):
    from support.fake_embedder import FakeEmbedder

    _, _, ingestor, _ = setup(tmp_path, index_threads=3, device="cuda")
    assert ingestor.lanes.count == 3  # not decided by the configuration alone
    on_gpu = FakeEmbedder()
    on_gpu.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    ingestor._fit_lanes(on_gpu)
    assert ingestor.lanes.count == 1
    fell_back = FakeEmbedder()
    fell_back.providers = ["CPUExecutionProvider"]  # CUDA asked for, not available
    ingestor._fit_lanes(fell_back)
    assert ingestor.lanes.count == 3
    ingestor.join()
