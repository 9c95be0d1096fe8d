"""Malformed requests to the CBMIR REST API: each gets a JSON 4xx that names the problem, and
Orthanc keeps answering."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hardening_checks import assert_alive, assert_json_error
from hardening_objects import encapsulated_pdf, multi_frame_mr, small_mr, structured_report, truncated

pytestmark = pytest.mark.orthanc


@pytest.fixture(scope="module")
def target(orthanc):
    """One indexed instance to aim the GET requests at."""
    instance = orthanc.upload(small_mr("HARD-TARGET", seed=1))["ID"]
    orthanc.upload(small_mr("HARD-OTHER", seed=2))
    orthanc.wait_idle()
    assert orthanc.get(f"/cbmir/similar/{instance}").status_code == 200
    return instance


@pytest.mark.parametrize("args", [
    {"k": "abc"}, {"k": "-1"}, {"k": "0"}, {"k": str(10 ** 9)}, {"k": "1.5"}, {"k": "1e3"},
    {"k": "9" * 400}, {"group_by": "x"}, {"group_by": "study;drop"},
    {"exclude_same_patient": "maybe"}, {"frame": "-1"}, {"frame": "abc"}, {"frame": "7"},
])
def test_malformed_arguments_are_400(orthanc, target, args, alive):
    body = assert_json_error(orthanc.get(f"/cbmir/similar/{target}", params=args), 400)
    assert body["status"] == 400


def test_unknown_arguments_are_ignored(orthanc, target, alive):
    """Deliberate: browsers and proxies add cache busters (`_=...`); unknown keys never fail."""
    plain = orthanc.get(f"/cbmir/similar/{target}").json()
    response = orthanc.get(f"/cbmir/similar/{target}", params={"_": "123", "bogus": "x"})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == plain["results"] and plain["results"]


def test_a_repeated_argument_takes_its_last_value(orthanc, target, alive):
    """Orthanc hands the plugin the last value of a repeated query argument."""
    body = assert_json_error(orthanc.get(f"/cbmir/similar/{target}?k=5&k=abc"), 400)
    assert body["error"] == "argument 'k' must be an integer, got 'abc'"
    answer = orthanc.get(f"/cbmir/similar/{target}?k=abc&k=1")
    assert answer.status_code == 200 and answer.json()["query"]["params"]["k"] == 1


def test_a_unicode_label_that_no_image_has_finds_nothing(orthanc, target, alive):
    response = orthanc.get(f"/cbmir/similar/{target}?label=%C3%A9%F0%9F%98%80")
    assert response.status_code == 200, response.text
    assert response.json()["results"] == []


@pytest.mark.parametrize("identifier,status", [
    ("not-an-id", 400), ("1.2.3.4.5.6.7.8.9.0" * 10, 400), ("'%20OR%201=1", 400),
    ("1.2.840.99999.1", 404), ("00000000-00000000-00000000-00000000-00000000", 404),
    ("%00", 404),  # Orthanc stops the path at the NUL: no route, its own JSON 404
])
def test_bad_or_unknown_identifiers(orthanc, identifier, status, alive):
    assert_json_error(orthanc.get(f"/cbmir/similar/{identifier}"), status)


def _post(orthanc, data, content_type="application/dicom", **headers):
    return orthanc.post("/cbmir/query", data=data,
                        headers={"Content-Type": content_type, **headers}, timeout=120)


def test_an_empty_upload_is_400(orthanc, target, alive):
    assert_json_error(_post(orthanc, b""), 400)


def test_an_oversized_upload_is_413(orthanc, target, alive):
    limit = 4 * 1024 * 1024  # TEST_CBMIR MaxUploadBytes in tests/orthanc_server.py
    assert_json_error(_post(orthanc, b"\0" * (limit + 1)), 413)


@pytest.mark.parametrize("data,content_type,status", [
    (b"garbage" * 100, "application/dicom", 422),
    (b"garbage" * 100, "image/png", 422),
    (b"hello", "text/plain", 415),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", 422),
    (b"{not json", "application/json", 400),
], ids=["garbage-dicom", "garbage-png", "text", "broken-png", "bad-json"])
def test_unreadable_uploads_are_4xx(orthanc, target, data, content_type, status, alive):
    assert_json_error(_post(orthanc, data, content_type), status)


@pytest.mark.xfail(reason="Orthanc 1.10 answers multipart/form-data POSTs itself (its Explorer "
                   "uploader) with an empty 200; the plugin's answer is discarded", strict=False)
def test_a_multipart_upload_gets_a_json_answer(orthanc, target, alive):
    response = orthanc.post("/cbmir/query", files={"file": ("q.dcm", small_mr("Q-MP"),
                                                            "application/dicom")})
    assert response.status_code == 200 and response.json()["results"] is not None
    body = b"--x\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n5\r\n--x--\r\n"
    assert_json_error(_post(orthanc, body, "multipart/form-data; boundary=x"), 400)


@pytest.mark.parametrize("make", [lambda: truncated(small_mr("Q-TRUNC")), structured_report,
                                  encapsulated_pdf], ids=["truncated", "sr", "pdf"])
def test_dicom_uploads_without_usable_pixels_are_422(orthanc, target, make, alive):
    assert_json_error(_post(orthanc, make()), 422)


def test_bad_parameters_in_headers_are_400(orthanc, target, alive):
    assert_json_error(_post(orthanc, small_mr("Q-HDR"), **{"X-CBMIR-K": "abc"}), 400)
    assert_json_error(_post(orthanc, multi_frame_mr(2), **{"X-CBMIR-Frame": "5"}), 400)


def test_a_huge_picture_is_answered(orthanc, target, alive):
    """A 3000x3000 PNG (under the upload limit) is resized, not a reason to fail."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((3000, 3000), np.uint8)).save(buffer, format="PNG")
    response = _post(orthanc, buffer.getvalue(), "image/png")
    assert response.status_code == 200, response.text
    # the two indexed images of this module's server, one study each
    assert len(response.json()["results"]) == 2


def test_wrong_methods_are_405(orthanc, target, alive):
    for method, path in (("delete", f"/cbmir/similar/{target}"), ("put", "/cbmir/status"),
                         ("get", "/cbmir/query"), ("get", "/cbmir/reindex")):
        response = orthanc.session.request(method.upper(), orthanc.url + path, timeout=10)
        assert response.status_code == 405, (method, path, response.status_code)


def test_orthanc_is_still_up_after_all_of_it(orthanc):
    assert_alive(orthanc)
