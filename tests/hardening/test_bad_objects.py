"""Unusual and broken objects stored in Orthanc: each is indexed, or skipped / failed with a
reason (a 422 naming it, one log line); Orthanc stays up and keeps every stored instance."""
from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from hardening_checks import assert_alive, assert_json_error, stored_vectors
from hardening_objects import (
    encapsulated_pdf,
    huge_mr,
    multi_frame_mr,
    rgb_mr,
    small_mr,
    structured_report,
    truncated,
)

from support.dicom_factory import DICOM_MR

pytestmark = pytest.mark.orthanc
SHARED = {"jpeg2000": "dcm_qa_ts/9.dcm", "jpeg-ls": "dcm_qa_ts/7.dcm", "rle": "dcm_qa_ts/4.dcm",
          "big-endian": "dcm_qa_ts/3.dcm", "jpeg-lossless": "dcm_qa_ts/5.dcm",
          "emri-jpeg2000": "pydicom-data-emri/emri_small_jpeg_2k_lossless.dcm",
          "emri-jpeg-ls": "pydicom-data-emri/emri_small_jpeg_ls_lossless.dcm",
          "emri-rle": "pydicom-data-emri/emri_small_RLE.dcm",
          "emri-big-endian": "pydicom-data-emri/emri_small_big_endian.dcm"}
TRUNCATED_SHARED = "malformed/emri_small_jpeg_2k_lossless_too_short.dcm"

INDEXED = ["rgb", "multi-frame", "4096x4096", *SHARED]
SKIPPED = ["structured-report", "pdf-doc", "pdf-mr"]
BROKEN = ["truncated-shared", "truncated-made"]


def _objects() -> dict[str, bytes]:
    made = {"rgb": rgb_mr(), "multi-frame": multi_frame_mr(3), "4096x4096": huge_mr(),
            "structured-report": structured_report("HARD-SR"),
            "pdf-doc": encapsulated_pdf("DOC"), "pdf-mr": encapsulated_pdf("MR"),
            "truncated-made": truncated(small_mr("HARD-TRUNC", seed=9))}
    if DICOM_MR.is_dir():
        made.update({name: (DICOM_MR / path).read_bytes() for name, path in SHARED.items()})
        made["truncated-shared"] = (DICOM_MR / TRUNCATED_SHARED).read_bytes()
    return made


@pytest.fixture(scope="module")
def objects() -> dict[str, bytes]:
    return _objects()


@pytest.fixture(scope="module")
def stored(orthanc, objects):
    """name -> Orthanc instance ID (None when Orthanc itself refused the file)."""
    answers = {}
    for name, data in objects.items():
        response = orthanc.post("/instances", data=data, headers={"Content-Type": "application/dicom"},
                                timeout=120)
        if name in BROKEN:  # Orthanc refuses a truncated file itself: nothing stored to lose
            assert response.status_code == 400, (name, response.status_code, response.text)
            assert "invalid DICOM file" in response.json()["Details"]
            answers[name] = None
        else:
            assert response.status_code == 200, (name, response.status_code, response.text)
            answers[name] = response.json()["ID"]
    orthanc.wait_idle(180)
    return answers


def _known(stored, name):
    if name not in stored:
        pytest.skip(f"needs ../shared/data/dicom-brain-mr for {name}")
    return stored[name]


@pytest.mark.parametrize("name", INDEXED)
def test_image_objects_are_indexed_with_the_vectors_of_their_pixels(orthanc, stored, objects,
                                                                    model_path, name):
    """Not only "200": the stored vectors are the model's vectors of the pixels pydicom decodes
    from the same file (the plugin decodes with Orthanc), frame by frame."""
    from cbmir.core.decode import decode_dicom_bytes
    from cbmir.core.embed import Embedder

    instance = _known(stored, name)
    assert instance is not None, f"Orthanc refused {name}"
    response = orthanc.get(f"/cbmir/similar/{instance}", params={"exclude_same_patient": "false"})
    assert response.status_code == 200, response.text
    assert response.json()["query"]["instance"] == instance
    frames = decode_dicom_bytes(objects[name])
    expected = Embedder(model_path, threads=1).embed_images(frames)
    got = stored_vectors(orthanc, instance)
    assert got is not None and got.shape == expected.shape
    cosines = np.sum(got * expected, axis=1)
    assert cosines.min() >= 0.9999, f"{name}: cosines {cosines} to the vectors of its pixels"


