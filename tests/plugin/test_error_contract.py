"""The README's error contract, provoked for real in a real Orthanc: the 409 answers (known but
not indexed yet with `pending`, re-index to a new model in progress, re-index already running)
and the 503 answers of a model whose card the plugin refuses.

How the 409s are reached without racing the worker: `IndexDelaySeconds: 60` and continuous
uploads (tests/support/storing.py) keep the worker from computing anything, so an image stays
pending and a re-index stays running until the test stops storing.
"""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from orthanc_server import wait_for
from support.dicom_factory import mr_image
from support.storing import keep_storing

pytestmark = pytest.mark.orthanc
HOLD = {"IndexDelaySeconds": 60}


def error_body(response, status: int) -> dict:
    """A contract error: that status, JSON content type, {"error": text, "status": status}."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    return body


def images(count: int, patient: str, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    return [mr_image((rng.random((48, 48)) * 3000).astype(np.uint16), patient, study, series,
                     label="glioma", instance_number=i + 1) for i in range(count)]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(5).random((64, 64)) * 255).astype(np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def test_409_not_indexed_yet_with_pending_then_409_re_index_already_running(make_server,
                                                                             tiny_model):
    server = make_server("held", model=tiny_model, cbmir=HOLD)
    indexed = [server.upload(d)["ID"] for d in images(3, "HELD")]
    server.wait_idle()  # nothing arrives afterwards: indexed at once despite the long delay
    with keep_storing(server) as storing:
        waiting = storing.first_stored()
        body = error_body(server.get(f"/cbmir/similar/{waiting}"), 409)
        assert body["error"] == f"instance {waiting} is not indexed yet"
        assert body["instance"] == waiting
        assert isinstance(body["pending"], int) and body["pending"] >= 1
        assert server.get(f"/cbmir/similar/{indexed[0]}").status_code == 200

        started = server.post("/cbmir/reindex")
        assert started.status_code == 200, started.text
        assert started.json()["started"] is True and started.json()["reindex"]["running"] is True
        again = error_body(server.post("/cbmir/reindex"), 409)
        assert again["error"] == "a re-index is already running"
        assert again["reindex"]["running"] is True and again["reindex"]["generation"] == 2
        assert server.status()["reindex"]["running"] is True
    status = wait_for(lambda: (s := server.status())["index"]["generation"] == 2
                      and not s["reindex"]["running"] and s["pending"] == 0 and s)
    assert status["indexed"] == len(indexed) + len(storing.ids)
    assert server.get(f"/cbmir/similar/{waiting}").status_code == 200  # no longer pending


def test_409_re_index_to_a_new_model_in_progress(make_server, tiny_model, tmp_path):
    """A query upload while the index still holds the old model's vectors is embedded with
    that old model (tests/plugin/test_reindex_live.py); when the old model file is gone it
    would compare vectors of two models: 409 until the re-index to the new model is done."""
    import shutil

    from support.tiny_model import export_tiny_model

    old_model = tmp_path / "old" / tiny_model.name
    old_model.parent.mkdir()
    for source in (tiny_model, tiny_model.with_suffix(".json")):
        shutil.copy(source, old_model.parent / source.name)
    server = make_server("newmodel409", model=old_model, cbmir=HOLD)
    ids = [server.upload(d)["ID"] for d in images(40, "NEWMODEL")]
    server.wait_idle()
    server.stop()
    shutil.rmtree(old_model.parent)  # the model that made the answering generation is gone
    other = export_tiny_model(tmp_path / "other", seed=1, version="tiny-random-2")
    server.cbmir["ModelPath"] = str(other)
    # storing starts while Orthanc starts, so the re-index it begins finds storing busy
    with keep_storing(server, wait_up=True):
        server.start()
        wait_for(lambda: server.status()["reindex"].get("total"))  # the instances are listed
        body = error_body(server.post("/cbmir/query", data=png(),
                                      headers={"Content-Type": "image/png"}), 409)
        assert body["error"] == "re-index to the new model in progress; retry when done"
        assert body["reindex"]["running"] is True and body["reindex"]["generation"] == 2
        assert body["reindex"]["done"] < body["reindex"]["total"]
        assert server.status()["model"]["version"] == "tiny-random-2"
    wait_for(lambda: (s := server.status())["index"]["generation"] == 2
             and not s["reindex"]["running"])
    answer = server.post("/cbmir/query", data=png(), headers={"Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text


def _bad_card(card: dict, kind: str) -> str:
    if kind == "other-preprocessing":
        return json.dumps({**card, "preprocess_version": 2})
    if kind == "no-embedding-dim":
        return json.dumps({k: v for k, v in card.items() if k != "embedding_dim"})
    return json.dumps(card)[:-5]  # "not-json": a half-written file


@pytest.mark.parametrize("kind,reason", [
    ("other-preprocessing", "was made for preprocessing v2, this code implements v1"),
    ("no-embedding-dim", "lacks 'embedding_dim'"),
    ("not-json", "is not valid JSON"),
])
def test_503_when_the_model_card_is_refused(make_server, tiny_model, tmp_path, kind, reason):
    model = tmp_path / "refused" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(tiny_model, model)
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(_bad_card(card, kind))
    server = make_server(f"card-{kind}", model=model)
    status = server.status()
    assert status["model"]["available"] is False and reason in status["model"]["error"]
    instance = server.upload(images(1, "CARD")[0])["ID"]
    answers = [server.get(f"/cbmir/similar/{instance}"),
               server.post("/cbmir/query", data=png(), headers={"Content-Type": "image/png"}),
               server.post("/cbmir/reindex")]
    for response in answers:
        body = error_body(response, 503)
        assert body["error"].startswith("model unavailable: ") and reason in body["error"]
        assert body["model_path"] == str(model)
    assert server.status()["pending"] == 1  # kept, not lost: indexed once a good model appears
    assert "CBMIR: model unavailable, queries answer 503" in server.log_tail(20000)
