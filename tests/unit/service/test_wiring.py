"""cbmir.service.wiring on the fake orthanc module: what `register` hooks up, the life cycle it
drives through the change callback, and the 503s before and without an engine. (The same with a
real Orthanc: tests/plugin.)"""
from __future__ import annotations

import pytest

from cbmir.service import wiring
from cbmir.service.config import ConfigError
from support.fake_orthanc import FakeOrthanc

ROUTES = {"/cbmir/similar/([^/]+)", "/cbmir/query", "/cbmir/status", "/cbmir/reindex",
          "/cbmir/verify", "/cbmir/thumbnail/([^/]+)", "/cbmir/reconcile", "/cbmir/openapi.json"}


@pytest.fixture()
def plugin(tmp_path):
    orthanc = FakeOrthanc({"CBMIR": {"IndexDirectory": str(tmp_path / "index"),
                                     "ModelPath": str(tmp_path / "absent.onnx"),
                                     "ViewerDirectory": str(tmp_path / "no-viewer"),
                                     "CatchUpSeconds": 0.1}})
    state = wiring.register(orthanc)
    yield orthanc, state
    if state.get("engine") is not None:
        orthanc.change("ORTHANC_STOPPED", "NONE")


def test_register_hooks_up_every_route_and_the_change_callback(plugin):
    orthanc, _ = plugin
    assert ROUTES <= set(orthanc.routes) and orthanc.change_callback is not None
    assert any("plugin registered" in line for _, line in orthanc.lines)


def test_the_engine_starts_with_orthanc_and_status_tells(plugin):
    orthanc, state = plugin
    status = orthanc.request("/cbmir/status").json()
    assert status["started"] is False and status["sdk_missing"] == []
    orthanc.change("ORTHANC_STARTED", "NONE")
    status = orthanc.request("/cbmir/status").json()
    assert status["started"] is True and status["model"]["available"] is False
    assert status["rest_leak_workaround"]["active"] is True  # the fake says orthanc-python 4.0
    orthanc.store("a")
    orthanc.change("NEW_INSTANCE", "INSTANCE", "a")
    assert state["engine"].queue.is_pending("a")  # no model: it waits in the queue
    assert orthanc.request("/cbmir/similar/a").status == 503  # no model
    assert orthanc.request("/cbmir/status", method="POST").status == 405
    orthanc.change("ORTHANC_STOPPED", "NONE")
    assert not state["ingestor"].thread.is_alive() and not state["follower"].thread.is_alive()


def test_an_unusable_index_folder_keeps_orthanc_up_and_answers_503(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    orthanc = FakeOrthanc({"CBMIR": {"IndexDirectory": str(blocker / "index"),
                                     "ViewerDirectory": str(tmp_path / "no-viewer")}})
    state = wiring.register(orthanc)
    answer = orthanc.request("/cbmir/status")
    assert answer.status == 503 and "index unavailable" in answer.json()["error"]
    state["recovery"].stop()


def test_a_bad_configuration_is_logged_with_its_key_and_stops_the_plugin():
    orthanc = FakeOrthanc({"CBMIR": {"BatchSise": 4}})
    with pytest.raises(ConfigError):
        wiring.register(orthanc)
    assert any(level == "E" and "CBMIR.BatchSise" in line for level, line in orthanc.lines)
