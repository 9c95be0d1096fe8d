"""cbmir.core.decode without Orthanc: every layout of one picture decodes to that picture.

"The same picture" is judged on the model input (`preprocess`), which is what the vectors
are made from: it is invariant to a positive affine change of intensities, so 8-, 12- and
16-bit copies, rescaled or inverted ones, must all give the source's input.
"""
from __future__ import annotations

import numpy as np
import pytest

from cbmir.core import decode, limits
from cbmir.core.preprocess import preprocess
from support.dicom_layouts import layout_names, layouts, phantom, undecodable_layouts


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return layouts(patient_id="UNIT", workdir=tmp_path_factory.mktemp("layouts"))


def model_input(frame):
    return preprocess(frame, 128)


@pytest.mark.parametrize("name", layout_names())
def test_every_layout_decodes_to_its_pictures(made, name):
    sources = {"A": phantom(seed=0), "A-mirrored": phantom(seed=0)[:, ::-1],
               "B": phantom(seed=1)}
    layout = made[name]
    frames = decode.decode_dicom_bytes(layout.data)
    assert len(frames) == len(layout.pictures)
    for frame, picture in zip(frames, layout.pictures):
        if picture not in sources:  # the odd-size picture: its shape says enough
            assert frame.shape[:2] == (257, 511)
            continue
        difference = np.abs(model_input(frame) - model_input(sources[picture])).max()
        lossy = layout.transfer_syntax == "1.2.840.10008.1.2.4.50"
        # lossy JPEG; RGB: the tint is rounded to 8 bits per channel; else exact to float error
        tolerance = 0.2 if lossy else 0.01 if frame.ndim == 3 else 1e-3
        assert difference < tolerance, f"{name} {picture}: {difference}"


@pytest.mark.parametrize("name", layout_names())
def test_frames_read_from_the_bytes_equal_those_of_the_whole_dataset(made, name):
    """The worker's path (header first, then one frame's pixel bytes at a time; deflated
    files inflated to a temporary file) decodes exactly like `decode_dicom_bytes`."""
    data = made[name].data
    expected = decode.decode_dicom_bytes(data)
    frames = list(decode.iter_frames_from_bytes(data, limits.read_header(data)))
    assert len(frames) == len(expected)
    for frame, reference in zip(frames, expected):
        np.testing.assert_array_equal(frame, reference)


@pytest.mark.parametrize("name", list(undecodable_layouts()))
def test_an_undecodable_layout_read_from_the_bytes_raises_the_same_reason(name):
    data = undecodable_layouts()[name].data
    with pytest.raises(decode.UndecodableImage, match=undecodable_layouts()[name].expect_failure):
        list(decode.iter_frames_from_bytes(data, limits.read_header(data)))


def test_a_file_without_pixels_read_from_the_bytes_is_not_an_image():
    from support.dicom_factory import structured_report

    data = structured_report()
    with pytest.raises(decode.NotAnImage, match="no pixel data"):
        list(decode.iter_frames_from_bytes(data, limits.read_header(data)))


def test_no_pixel_data_has_one_outcome_on_every_path():
    """The dataset path and the worker's bytes path (plain and deflated) agree: NotAnImage
    with the same reason, never UndecodableImage (the worker records it as 'skipped')."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    from support.dicom_factory import structured_report, to_bytes

    data = structured_report()
    dataset = decode.read_dataset(data)
    assert not decode.has_pixel_data(dataset)
    reason = str(decode.no_pixel_data(dataset))
    assert reason.startswith("no pixel data (SOP class 1.2.840.10008.5.1.4.1.1.88.11")
    deflated = pydicom.dcmread(__import__("io").BytesIO(data))
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    for source in (data, to_bytes(deflated)):
        with pytest.raises(decode.NotAnImage) as raised:
            list(decode.iter_frames_from_bytes(source, limits.read_header(source)))
        assert str(raised.value) == reason
    with pytest.raises(decode.NotAnImage) as raised:
        list(decode.iter_frames(dataset))
    assert str(raised.value) == reason


def test_pixel_data_of_any_kind_counts(made):
    assert decode.has_pixel_data(decode.read_dataset(made["multi_frame"].data))
    from pydicom.dataset import Dataset

    for keyword in decode.PIXEL_KEYWORDS:
        dataset = Dataset()
        setattr(dataset, keyword, b"\0\0\0\0")
        assert decode.has_pixel_data(dataset), keyword


def test_frames_are_decoded_one_at_a_time(made):
    frames = decode.iter_frames(decode.read_dataset(made["multi_frame"].data))
    first = next(frames)
    assert first.shape == (256, 256)
    assert len(list(frames)) == 2


@pytest.mark.parametrize("name", list(undecodable_layouts()))
def test_a_layout_that_cannot_be_decoded_for_certain_raises_with_the_reason(name):
    layout = undecodable_layouts()[name]
    with pytest.raises(decode.UndecodableImage, match=layout.expect_failure):
        decode.decode_dicom_bytes(layout.data)


@pytest.mark.parametrize("array, stored, high, signed, expected", [
    (np.array([0xF00F], np.uint16), 12, 11, 0, [0x00F]),          # junk above bit 11 dropped
    (np.array([0x0FFF], np.uint16), 12, 11, 1, [-1]),             # 12-bit -1 sign-extended
    (np.array([0x0800], np.uint16), 12, 11, 1, [-2048]),
    (np.array([0xFFF0], np.uint16), 12, 15, 0, [0xFFF]),          # left-aligned (HighBit 15)
    (np.array([0x03FF], np.uint16), 10, 9, 0, [0x3FF]),
    (np.array([-5], np.int16), 16, 15, 1, [-5]),                  # nothing to do
])
def test_stored_values_keep_exactly_the_stored_bits(array, stored, high, signed, expected):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, stored, high, signed
    if signed:
        array = array.view(np.int16)
    assert decode.stored_values(array, ds, encapsulated=False).tolist() == expected


def test_an_impossible_bit_layout_is_refused():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 8, 0
    with pytest.raises(decode.UndecodableImage, match="impossible bit layout"):
        decode.stored_values(np.zeros(4, np.uint16), ds, encapsulated=False)


def test_decode_frame_decodes_up_to_the_asked_frame_only(monkeypatch):
    """A query or thumbnail of frame i of a multi-frame object holds one frame at a time and
    never decodes the frames after i."""
    seen = []

    def frames(dataset):
        for number in range(5):
            seen.append(number)
            yield np.full((2, 2), number, np.float32)

    monkeypatch.setattr(decode, "iter_frames", frames)
    assert decode.decode_frame(object(), 2)[0, 0] == 2 and seen == [0, 1, 2]
    with pytest.raises(decode.UndecodableImage, match="frame 7 is missing"):
        decode.decode_frame(object(), 7)
