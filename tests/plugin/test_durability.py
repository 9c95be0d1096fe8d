"""Durability and lifecycle of the plugin in a real Orthanc: kill -9 during ingest, time
with the plugin off, deletions while off, clean and fast restarts, bad configuration,
missing model, re-index, the Annoy tier surviving a restart."""
from __future__ import annotations

import sqlite3
import subprocess
import time

import numpy as np
import pytest
from pydicom.uid import generate_uid

from orthanc_server import OrthancServer, wait_for
from support.dicom_factory import DICOM_MR, mr_image
from support.storing import keep_storing

pytestmark = pytest.mark.orthanc
STRUCTURAL = sorted((DICOM_MR / "example-dicom-structural").glob("*.dcm"))
needs_structural = pytest.mark.skipif(not STRUCTURAL, reason=f"DICOM test data absent ({DICOM_MR})")


def synthetic_images(count: int, patient: str = "DUR") -> list[bytes]:
    rng = np.random.default_rng(7)
    study, series = generate_uid(), generate_uid()
    return [mr_image((rng.random((64, 64)) * 4000).astype(np.uint16), patient, study, series,
                     instance_number=i + 1) for i in range(count)]


def stored_rows(server: OrthancServer) -> list[tuple]:
    db = sqlite3.connect(server.home / "cbmir-index" / "cbmir.sqlite")
    try:
        return db.execute("SELECT instance, frame, generation FROM vectors").fetchall()
    finally:
        db.close()