def test_a_multi_frame_object_is_indexed_per_frame(orthanc, stored):
    instance = stored["multi-frame"]
    for frame in range(3):
        answer = orthanc.get(f"/cbmir/similar/{instance}", params={"frame": frame})
        assert answer.status_code == 200, answer.text
        assert answer.json()["query"]["frame"] == frame
    assert_json_error(orthanc.get(f"/cbmir/similar/{instance}", params={"frame": 3}), 400)


@pytest.mark.parametrize("name", SKIPPED)
def test_objects_without_pixels_are_skipped_with_one_log_line(orthanc, stored, name):
    instance = stored[name]
    assert instance is not None, f"Orthanc refused {name}"
    body = assert_json_error(orthanc.get(f"/cbmir/similar/{instance}"), 422)
    assert body["kind"] == "skipped" and body["instance"] == instance
    assert orthanc.get(f"/instances/{instance}").status_code == 200, "the stored object was lost"
    log = orthanc.log_path.read_text(errors="replace")
    assert log.count(f"CBMIR: skipped {instance}") == 1


@pytest.mark.parametrize("name", BROKEN)
def test_truncated_files_are_refused_by_orthanc_and_nothing_is_left(orthanc, stored, objects, name):
    import pydicom

    assert _known(stored, name) is None  # the fixture saw Orthanc's 400
    sop = pydicom.dcmread(io.BytesIO(objects[name]), stop_before_pixels=True,
                          force=True).SOPInstanceUID
    matches = {m["ID"] for m in orthanc.post("/tools/lookup", data=sop).json()}
    # nothing half-stored: at most the complete file with the same UID (the shared truncated
    # file is a cut copy of the emri images)
    assert matches <= {i for i in stored.values() if i}
    if not matches:
        assert_json_error(orthanc.get(f"/cbmir/similar/{sop}"), 404)


def test_status_counts_every_rejected_object(orthanc, stored):
    status = orthanc.status()
    assert (status["skipped"], status["failed"], status["pending"]) == (len(SKIPPED), 0, 0)
    indexed = {stored[n] for n in INDEXED if stored.get(n)}  # the emri files share one instance
    assert status["indexed"] == len(indexed)
    assert_alive(orthanc)


def test_nothing_stored_is_lost(orthanc, stored):
    for name, instance in stored.items():
        if instance is not None:
            assert orthanc.get(f"/instances/{instance}").status_code == 200, name
    assert set(orthanc.get("/instances").json()) == {i for i in stored.values() if i}


def test_re_sending_a_rejected_object_is_not_retried_or_duplicated(orthanc, stored, objects):
    before = orthanc.status()
    instance = stored["structured-report"]
    again = orthanc.post("/instances", data=objects["structured-report"],
                         headers={"Content-Type": "application/dicom"})
    assert again.status_code == 200 and again.json()["ID"] == instance
    orthanc.wait_idle()
    after = orthanc.status()
    assert (after["skipped"], after["failed"], after["indexed"]) == \
        (before["skipped"], before["failed"], before["indexed"])
    log = orthanc.log_path.read_text(errors="replace")
    assert log.count(f"CBMIR: skipped {instance}") == 1


def test_a_storescu_of_bad_objects_stores_all_and_indexes_the_images(orthanc, tmp_path):
    import pydicom

    made = {"pdf": encapsulated_pdf("MR"), "rgb": rgb_mr(64), "multi-frame": multi_frame_mr(2)}
    paths = []
    for name, data in made.items():
        paths.append(tmp_path / f"{name}.dcm")
        paths[-1].write_bytes(data)
    result = orthanc.storescu(paths)
    assert result.returncode == 0, result.stderr
    orthanc.wait_idle()
    assert_alive(orthanc)
    ids = {}
    for name, path in zip(made, paths):
        sop = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        (match,) = orthanc.post("/tools/lookup", data=sop).json()
        ids[name] = match["ID"]
    assert assert_json_error(orthanc.get(f"/cbmir/similar/{ids['pdf']}"), 422)["kind"] == "skipped"
    assert orthanc.get(f"/cbmir/similar/{ids['rgb']}").status_code == 200
    assert stored_vectors(orthanc, ids["multi-frame"]).shape[0] == 2


def test_a_request_aborted_mid_upload_leaves_orthanc_up(orthanc):
    data = small_mr("HARD-ABORT")
    try:
        requests.post(orthanc.url + "/instances", auth=orthanc.auth, timeout=5,
                      data=data[:100], headers={"Content-Length": str(len(data))})
    except requests.RequestException:
        pass
    assert_alive(orthanc)
