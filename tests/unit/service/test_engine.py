"""cbmir.service.engine without Orthanc: its status and life cycle, what the routes may ask it,
re-index and deletion; and that the routes ask, never reach into its store, queue or target."""
from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np

from cbmir.service import engine as engine_module
from cbmir.vectors.search import Params
from cbmir.vectors.store import Record
from support.fake_embedder import FakeEmbedder, fake_engine

SERVICE = Path(engine_module.__file__).parent


def add(engine, instance: str, vector, patient="P", study="S", version="fake-1", generation=None):
    generation = engine.answering_generation if generation is None else generation
    record = Record(instance=instance, frame=0, vector=np.asarray(vector, np.float32),
                    patient_id=patient, study_uid=study, orthanc_study=study, orthanc_series=study,
                    orthanc_patient=patient, modality="MR", model_version=version)
    ids = engine.store.add([record], generation)
    engine.added(engine.active, ids, np.stack([record.vector]))


def unit(*values):
    vector = np.asarray(values, np.float32)
    return vector / np.linalg.norm(vector)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_engine_counts_as_started_only_after_resume_work(tmp_path):
    engine = fake_engine(tmp_path)
    status = engine.status()
    assert status["started"] is False and status["model"]["available"] is True
    assert "sdk_missing" not in status  # the SDK is the gateway's business (wiring adds it)
    engine.resume_work(lambda: [])
    assert engine.started and engine.status()["started"] is True
    assert engine.reindex_status() == {"running": False}  # nothing to resume, same model


def test_counters_are_what_status_and_the_metrics_share(tmp_path):
    engine = fake_engine(tmp_path)
    add(engine, "a", unit(1, 0))
    engine.store.reject("b", "skipped", "modality CT")
    engine.enqueue("c")
    counters = engine.counters()
    assert (counters["indexed"], counters["frames"], counters["skipped"]) == (1, 1, 1)
    assert counters["pending"] == 1 and counters["queue_age_seconds"] >= 0
    assert counters["index"]["size"] == 1 and counters["model_available"] is True
    status = engine.status()
    assert (status["indexed"], status["pending"], status["skipped"], status["index"]) == (
        1, 1, 1, counters["index"])


def test_what_the_routes_ask(tmp_path):
    engine = fake_engine(tmp_path)
    add(engine, "a", unit(1, 0, 0, 0, 0, 0, 0, 0), patient="P1", study="S1")
    add(engine, "b", unit(1, 0.1, 0, 0, 0, 0, 0, 0), patient="P2", study="S2")
    add(engine, "c", unit(0, 0, 0, 0, 0, 0, 0, 1), patient="P3", study="S3")
    assert [r["instance"] for r in engine.indexed_rows("a")] == ["a"] and engine.indexed_rows("x") == []
    assert engine.indexed_instances(engine.answering_generation) == ["a", "b", "c"]
    assert engine.model_available and engine.rejection("a") is None
    results = engine.search(unit(1, 0, 0, 0, 0, 0, 0, 0), Params(k=2),
                            {"instance": "a", "patient_id": "P1"})
    assert [r["instance"] for r in results] == ["b", "c"]  # itself and its patient left out
    engine.store.reject("d", "skipped", "modality CT not in CBMIR.Modalities")
    assert engine.rejection("d")["kind"] == "skipped"
    assert engine.request_indexing("e") == 1 and engine.request_indexing("e") == 1  # queued once
    engine.embedder = None
    assert not engine.model_available


def test_reindex_status_is_a_copy_and_a_second_reindex_is_refused(tmp_path):
    engine = fake_engine(tmp_path)
    assert engine.start_reindex(lambda: ["a", "b"])
    status = engine.reindex_status()
    status["running"] = "changed by a caller"
    assert engine.reindex_status()["running"] is True and engine.reindex_status()["generation"] == 2
    assert not engine.start_reindex(lambda: [])
    engine.stop()  # the re-index waits for its instances; the stopped queue ends it


def test_an_interrupted_reindex_is_resumed_at_start(tmp_path):
    first = fake_engine(tmp_path)
    first.store.set_state("reindex_generation", 2)  # a re-index into generation 2 was running
    first.store.close()
    engine = fake_engine(tmp_path)
    engine.resume_work(lambda: [])
    wait_for(lambda: engine.answering_generation == 2)
    wait_for(lambda: "old_generation" not in engine.reindex_status())
    assert engine.reindex_status()["generation"] == 2 and engine.started


def test_a_new_model_starts_a_reindex_at_start(tmp_path):
    lines = []
    engine = fake_engine(tmp_path, lines, embedder=FakeEmbedder(version="fake-2"))
    add(engine, "a", unit(1, 0, 0, 0, 0, 0, 0, 0), version="fake-1")
    engine.resume_work(lambda: ["a"])
    assert engine.reindex_status()["running"] is True
    assert any("model changed" in line for line in lines)
    engine.stop()


def test_a_deleted_resource_leaves_the_store_and_the_index(tmp_path):
    engine = fake_engine(tmp_path)
    add(engine, "a", unit(1, 0, 0, 0, 0, 0, 0, 0), study="S1")
    add(engine, "b", unit(0, 1, 0, 0, 0, 0, 0, 0), study="S2")
    mark = engine.deletion_mark()
    assert engine.delete("study", "S1") == 1
    assert engine.indexed_rows("a") == [] and engine.status()["deletions"] == 1
    results = engine.search(unit(1, 0, 0, 0, 0, 0, 0, 0), Params(exclude_same_patient=False), {})
    assert [r["instance"] for r in results] == ["b"]
    rows = [Record(instance=i, frame=0, vector=np.zeros(0), orthanc_study=s)
            for i, s in (("a", "S1"), ("b", "S2"))]
    assert engine.deleted_since(mark, rows) == {"a"}


# -- the routes ask the engine; they do not reach into it ---------------------------------------
ROUTE_MODULES = ("routes.py", "verify.py", "thumbnails.py", "wiring.py", "openapi.py", "metrics.py",
                 "viewer_routes.py")
ENGINE_INSIDES = {"store", "queue", "active", "target", "reindex_progress", "sdk_missing"}
INGESTOR_INSIDES = {"processed", "seconds"}


def _reaches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else (
            owner.func.id if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) else "")
        if name in ("engine", "ready", "built") and (
                node.attr in ENGINE_INSIDES
                or (node.attr == "started" and isinstance(node.ctx, ast.Store))):
            found.append(f"{name}.{node.attr}")
        if name == "ingestor" and node.attr in INGESTOR_INSIDES:
            found.append(f"ingestor.{node.attr}")
    return found


def test_routes_wiring_and_metrics_do_not_reach_into_the_engine():
    for module in ROUTE_MODULES:
        assert _reaches(SERVICE / module) == [], module
