"""GET /cbmir/thumbnail/{instance} in a real Orthanc with the real plugin.

The route exists because Orthanc 1.10's own renderer draws some layouts wrongly: the
first test shows both facts on one BitsAllocated 16 / BitsStored 8 / HighBit 7 instance
(the plugin's thumbnail matches the source pixels, Orthanc's /preview does not)."""
from __future__ import annotations

import pytest

from support.rendering import correlation, eight_bits_in_sixteen, picture, png_pixels

pytestmark = pytest.mark.orthanc


def _thumbnail(orthanc, instance, **args):
    return orthanc.get(f"/cbmir/thumbnail/{instance}", params=args)


def test_8_bits_stored_in_16_thumbnail_is_right_where_orthancs_preview_is_wrong(orthanc):
    source = picture()
    instance = orthanc.upload(eight_bits_in_sixteen(source))["ID"]
    answer = _thumbnail(orthanc, instance)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "image/png"
    drawn = png_pixels(answer.content)
    assert max(drawn.shape) == min(256, max(source.shape))
    assert correlation(drawn, source) > 0.99

    preview = orthanc.get(f"/instances/{instance}/preview")
    assert preview.status_code == 200
    wrong = correlation(png_pixels(preview.content), source)
    assert wrong < 0.9, f"Orthanc's /preview now draws this layout right (r={wrong:.3f})"


def test_the_thumbnail_is_found_by_sop_instance_uid_and_frames_are_chosen(orthanc):
    import io

    import pydicom

    source = picture(64, 80)
    data = eight_bits_in_sixteen(source, frames=3)
    instance = orthanc.upload(data)["ID"]
    sop = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
    by_uid = _thumbnail(orthanc, sop, frame=0)
    assert by_uid.status_code == 200, by_uid.text
    assert by_uid.content == _thumbnail(orthanc, instance).content
    last = _thumbnail(orthanc, instance, frame=2, size=32)
    assert last.status_code == 200 and png_pixels(last.content).shape == (26, 32)
    assert correlation(png_pixels(last.content), source) > 0.99


def test_errors_are_json(orthanc):
    instance = orthanc.upload(eight_bits_in_sixteen(picture(20, 20)))["ID"]
    unknown = _thumbnail(orthanc, "00000000-00000000-00000000-00000000-00000000")
    bad_frame = _thumbnail(orthanc, instance, frame=1)
    bad_size = _thumbnail(orthanc, instance, size="huge")
    for answer, status in ((unknown, 404), (bad_frame, 400), (bad_size, 400)):
        assert answer.status_code == status, answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.json()["status"] == status and answer.json()["error"]
    assert orthanc.post(f"/cbmir/thumbnail/{instance}", data=b"").status_code == 405


def test_an_object_without_pixels_is_422(orthanc):
    from cbmir.tools import dicomize

    ds = dicomize.make_instance(picture(8, 8), patient_id="THUMB-NOPIX", source_key="no-pixels",
                                series_description="no pixels")
    del ds.PixelData
    instance = orthanc.upload(dicomize.to_bytes(ds))["ID"]
    answer = _thumbnail(orthanc, instance)
    assert answer.status_code == 422 and "no image" in answer.json()["error"]


def test_similar_results_name_the_plugins_thumbnail(orthanc):
    from cbmir.tools import dicomize

    instances = []
    for number in range(2):
        ds = dicomize.make_instance(picture(60 + number, 70), patient_id="THUMB-SIM",
                                    source_key=f"sim-{number}", series_description="thumbs",
                                    instance_number=number + 1)
        instances.append(orthanc.upload(dicomize.to_bytes(ds))["ID"])
    orthanc.wait_idle()
    answer = orthanc.get(f"/cbmir/similar/{instances[0]}",
                         params={"exclude_same_patient": "false", "group_by": "instance", "k": 50})
    assert answer.status_code == 200, answer.text
    hit = next(r for r in answer.json()["results"] if r["instance"] == instances[1])
    assert hit["thumbnail"] == f"/cbmir/thumbnail/{instances[1]}"
    drawn = orthanc.get(hit["thumbnail"])
    assert drawn.status_code == 200 and correlation(png_pixels(drawn.content), picture(61, 70)) > 0.99
