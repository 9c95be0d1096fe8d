"""POST /cbmir/query with pictures and DICOM, and the JSON errors of every route."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from support.dicom_factory import DICOM_MR

pytestmark = pytest.mark.orthanc
CONTRACT = {"instance", "sop_instance_uid", "study_instance_uid", "series_instance_uid",
            "patient_id", "study_date", "series_description", "label", "score", "thumbnail"}


@pytest.fixture(scope="module")
def some_indexed(orthanc):
    """A few indexed images so that queries have something to find."""
    rng = np.random.default_rng(0)
    from pydicom.uid import generate_uid

    from support.dicom_factory import mr_image
    ids = []
    for patient in range(3):
        study, series = generate_uid(), generate_uid()
        for _ in range(2):
            pixels = (rng.random((96, 96)) * 1000).astype(np.uint16)
            ids.append(orthanc.upload(mr_image(pixels, f"API-{patient}", study, series,
                                               label="glioma"))["ID"])
    orthanc.wait_idle()
    return ids


def png_bytes(size=(80, 80), mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random(size) * 255).astype(np.uint8)).convert(
        mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_requests_without_credentials_get_401(orthanc, some_indexed):
    for method, path in (("GET", "/cbmir/status"), ("GET", f"/cbmir/similar/{some_indexed[0]}"),
                         ("POST", "/cbmir/query"), ("POST", "/cbmir/reindex")):
        assert requests.request(method, orthanc.url + path, timeout=10).status_code == 401
    wrong = requests.get(orthanc.url + "/cbmir/status", auth=("cbmir", "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_status_reports_counts_model_and_index(orthanc, some_indexed):
    status = orthanc.status()
    for key in ("indexed", "pending", "failed", "model", "index"):
        assert key in status
    assert status["model"]["available"] and status["index"]["size"] >= len(some_indexed)
    assert status["sdk_missing"] == [], "the real orthanc module lacks names the plugin uses"


def test_a_png_upload_finds_similar_cases(orthanc, some_indexed):
    response = orthanc.post("/cbmir/query", data=png_bytes(),
                            headers={"Content-Type": "image/png", "X-CBMIR-K": "3",
                                     "X-CBMIR-Group-By": "instance"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3 and all(CONTRACT <= set(r) for r in results)  # >= 6 indexed
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_a_colour_jpeg_in_a_json_body_with_parameters_is_accepted(orthanc, some_indexed):
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)).save(
        buffer, format="JPEG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "k": 2, "label": "glioma",
            "exclude_same_patient": False}
    response = orthanc.post("/cbmir/query", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2 and all(r["label"] == "glioma" for r in results)


def test_a_dicom_upload_matching_a_stored_image_finds_it_first(orthanc, some_indexed):
    data = orthanc.get(f"/instances/{some_indexed[0]}/file").content
    response = orthanc.post("/cbmir/query", data=data,
                            headers={"Content-Type": "application/dicom",
                                     "X-CBMIR-Group-By": "instance",
                                     "X-CBMIR-Exclude-Same-Patient": "false"})
    assert response.status_code == 200, response.text
    best = response.json()["results"][0]
    assert best["instance"] == some_indexed[0] and best["score"] > 0.999
    # by default the uploaded DICOM's own patient is excluded, like GET /cbmir/similar
    default = orthanc.post("/cbmir/query", data=data,
                           headers={"Content-Type": "application/dicom"}).json()
    assert default["query"]["patient_id"] == "API-0"
    assert default["results"] and all(r["patient_id"] != "API-0" for r in default["results"])


def test_a_picture_upload_excludes_the_patient_named_in_a_header(orthanc, some_indexed):
    answer = orthanc.post("/cbmir/query", data=png_bytes(),
                          headers={"Content-Type": "image/png", "X-CBMIR-Patient-Id": "API-1",
                                   "X-CBMIR-K": "10"}).json()
    assert answer["results"] and all(r["patient_id"] != "API-1" for r in answer["results"])


def error(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == status and body["error"]
    return body


@pytest.mark.parametrize("args", [{"k": "x"}, {"k": "0"}, {"group_by": "series"},
                                  {"exclude_same_patient": "perhaps"}])
def test_bad_arguments_are_400(orthanc, some_indexed, args):
    error(orthanc.get(f"/cbmir/similar/{some_indexed[0]}", params=args), 400)


def test_unknown_images_are_404_and_bad_identifiers_400(orthanc, some_indexed):
    error(orthanc.get("/cbmir/similar/00000000-00000000-00000000-00000000-00000000"), 404)
    error(orthanc.get("/cbmir/similar/1.2.3.4.5.6.7.8.9"), 404)
    error(orthanc.get("/cbmir/similar/not-an-id!"), 400)


def test_wrong_methods_are_refused(orthanc, some_indexed):
    assert orthanc.post("/cbmir/status").status_code == 405
    assert orthanc.get("/cbmir/query").status_code == 405


def test_bad_uploads_are_413_415_422(orthanc, some_indexed):
    error(orthanc.post("/cbmir/query", data=b"x" * (5 * 1024 * 1024),
                       headers={"Content-Type": "image/png"}), 413)
    error(orthanc.post("/cbmir/query", data=b"hello", headers={"Content-Type": "text/plain"}), 415)
    error(orthanc.post("/cbmir/query", data=b"\x00" * 300,
                       headers={"Content-Type": "application/octet-stream"}), 415)
    error(orthanc.post("/cbmir/query", data=b"\x89PNG broken",
                       headers={"Content-Type": "image/png"}), 422)
    error(orthanc.post("/cbmir/query", data=json.dumps({"image": "not base64!"}),
                       headers={"Content-Type": "application/json"}), 400)
    error(orthanc.post("/cbmir/query", data=b"", headers={"Content-Type": "image/png"}), 400)


def test_a_dicom_without_pixels_is_422(orthanc, some_indexed):
    from support.dicom_factory import structured_report
    error(orthanc.post("/cbmir/query", data=structured_report(),
                       headers={"Content-Type": "application/dicom"}), 422)


@pytest.mark.skipif(not DICOM_MR.is_dir(), reason=f"DICOM test data absent ({DICOM_MR})")
def test_a_truncated_dicom_upload_is_422(orthanc, some_indexed):
    data = (DICOM_MR / "malformed" / "emri_small_jpeg_2k_lossless_too_short.dcm").read_bytes()
    error(orthanc.post("/cbmir/query", data=data, headers={"Content-Type": "application/dicom"}), 422)