@needs_structural
def test_kill_9_during_ingest_then_restart_indexes_every_image_exactly_once(make_server):
    server = make_server("kill9", cbmir={"BatchSize": 4})
    sender = subprocess.Popen(["storescu", "-aet", "TESTSCU", "-aec", server.aet, "127.0.0.1",
                               str(server.dicom_port), *map(str, STRUCTURAL[:150])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: server.status()["indexed"] >= 10, timeout=60, step=0.05)
        assert sender.poll() is None, "the kill must happen while images still arrive"
        server.kill()
    finally:
        sender.wait(60)
    server.start()
    status = server.wait_idle()
    instances = server.get("/instances").json()
    assert 10 <= len(instances) <= 150
    rows = stored_rows(server)
    assert {r[0] for r in rows} == set(instances), "an image stored in Orthanc is not indexed"
    # exactly once: as many store rows, index entries and indexed frames as Orthanc has
    # (single-frame) instances; the store's UNIQUE constraint alone would not show a row that
    # never reached the index, or an index entry left without its row
    assert len(rows) == status["index"]["size"] == status["indexed_frames"] == len(instances)
    assert status["indexed"] == len(instances) and status["failed"] == 0


def test_images_stored_or_deleted_while_the_plugin_was_off_are_caught_up(make_server):
    server = make_server("off")
    first = [server.upload(d)["ID"] for d in synthetic_images(3, "OFF-A")]
    server.wait_idle()
    server.stop()
    plugin_off = {"Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]}
    server.overrides = plugin_off
    server.start(wait_plugin=False)
    later = [server.upload(d)["ID"] for d in synthetic_images(4, "OFF-B")]
    assert server.delete(f"/instances/{first[0]}").status_code == 200
    assert server.get("/cbmir/status").status_code == 404  # really off
    server.stop()
    server.overrides = {}
    server.start()
    status = server.wait_idle()
    assert status["indexed"] == len(first) - 1 + len(later)
    assert {r[0] for r in stored_rows(server)} == set(first[1:] + later)
    assert server.get(f"/cbmir/similar/{first[0]}").status_code == 404


def test_orthanc_stops_cleanly_and_restarts_in_seconds(make_server):
    server = make_server("restart")
    server.upload(synthetic_images(1, "RESTART")[0])
    server.wait_idle()
    started = time.monotonic()
    assert server.stop(timeout=30) == 0
    assert time.monotonic() - started < 20
    assert "CBMIR: stopped" in server.log_tail(20000)
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started < 15
    assert server.status()["indexed"] == 1


def test_a_bad_configuration_stops_orthanc_with_the_key_path_in_the_log(make_server):
    server = make_server("badconfig", cbmir={"BatchSize": "eight"}, start=False)
    with pytest.raises(RuntimeError):
        server.start(timeout=30)
    assert "CBMIR.BatchSize" in server.log_tail(20000)


def test_a_missing_model_starts_orthanc_and_answers_503(make_server, tmp_path):
    server = make_server("nomodel", model=tmp_path / "absent.onnx")
    status = server.status()
    assert status["model"]["available"] is False and "absent.onnx" in status["model"]["error"]
    instance = server.upload(synthetic_images(1, "NOMODEL")[0])["ID"]
    response = server.get(f"/cbmir/similar/{instance}")
    assert response.status_code == 503 and "model unavailable" in response.json()["error"]
    assert server.post("/cbmir/query", data=b"x", headers={"Content-Type": "image/png"}
                       ).status_code == 503
    assert wait_for(lambda: server.status()["pending"] == 1, timeout=10)


def test_reindex_re_embeds_everything_while_the_old_index_answers(make_server):
    # Continuous uploads and a long IndexDelaySeconds hold the re-index back (it is backlog),
    # so the answer below is really given while it runs. The uploads are CT: never indexed
    # (Modalities MR), never a result, but they keep storing busy.
    server = make_server("reindex", cbmir={"BatchSize": 2, "IndexDelaySeconds": 60})
    ids = [server.upload(d)["ID"] for d in synthetic_images(12, "REIDX")]
    server.wait_idle()
    query = {"exclude_same_patient": "false", "group_by": "instance"}
    before = server.get(f"/cbmir/similar/{ids[0]}", params=query).json()
    assert [r["instance"] for r in before["results"]] and len(before["results"]) == 10
    with keep_storing(server, modality="CT"):
        answer = server.post("/cbmir/reindex")
        assert answer.status_code == 200 and answer.json()["started"]
        during = server.get(f"/cbmir/similar/{ids[0]}", params=query)
        status = server.status()
        assert status["reindex"]["running"] and status["reindex"]["done"] < len(ids)
        assert status["index"]["generation"] == 1
        assert during.status_code == 200, during.text
        assert during.json()["results"] == before["results"]  # the old index, unchanged
    status = wait_for(lambda: (s := server.status())["index"]["generation"] == 2
                      and not s["reindex"]["running"]
                      and "old_generation" not in s["reindex"] and s, timeout=60)
    assert status["indexed"] == 12 and status["index"]["size"] == 12
    after = server.get(f"/cbmir/similar/{ids[0]}", params=query).json()
    # same vectors again (up to float noise of other batch compositions: near-ties may swap)
    assert [r["score"] for r in after["results"]] == pytest.approx(
        [r["score"] for r in before["results"]], abs=1e-4)
    assert {r["instance"] for r in after["results"]} == {r["instance"] for r in before["results"]}
    assert {r[2] for r in stored_rows(server)} == {2} and len(stored_rows(server)) == 12


def test_the_annoy_tier_is_built_in_the_background_and_reloaded_after_a_restart(make_server):
    server = make_server("annoy", cbmir={"RebuildThreshold": 8})
    ids = [server.upload(d)["ID"] for d in synthetic_images(20, "ANNOY")]
    server.wait_idle()
    wait_for(lambda: server.status()["index"]["built"] >= 8, timeout=30)
    query = {"exclude_same_patient": "false", "group_by": "instance", "k": 5}
    before = server.get(f"/cbmir/similar/{ids[3]}", params=query).json()["results"]
    server.stop()
    server.start()
    index = server.status()["index"]
    assert index["built"] >= 8 and index["built"] + index["fresh"] == 20
    after = server.get(f"/cbmir/similar/{ids[3]}", params=query).json()["results"]
    assert [r["instance"] for r in after] == [r["instance"] for r in before]


def test_a_model_installed_while_orthanc_runs_is_picked_up(make_server, tmp_path, tiny_model):
    import shutil
    target = tmp_path / "later" / "model.onnx"
    server = make_server("latemodel", model=target)
    instance = server.upload(synthetic_images(1, "LATE")[0])["ID"]
    assert server.get(f"/cbmir/similar/{instance}").status_code == 503
    target.parent.mkdir()
    shutil.copy(tiny_model.with_suffix(".json"), target.with_suffix(".json"))
    shutil.copy(tiny_model, target)
    wait_for(lambda: server.status()["model"]["available"], timeout=20)
    server.wait_idle()
    assert server.get(f"/cbmir/similar/{instance}").status_code == 200


def test_a_changed_model_triggers_a_re_index_at_start(make_server, tmp_path, tiny_model):
    from support.tiny_model import export_tiny_model
    server = make_server("newmodel", model=tiny_model)
    ids = [server.upload(d)["ID"] for d in synthetic_images(5, "NEWMODEL")]
    server.wait_idle()
    server.stop()
    other = export_tiny_model(tmp_path / "other", seed=1, version="tiny-random-2")
    server.cbmir["ModelPath"] = str(other)
    server.start()
    status = wait_for(lambda: (s := server.status())["index"]["generation"] == 2
                      and not s["reindex"]["running"] and "old_generation" not in s["reindex"]
                      and s, timeout=60)
    assert status["indexed"] == 5 and status["model"]["version"] == "tiny-random-2"
    db = sqlite3.connect(server.home / "cbmir-index" / "cbmir.sqlite")
    versions = {v for (v,) in db.execute("SELECT DISTINCT model_version FROM vectors")}
    db.close()
    assert versions == {"tiny-random-2"}
    assert server.get(f"/cbmir/similar/{ids[0]}").status_code == 200


def test_deleting_a_series_or_a_patient_removes_their_vectors(make_server):
    server = make_server("levels")
    series_ids = [server.upload(d)["ParentSeries"] for d in synthetic_images(3, "LVL-A")]
    patient = [server.upload(d)["ParentPatient"] for d in synthetic_images(2, "LVL-B")][0]
    keep = server.upload(synthetic_images(1, "LVL-C")[0])["ID"]
    assert server.wait_idle()["indexed"] == 6
    assert server.delete(f"/series/{series_ids[0]}").status_code == 200
    assert server.delete(f"/patients/{patient}").status_code == 200
    status = wait_for(lambda: (s := server.status())["indexed"] == 1 and s, timeout=20)
    assert {r[0] for r in stored_rows(server)} == {keep} and status["index"]["size"] == 1


def test_a_re_index_killed_midway_resumes_after_restart(make_server):
    server = make_server("reindexkill", cbmir={"BatchSize": 1})
    ids = [server.upload(d)["ID"] for d in synthetic_images(60, "RKILL")]
    server.wait_idle()
    assert server.post("/cbmir/reindex").status_code == 200
    server.kill()
    server.start()
    status = wait_for(lambda: (s := server.status())["index"]["generation"] == 2
                      and not s["reindex"]["running"] and "old_generation" not in s["reindex"]
                      and s, timeout=60)
    assert status["indexed"] == len(ids)
    rows = stored_rows(server)
    assert len(rows) == status["index"]["size"] == len(ids) and {r[2] for r in rows} == {2}


def test_the_label_comes_from_the_configured_tag(make_server):
    server = make_server("labeltag", cbmir={"LabelTag": "SeriesDescription"})
    rng = np.random.default_rng(3)
    study, series = generate_uid(), generate_uid()
    ids = [server.upload(mr_image((rng.random((64, 64)) * 900).astype(np.uint16), f"LBL-{i}",
                                  study, series, label="ignored", series_description="FLAIR"))["ID"]
           for i in range(2)]
    server.wait_idle()
    answer = server.get(f"/cbmir/similar/{ids[0]}", params={"label": "flair"}).json()
    assert answer["query"]["label"] == "FLAIR"
    assert [r["instance"] for r in answer["results"]] == [ids[1]]


def test_the_modality_filter_returns_exactly_the_images_of_that_modality(make_server):
    server = make_server("modality", cbmir={"Modalities": ["MR", "CT"]})
    rng = np.random.default_rng(12)
    ids = {}
    for modality in ("MR", "CT"):
        study, series = generate_uid(), generate_uid()
        ids[modality] = [server.upload(mr_image((rng.random((64, 64)) * 900).astype(np.uint16),
                                                f"MOD-{modality}-{i}", study, series,
                                                modality=modality))["ID"] for i in range(3)]
    assert server.wait_idle()["indexed"] == 6
    query = {"group_by": "instance", "k": 10}
    for probe in (ids["MR"][0], ids["CT"][0]):
        for modality in ("MR", "CT"):
            results = server.get(f"/cbmir/similar/{probe}",
                                 params={**query, "modality": modality}).json()["results"]
            assert {r["instance"] for r in results} == set(ids[modality]) - {probe}
            assert {r["modality"] for r in results} == {modality}
        everything = server.get(f"/cbmir/similar/{probe}", params=query).json()["results"]
        assert {r["instance"] for r in everything} == set(ids["MR"] + ids["CT"]) - {probe}
