"""Every transfer syntax of ../shared/data/dicom-brain-mr is indexed to the vectors `cbmir embed`
computes (multi-frame per frame); a truncated file, an SR and a non-MR image are recorded,
never crash Orthanc. Tests that need the shared files skip one by one when they are absent;
the rest always run, and test_same_vector.py runs every layout and transfer syntax the test
factory makes (tests/support/dicom_layouts.py) through the same checks without any data.
"""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import generate_uid

from cbmir.core import decode
from cbmir.core.embed import Embedder
from support.dicom_factory import DICOM_MR, mr_image, structured_report
from support.dicom_layouts import layouts
from support.stored_vectors import stored_vectors

pytestmark = [pytest.mark.orthanc]

SAME = 0.999
# The shared files by name, so each test is listed (and skipped alone) where they are absent.
SYNTAX_FILES = [DICOM_MR / "dcm_qa_ts" / f"{n}.dcm" for n in range(1, 10)] + \
    [DICOM_MR / "pydicom-data-emri" / name for name in (
        "emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
        "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm")]
TRUNCATED = DICOM_MR / "malformed" / "emri_small_jpeg_2k_lossless_too_short.dcm"


def need(path):
    if not path.is_file():
        pytest.skip(f"DICOM test data absent ({path})")


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
    """The shared files present here, uploaded once: name -> (bytes sent, Orthanc's answer)."""
    answers = {}
    for path in SYNTAX_FILES:
        if not path.is_file():
            continue
        data = with_new_sop_uid(path) if path.name.startswith("emri_small_") else path.read_bytes()
        answers[path.name] = (data, orthanc.upload(data))
        assert answers[path.name][1]["Status"] == "Success", (path.name, answers[path.name])
    orthanc.wait_idle()
    return answers


@pytest.fixture(scope="module")
def embedder(model_path):
    return Embedder(model_path)


def instance_of(stored, name: str) -> str:
    return stored[name][1]["ID"]


@pytest.mark.parametrize("path", SYNTAX_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_transfer_syntax_is_indexed_to_the_vectors_of_its_frames(orthanc, stored, embedder,
                                                                        path):
    """Stored vector of every frame == what `cbmir embed`'s functions compute from the file
    (test_same_vector.py runs the command itself), and a query with the file finds it."""
    need(path)
    data, answer = stored[path.name]
    expected = embedder.embed_images(decode.decode_dicom_bytes(data))
    vectors = stored_vectors(orthanc, answer["ID"])
    assert sorted(vectors) == list(range(len(expected))), "every frame indexed once"
    for frame, vector in enumerate(expected):
        cosine = float(vectors[frame] @ vector)
        assert cosine >= SAME, f"{path.name} frame {frame}: stored vs recomputed {cosine:.4f}"
    response = orthanc.post("/cbmir/query", data=data, headers={
        "Content-Type": "application/dicom", "X-CBMIR-K": "50", "X-CBMIR-Group-By": "instance",
        "X-CBMIR-Exclude-Same-Patient": "false"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["score"] >= SAME, results[0]
    own = [r for r in results if r["instance"] == answer["ID"]]
    assert own and own[0]["score"] >= SAME and own[0]["frame"] == len(expected) // 2, own


def test_multi_frame_objects_are_indexed_per_frame(orthanc, stored):
    need(DICOM_MR / "pydicom-data-emri" / "emri_small.dcm")
    instance = instance_of(stored, "emri_small.dcm")
    answer = orthanc.get(f"/cbmir/similar/{instance}",
                         params={"frame": 3, "group_by": "instance",
                                 "exclude_same_patient": "false"}).json()
    assert answer["query"]["frame"] == 3
    too_far = orthanc.get(f"/cbmir/similar/{instance}", params={"frame": 10})
    assert too_far.status_code == 400 and "frames 0..9" in too_far.json()["error"]


def test_the_same_pixels_in_other_syntaxes_are_the_nearest_neighbours(orthanc, stored):
    for n in range(1, 10):
        need(DICOM_MR / "dcm_qa_ts" / f"{n}.dcm")
    query = instance_of(stored, "1.dcm")
    results = orthanc.get(f"/cbmir/similar/{query}",
                          params={"group_by": "instance", "exclude_same_patient": "false",
                                  "k": 8}).json()["results"]
    twins = {instance_of(stored, f"{n}.dcm") for n in range(1, 10)}  # all lossless, same pixels
    assert {r["instance"] for r in results} == twins - {query}  # the query is left out
    assert all(r["score"] >= SAME for r in results), results


def test_a_truncated_file_is_refused_or_recorded_as_failed_and_orthanc_survives(orthanc):
    need(TRUNCATED)
    data = TRUNCATED.read_bytes()
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
    for path in SYNTAX_FILES[9:]:
        need(path)
    query = instance_of(stored, "emri_small.dcm")
    twins = {instance_of(stored, name) for name in stored if name.startswith("emri_small_")}
    results = orthanc.get(f"/cbmir/similar/{query}", params={
        "frame": 3, "group_by": "instance", "exclude_same_patient": "false", "k": 20}).json()["results"]
    same_frame = [r for r in results if r["instance"] in twins and r["frame"] == 3]
    assert len(same_frame) == len(twins) == 4
    assert all(r["score"] > 0.9999 for r in same_frame)


def test_without_orthancs_jpeg_2000_decoder_the_plugin_indexes_it_all_the_same(make_server,
                                                                               tmp_path):
    """The plugin decodes everything itself: Orthanc without its GDCM plugin cannot decode
    JPEG 2000, and the frames must still embed exactly like their uncompressed twin."""
    server = make_server("no-gdcm", overrides={"Plugins": [
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
        "/usr/share/orthanc/plugins/libOrthancPython.so"]})
    files = layouts(patient_id="NO-GDCM", workdir=tmp_path)
    raw = server.upload(files["multi_frame"].data)["ID"]
    j2k = server.upload(files["jpeg2000_mono16"].data)["ID"]
    server.wait_idle()
    assert server.get(f"/instances/{j2k}/frames/0/numpy").status_code != 200  # Orthanc can't
    assert float(stored_vectors(server, j2k)[0] @ stored_vectors(server, raw)[0]) >= SAME
    results = server.get(f"/cbmir/similar/{j2k}", params={
        "group_by": "instance", "exclude_same_patient": "false"}).json()["results"]
    assert results[0]["instance"] == raw and results[0]["frame"] == 0
    assert results[0]["score"] >= SAME
