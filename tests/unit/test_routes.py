"""Route plumbing with a fake RestOutput, and Orthanc image buffers -> numpy, without Orthanc."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from cbmir import routes
from cbmir.ingest import image_to_array
from cbmir.search import ApiError


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


class FakeImage:
    def __init__(self, array, fmt, pitch_pad=3):
        self.array, self.fmt, self.pad = array, fmt, pitch_pad

    def GetImagePixelFormat(self): return self.fmt  # noqa: E704,N802
    def GetImageWidth(self): return self.array.shape[1]  # noqa: E704,N802
    def GetImageHeight(self): return self.array.shape[0]  # noqa: E704,N802
    def GetImagePitch(self): return self.array[0].nbytes + self.pad  # noqa: E704,N802

    def GetImageBuffer(self):  # noqa: N802
        rows = [row.tobytes() + b"\xff" * self.pad for row in self.array]
        return b"".join(rows)


FAKE_ORTHANC = SimpleNamespace(PixelFormat=SimpleNamespace(
    GRAYSCALE8=1, GRAYSCALE16=2, SIGNED_GRAYSCALE16=3, RGB24=4, RGBA32=5, FLOAT32=6))


@pytest.mark.parametrize("array, fmt", [
    (np.arange(12, dtype=np.uint8).reshape(3, 4), 1),
    (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000, 2),
    (np.arange(-6, 6, dtype=np.int16).reshape(3, 4), 3),
    (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), 4),
])
def test_pitch_padded_orthanc_buffers_become_the_right_arrays(array, fmt):
    assert np.array_equal(image_to_array(FAKE_ORTHANC, FakeImage(array, fmt)), array)


def test_rgba_drops_alpha():
    rgba = np.arange(48, dtype=np.uint8).reshape(3, 4, 4)
    assert np.array_equal(image_to_array(FAKE_ORTHANC, FakeImage(rgba, 5)), rgba[..., :3])


def test_the_fakes_offer_every_sdk_name_the_plugin_uses():
    """The real module is checked at start-up (status 'sdk_missing', see test_api_errors)."""
    from cbmir.plugin import SDK_NAMES

    for name in SDK_NAMES["Image"]:
        assert hasattr(FakeImage, name), name
    for name in SDK_NAMES["RestOutput"]:
        assert hasattr(FakeOutput, name), name
