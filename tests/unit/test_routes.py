"""Route plumbing with a fake RestOutput, without Orthanc."""
import json
from types import SimpleNamespace

import pytest

from cbmir.service import routes
from cbmir.vectors.search import ApiError


class FakeOutput:
    """The three RestOutput methods the routes use (same signatures as orthanc-python 4.0)."""

    def __init__(self):
        self.answers = []

    def AnswerBuffer(self, body, mime):  # noqa: N802 - SDK names
        self.answers.append((200, mime, body))

    def SendHttpStatus(self, status, body, length):  # noqa: N802
        assert length == len(body.encode())
        self.answers.append((status, self.headers.get("Content-Type"), body))

    def SetHttpHeader(self, name, value):  # noqa: N802
        self.headers = {**getattr(self, "headers", {}), name: value}

    def SendMethodNotAllowed(self, allowed):  # noqa: N802
        self.answers.append((405, None, allowed))


def run(handler, method="GET"):
    output = FakeOutput()
    routes.answer(output, {"method": method}, "GET", handler, log=lambda message: None)
    return output.answers[-1]


def test_a_result_is_answered_as_json():
    status, mime, body = run(lambda: {"a": 1})
    assert (status, mime, json.loads(body)) == (200, "application/json", {"a": 1})


def test_an_api_error_becomes_its_status_with_a_json_body():
    def fail():
        raise ApiError(409, "not indexed yet", pending=3)
    status, mime, body = run(fail)
    assert status == 409 and mime == "application/json"
    assert json.loads(body) == {"error": "not indexed yet", "status": 409, "pending": 3}


def test_an_unexpected_exception_is_a_json_500_not_a_crash():
    status, _, body = run(lambda: 1 / 0)
    assert status == 500 and "ZeroDivisionError" in json.loads(body)["error"]


def test_the_method_is_checked_first():
    assert run(lambda: pytest.fail("must not run"), method="POST")[0] == 405


def test_no_model_is_a_503():
    engine = SimpleNamespace(embedder=None, model_error="model file x.onnx not found",
                             config=SimpleNamespace(model_path="x.onnx"))
    with pytest.raises(ApiError) as caught:
        routes.require_engine(engine)
    assert caught.value.status == 503 and "x.onnx" in caught.value.message


def test_the_fakes_offer_every_sdk_name_the_plugin_uses():
    """The real module is checked at start-up (status 'sdk_missing', see test_api_errors)."""
    from cbmir.service.wiring import SDK_NAMES

    for name in SDK_NAMES["RestOutput"]:
        assert hasattr(FakeOutput, name), name
