"""cbmir.core.limits (issue 11): the bounded header reader, the size limits, frame reduction,
bounded inflating. (The attempt counters and the failed write: test_store.py; the backoff:
test_retry.py.)"""
import io

import numpy as np
import pydicom
import pytest

from cbmir.core import limits
from cbmir.service.config import ConfigError, load_config
from support.bombs import deflated_image
from support.dicom_factory import mr_image


def test_the_header_of_a_deflated_file_is_read_without_inflating_the_pixels():
    data = deflated_image(4096, 4096, 8, label="big")  # 256 MiB of pixels inflated
    header = limits.read_header(data, max_header_bytes=4 * 1024 * 1024)
    assert (header.Rows, header.Columns, header.NumberOfFrames) == (4096, 4096, 8)
    assert header.ImageComments == "big" and "PixelData" not in header
    with pytest.raises(limits.TooLarge, match="MaxInstancePixels"):
        limits.check_size(header, 4096 * 4096, 4096 * 4096 * 4)
    with pytest.raises(limits.TooLarge, match="MaxFramePixels"):
        limits.check_size(header, 1024 * 1024, 2 ** 34)
    limits.check_size(header, 4096 * 4096, 4096 * 4096 * 8)  # exactly at the limits: allowed


def test_a_small_deflated_file_still_decodes_and_a_plain_one_reads_its_header():
    data = deflated_image(32, 48, 2, noise=True)
    assert limits.read_header(data).Columns == 48
    assert pydicom.dcmread(io.BytesIO(data)).pixel_array.shape == (2, 32, 48)
    plain = mr_image(np.ones((16, 16)), "P", "1.2", "1.3", label="x")
    header = limits.read_header(plain)
    assert header.ImageComments == "x" and "PixelData" not in header
    with pytest.raises(limits.BadHeader):
        limits.read_header(b"not a dicom file at all" * 10)


def test_huge_frames_are_block_averaged_before_preprocessing_and_small_ones_left_alone():
    frame = np.arange(4000 * 3000, dtype=np.uint16).reshape(4000, 3000)
    small = limits.reduce(frame, 160)
    assert max(small.shape) >= 4 * 160 and small.shape[0] < 4000 and small.dtype == np.float32
    mr = np.ones((512, 512), np.uint16)
    assert limits.reduce(mr, 160) is mr


def test_the_limits_are_configuration_keys_with_validated_values():
    config = load_config({"CBMIR": {"MaxFramePixels": 1000, "MaxInstancePixels": 5000}})
    assert (config.max_frame_pixels, config.max_instance_pixels) == (1000, 5000)
    assert load_config({}).max_frame_pixels == 4096 * 4096
    with pytest.raises(ConfigError, match="CBMIR.MaxFramePixels"):
        load_config({"CBMIR": {"MaxFramePixels": "big"}})


def test_pixel_tag_bytes_inside_an_earlier_value_do_not_cut_the_header_short():
    """A hostile deflated bomb hides the pixel data tag's bytes in PatientName: the header
    must still show its rows and columns, so the limits refuse it."""
    data = deflated_image(8192, 8192, 4, patient_id="A\xe0\x7f\x10\x00B".encode("latin1")
                          .decode("latin1"))
    header = limits.read_header(data)
    with pytest.raises(limits.TooLarge, match="MaxFramePixels"):
        limits.check_size(header, 4096 * 4096, 2 ** 34)


def test_a_deflated_file_is_inflated_to_disk_only_up_to_its_declared_pixels():
    data = deflated_image(512, 512, 2, noise=True)
    header = limits.read_header(data)
    assert limits.inflated_limit(header) >= 512 * 512 * 2 * 2
    written = io.BytesIO()
    limits.inflate_to(data, written, limits.inflated_limit(header))
    assert len(written.getvalue()) > 512 * 512 * 2 * 2
    with pytest.raises(limits.TooLarge, match="inflates past"):
        limits.inflate_to(data, io.BytesIO(), 512 * 512 * 2)
