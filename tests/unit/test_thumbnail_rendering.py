"""cbmir.service.thumbnails without Orthanc: argument checks, the PNG drawn from the plugin's decode,
and the JSON errors (a fake orthanc module hands out DICOM bytes)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from cbmir.service import thumbnails
from cbmir.service.gateway import Gateway
from cbmir.vectors.search import ApiError
from support.fake_orthanc import FakeOrthanc, FakeOutput
from support.rendering import correlation, eight_bits_in_sixteen, picture, png_pixels

INSTANCE = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"


ENGINE = SimpleNamespace(instances_for_sop=lambda uid: [])


def get(files: dict, identifier=INSTANCE, method="GET", **args):
    output = FakeOutput()
    orthanc = FakeOrthanc()
    for instance, dicom in files.items():
        orthanc.store(instance, dicom)
    thumbnails.answer(output, {"method": method}, lambda: thumbnails.thumbnail(
        Gateway(orthanc), ENGINE, identifier, {k: str(v) for k, v in args.items()}), log=lambda m: None)
    return output.answers[-1], output.headers


def test_an_8_bits_in_16_instance_is_drawn_from_the_right_pixels():
    source = picture()
    (status, mime, body), headers = get({INSTANCE: eight_bits_in_sixteen(source)}, size=128)
    assert (status, mime) == (200, "image/png")
    assert headers["Cache-Control"].startswith("private")
    drawn = png_pixels(body)
    assert drawn.shape == (106, 128)  # longest side = size, aspect kept (201 x 243)
    assert correlation(drawn, source) > 0.99


def test_frames_are_chosen_and_checked():
    source = picture(40, 50)
    files = {INSTANCE: eight_bits_in_sixteen(source, frames=3)}
    first, second = (png_pixels(get(files, frame=f)[0][2]) for f in (0, 2))
    assert first.shape == second.shape == (40, 50)  # never upscaled beyond the image
    status, _, body = get(files, frame=3)[0]
    assert status == 400 and json.loads(body)["frames"] == 3


def test_colour_stays_colour():
    source = picture(colour=True)
    (_, _, body), _ = get({INSTANCE: _rgb_dicom(source)})
    drawn = png_pixels(body)
    assert drawn.ndim == 3 and correlation(drawn, source) > 0.99


@pytest.mark.parametrize("args,status", [
    ({"frame": "x"}, 400), ({"frame": -1}, 400), ({"size": 4}, 400), ({"size": 5000}, 400),
])
def test_bad_arguments_are_400(args, status):
    (answer, mime, body), _ = get({INSTANCE: eight_bits_in_sixteen(picture(20, 20))}, **args)
    assert (answer, mime) == (status, "application/json") and json.loads(body)["status"] == status


def test_unknown_and_undecodable_instances_get_json_errors():
    assert get({})[0][0] == 404
    assert get({}, identifier="1.2.3.4")[0][0] == 404  # a SOPInstanceUID nobody has
    assert get({}, identifier="../etc")[0][0] == 400
    good = eight_bits_in_sixteen(picture(20, 20))
    status, _, body = get({INSTANCE: good[:-150]})[0]  # pixel data cut short
    assert status == 422 and "cannot be decoded" in json.loads(body)["error"]
    status, _, body = get({INSTANCE: _no_pixels()})[0]
    assert status == 422 and "no image" in json.loads(body)["error"]
    assert get({INSTANCE: good}, method="POST")[0][0] == 405


def test_render_never_upscales_and_windows_like_the_model():
    pixels = np.full((10, 20), 100.0, np.float32)
    pixels[:, 10:] = 140.0  # the window (0.5/99.5 percentiles) stretches 100..140 to 0..255
    drawn = png_pixels(thumbnails.render_png(pixels, size=256))
    assert drawn.shape == (10, 20)
    assert drawn[:, :10].max() == 0 and drawn[:, 10:].min() == 255


def _rgb_dicom(rgb: np.ndarray) -> bytes:
    from cbmir.tools import dicomize
    return dicomize.to_bytes(dicomize.make_instance(rgb, patient_id="P", source_key="rgb",
                                                    series_description="s"))


def _no_pixels() -> bytes:
    from cbmir.tools import dicomize
    ds = dicomize.make_instance(picture(8, 8), patient_id="P", source_key="x", series_description="s")
    del ds.PixelData
    return dicomize.to_bytes(ds)
