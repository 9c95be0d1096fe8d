"""Every transfer syntax of ../shared/data/dicom-brain-mr is indexed (multi-frame per frame);
a truncated file, an SR and a non-MR image are recorded, never crash Orthanc."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import generate_uid

from support.dicom_factory import DICOM_MR, mr_image, structured_report

pytestmark = [pytest.mark.orthanc,
              pytest.mark.skipif(not DICOM_MR.is_dir(), reason=f"DICOM test data absent ({DICOM_MR})")]

SYNTAX_FILES = sorted((DICOM_MR / "dcm_qa_ts").glob("*.dcm")) + \
    sorted((DICOM_MR / "pydicom-data-emri").glob("*.dcm"))


def with_new_sop_uid(path) -> bytes:
    """The emri_small files share one SOPInstanceUID (Orthanc would keep only the first):
    give each its own, keeping its transfer syntax and encoded pixels."""
    import io

    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stored(orthanc):
    answers = {}
    for path in SYNTAX_FILES:
        data = with_new_sop_uid(path) if path.name.startswith("emri_small_") else path.read_bytes()
        answers[path.name] = orthanc.upload(data)
        assert answers[path.name]["Status"] == "Success", (path.name, answers[path.name])
    orthanc.wait_idle()
    return answers


@pytest.mark.parametrize("path", SYNTAX_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_transfer_syntax_is_indexed(orthanc, stored, path):
    instance = stored[path.name]["ID"]
    response = orthanc.get(f"/cbmir/similar/{instance}", params={"exclude_same_patient": "false"})
    assert response.status_code == 200, response.text
    assert response.json()["results"], "a same-series neighbour must be found"


def test_multi_frame_objects_are_indexed_per_frame(orthanc, stored):
    instance = stored["emri_small.dcm"]["ID"]
    answer = orthanc.get(f"/cbmir/similar/{instance}",
                         params={"frame": 3, "group_by": "instance",
                                 "exclude_same_patient": "false"}).json()
    assert answer["query"]["frame"] == 3
    too_far = orthanc.get(f"/cbmir/similar/{instance}", params={"frame": 10})
    assert too_far.status_code == 400 and "frames 0..9" in too_far.json()["error"]


def test_the_same_pixels_in_other_syntaxes_are_the_nearest_neighbours(orthanc, stored):
    query = stored["1.dcm"]["ID"]
    results = orthanc.get(f"/cbmir/similar/{query}",
                          params={"group_by": "instance", "exclude_same_patient": "false",
                                  "k": 8}).json()["results"]
    lossless = [r for r in results if r["series_description"] == results[0]["series_description"]]
    assert results[0]["score"] > 0.99 and len(lossless) >= 6


def test_a_truncated_file_is_refused_or_recorded_as_failed_and_orthanc_survives(orthanc):
    data = (DICOM_MR / "malformed" / "emri_small_jpeg_2k_lossless_too_short.dcm").read_bytes()
    response = orthanc.post("/instances", data=data)
    if response.status_code == 200:
        instance = response.json()["ID"]
        orthanc.wait_idle()
        answer = orthanc.get(f"/cbmir/similar/{instance}")
        assert answer.status_code == 422, answer.text
        assert orthanc.status()["failed"] >= 1
    else:
        assert 400 <= response.status_code < 500
    assert orthanc.get("/system").status_code == 200


def test_a_structured_report_is_skipped_with_a_reason(orthanc):
    instance = orthanc.upload(structured_report())["ID"]
    orthanc.wait_idle()
    answer = orthanc.get(f"/cbmir/similar/{instance}")
    assert answer.status_code == 422
    assert answer.json()["kind"] == "skipped" and "SR" in answer.json()["error"]
    log = orthanc.log_text() if hasattr(orthanc, "log_text") else orthanc.log_tail(200000)
    assert log.count(f"skipped {instance}") == 1


def test_other_modalities_are_skipped(orthanc):
    data = mr_image(np.arange(64 * 64).reshape(64, 64), "CT-PATIENT", generate_uid(),
                    generate_uid(), modality="CT")
    instance = orthanc.upload(data)["ID"]
    orthanc.wait_idle()
    answer = orthanc.get(f"/cbmir/similar/{instance}")
    assert answer.status_code == 422 and "modality CT" in answer.json()["error"]


def test_pixels_orthanc_accepts_but_nobody_can_decode_are_recorded_as_failed(orthanc):
    import io

    import pydicom

    good = mr_image(np.arange(64 * 64).reshape(64, 64), "BROKEN-PIXELS", generate_uid(),
                    generate_uid())
    dataset = pydicom.dcmread(io.BytesIO(good))
    dataset.PixelData = dataset.PixelData[:100]  # 100 bytes for 64x64x2
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    instance = orthanc.upload(buffer.getvalue())["ID"]
    orthanc.wait_idle()
    answer = orthanc.get(f"/cbmir/similar/{instance}")
    assert answer.status_code == 422 and answer.json()["kind"] == "failed"
    status = orthanc.status()
    assert status["failed"] >= 1
    assert any(f["instance"] == instance for f in status["recent_failures"])
    assert orthanc.get("/system").status_code == 200


def test_every_syntax_of_the_same_frames_gives_the_same_vectors(orthanc, stored):
    query = stored["emri_small.dcm"]["ID"]
    twins = {stored[name]["ID"] for name in stored if name.startswith("emri_small_")}
    results = orthanc.get(f"/cbmir/similar/{query}", params={
        "frame": 3, "group_by": "instance", "exclude_same_patient": "false", "k": 20}).json()["results"]
    same_frame = [r for r in results if r["instance"] in twins and r["frame"] == 3]
    assert len(same_frame) == len(twins) == 4
    assert all(r["score"] > 0.9999 for r in same_frame)


def test_the_pydicom_fallback_decodes_what_orthanc_cannot_into_the_same_vectors(make_server):
    """Without the GDCM plugin Orthanc 1.10 cannot decode JPEG 2000: pydicom + pylibjpeg take
    over, and the frames must embed exactly like Orthanc's own decoding of the raw twin."""
    server = make_server("no-gdcm", overrides={"Plugins": [
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
        "/usr/share/orthanc/plugins/libOrthancPython.so"]})
    raw = server.upload(DICOM_MR / "pydicom-data-emri" / "emri_small.dcm")["ID"]
    j2k = server.upload(with_new_sop_uid(DICOM_MR / "pydicom-data-emri" /
                                         "emri_small_jpeg_2k_lossless.dcm"))["ID"]
    status = server.wait_idle()
    assert status["ingest"]["decoded_by"] == {"orthanc": 1, "pydicom": 1}
    results = server.get(f"/cbmir/similar/{raw}", params={
        "frame": 5, "group_by": "instance", "exclude_same_patient": "false"}).json()["results"]
    assert results[0]["instance"] == j2k and results[0]["frame"] == 5
    assert results[0]["score"] > 0.9999
