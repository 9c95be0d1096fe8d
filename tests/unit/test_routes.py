"""Route plumbing with the fake RestOutput (tests/support/fake_orthanc.py), without Orthanc."""
import json
from types import SimpleNamespace

import pytest

from cbmir.service import routes
from cbmir.vectors.search import ApiError
from support.fake_orthanc import FakeOutput


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
    engine = SimpleNamespace(model_available=False, model_error="model file x.onnx not found",
                             config=SimpleNamespace(model_path="x.onnx"))
    with pytest.raises(ApiError) as caught:
        routes.require_engine(engine)
    assert caught.value.status == 503 and "x.onnx" in caught.value.message
