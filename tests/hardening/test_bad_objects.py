"""Unusual and broken objects stored in Orthanc: each is indexed, or skipped / failed with a
reason (a 422 naming it, one log line); Orthanc stays up and keeps every stored instance."""
from __future__ import annotations

import pytest
import requests

from hardening_checks import assert_alive, assert_json_error
from support.dicom_factory import DICOM_MR
from hardening_objects import (encapsulated_pdf, huge_mr, multi_frame_mr, rgb_mr, small_mr,
                     structured_report, truncated)

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
def stored(orthanc):
    """name -> Orthanc instance ID (None when Orthanc itself refused the file)."""
    answers = {}
    for name, data in _objects().items():
        response = orthanc.post("/instances", data=data, headers={"Content-Type": "application/dicom"},
                                timeout=120)
        if response.status_code == 200:
            answers[name] = response.json()["ID"]
        else:  # Orthanc refused it: a clear 4xx, nothing stored, nothing to lose
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
            answers[name] = None
    orthanc.wait_idle(180)
    return answers


def _known(stored, name):
    if name not in stored:
        pytest.skip(f"needs ../shared/data/dicom-brain-mr for {name}")
    return stored[name]


@pytest.mark.parametrize("name", INDEXED)
def test_image_objects_are_indexed(orthanc, stored, name):
    instance = _known(stored, name)
    assert instance is not None, f"Orthanc refused {name}"
    response = orthanc.get(f"/cbmir/similar/{instance}", params={"exclude_same_patient": "false"})
    assert response.status_code == 200, response.text
    assert response.json()["query"]["instance"] == instance


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
def test_truncated_files_are_refused_or_recorded_as_failed(orthanc, stored, name):
    instance = _known(stored, name)
    if instance is None:
        return  # refused by Orthanc with a 4xx (checked in the fixture)
    assert orthanc.get(f"/instances/{instance}").status_code == 200, "the stored object was lost"
    response = orthanc.get(f"/cbmir/similar/{instance}")
    if response.status_code == 200:
        return  # enough pixels survived to decode: indexed
    body = assert_json_error(response, 422)
    assert body["kind"] in ("failed", "skipped")
    assert f"CBMIR: {body['kind']} {instance}" in orthanc.log_path.read_text(errors="replace")


def test_status_counts_every_rejected_object(orthanc, stored):
    status = orthanc.status()
    rejected = [stored[n] for n in SKIPPED + BROKEN if stored.get(n)]
    assert status["skipped"] + status["failed"] >= len(rejected)
    assert status["pending"] == 0
    assert_alive(orthanc)


def test_nothing_stored_is_lost(orthanc, stored):
    for name, instance in stored.items():
        if instance is not None:
            assert orthanc.get(f"/instances/{instance}").status_code == 200, name


def test_re_sending_a_rejected_object_is_not_retried_or_duplicated(orthanc, stored):
    before = orthanc.status()
    orthanc.post("/instances", data=structured_report("HARD-SR-2"),
                 headers={"Content-Type": "application/dicom"}).raise_for_status()
    orthanc.wait_idle()
    after = orthanc.status()
    assert after["skipped"] == before["skipped"] + 1 and after["failed"] == before["failed"]


def test_a_storescu_of_bad_objects_leaves_orthanc_up(orthanc, tmp_path):
    paths = []
    for number, data in enumerate([encapsulated_pdf("MR"), rgb_mr(64), multi_frame_mr(2)]):
        paths.append(tmp_path / f"{number}.dcm")
        paths[-1].write_bytes(data)
    result = orthanc.storescu(paths)
    assert result.returncode == 0, result.stderr
    orthanc.wait_idle()
    assert_alive(orthanc)


def test_a_request_aborted_mid_upload_leaves_orthanc_up(orthanc):
    data = small_mr("HARD-ABORT")
    try:
        requests.post(orthanc.url + "/instances", auth=orthanc.auth, timeout=5,
                      data=data[:100], headers={"Content-Length": str(len(data))})
    except requests.RequestException:
        pass
    assert_alive(orthanc)
