"""cbmir.tools.dicomize: valid Secondary Capture instances (Modality MR), deterministic UIDs, label tag,
pixel fidelity, and layouts Orthanc 1.10 renders right (never 8 bits stored in 16)."""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from cbmir.core.decode import decode_dicom_bytes
from cbmir.tools import dicomize


def _make(pixels=None, **kwargs):
    if pixels is None:
        pixels = np.arange(48 * 40, dtype=np.uint16).reshape(48, 40)
    options = dict(patient_id="P001", source_key="abc", series_description="Imported JPEG images",
                   label="glioma", study_date="20240102", instance_number=7)
    options.update(kwargs)
    return dicomize.make_instance(pixels, **options)


def _read(data: bytes):
    return pydicom.dcmread(io.BytesIO(data))


def test_file_is_a_secondary_capture_with_modality_mr_and_proper_meta():
    data = dicomize.to_bytes(_make())
    assert data[128:132] == b"DICM"
    ds = _read(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "MR"
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (ds.PatientID, str(ds.PatientName)) == ("P001", "P001")
    assert ds.StudyDate == "20240102"
    assert ds.SeriesDescription == "Imported JPEG images"
    assert ds.InstanceNumber == 7
    assert ds.ImageComments == "glioma"
    assert ds.ConversionType == "WSD" and list(ds.ImageType) == ["DERIVED", "SECONDARY", "OTHER"]
    assert "ScanningSequence" not in ds and "EchoTime" not in ds  # no invented acquisition details
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
        assert uid.is_valid and len(uid) <= 64


def test_uids_are_deterministic_and_structured():
    first, again = _make(), _make()
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    other_slice = _make(source_key="def", instance_number=8)
    assert other_slice.SOPInstanceUID != first.SOPInstanceUID
    assert other_slice.SeriesInstanceUID == first.SeriesInstanceUID
    other_source = _make(series_description="T1 post-contrast (figshare .mat)")
    assert other_source.StudyInstanceUID == first.StudyInstanceUID  # one study per patient
    assert other_source.SeriesInstanceUID != first.SeriesInstanceUID  # one series per source
    other_patient = _make(patient_id="P002")
    assert other_patient.StudyInstanceUID != first.StudyInstanceUID
    assert other_patient.SOPInstanceUID != first.SOPInstanceUID


@pytest.mark.parametrize("pixels,layout", [
    # (BitsAllocated, BitsStored, HighBit, PixelRepresentation, SamplesPerPixel, photometric)
    (np.random.default_rng(0).integers(0, 256, (31, 33), dtype=np.uint8),  # odd size
     (8, 8, 7, 0, 1, "MONOCHROME2")),
    (np.random.default_rng(4).integers(0, 256, (17, 9, 3), dtype=np.uint8), (8, 8, 7, 0, 3, "RGB")),
    (np.random.default_rng(1).integers(0, 4000, (64, 64)).astype(np.int16),
     (16, 16, 15, 0, 1, "MONOCHROME2")),
    (np.random.default_rng(3).integers(0, 60000, (20, 30)).astype(np.uint16),
     (16, 16, 15, 0, 1, "MONOCHROME2")),
    (np.random.default_rng(2).integers(-300, 3000, (64, 64)).astype(np.int16),  # via RescaleIntercept
     (16, 16, 15, 0, 1, "MONOCHROME2")),
])
def test_pixels_round_trip_exactly_in_layouts_every_viewer_renders(pixels, layout):
    data = dicomize.to_bytes(_make(pixels))
    ds = _read(data)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation,
            ds.SamplesPerPixel, ds.PhotometricInterpretation) == layout
    assert ds.BitsStored == ds.BitsAllocated  # never 8 bits stored in 16 (Orthanc 1.10 decodes it wrongly)
    frames = decode_dicom_bytes(data)
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0], pixels.astype(np.float32))


def test_negative_values_keep_their_meaning_through_the_modality_lut():
    pixels = np.array([[-300, 0], [5, 2999]], dtype=np.int16)
    ds = _read(dicomize.to_bytes(_make(pixels)))
    assert (float(ds.RescaleIntercept), float(ds.RescaleSlope), ds.RescaleType) == (-300.0, 1.0, "US")
    assert int(ds.pixel_array.min()) == 0


def test_float_input_is_kept_through_rescale_slope_and_intercept():
    ramp = np.linspace(-1.0, 1.0, 100, dtype=np.float32).reshape(10, 10)
    data = dicomize.to_bytes(_make(ramp))
    ds = _read(data)
    assert (ds.BitsAllocated, ds.BitsStored) == (16, 16)
    assert int(ds.pixel_array.min()) == 0 and int(ds.pixel_array.max()) == 65535
    np.testing.assert_allclose(decode_dicom_bytes(data)[0], ramp, atol=1e-4)


def test_rgba_drops_alpha_and_wide_colour_becomes_8_bit_rgb():
    rgba = np.zeros((6, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 17
    ds = _read(dicomize.to_bytes(_make(rgba)))
    assert ds.PhotometricInterpretation == "RGB" and ds.pixel_array[0, 0].tolist() == [200, 0, 0]
    wide = np.zeros((4, 4, 3), dtype=np.uint16)
    wide[0, 0] = (1000, 500, 0)
    ds = _read(dicomize.to_bytes(_make(wide)))
    assert ds.BitsAllocated == 8 and ds.pixel_array[0, 0].tolist() == [255, 128, 0]


def test_label_in_another_tag_and_no_label():
    ds = _read(dicomize.to_bytes(_make(label_tag="0032,4000")))
    assert ds.StudyComments == "glioma" and "ImageComments" not in ds
    ds = _read(dicomize.to_bytes(_make(label_tag="SeriesDescription")))
    assert ds.SeriesDescription == "glioma"  # the label tag wins: the user asked for it
    ds = _read(dicomize.to_bytes(_make(label=None)))
    assert "ImageComments" not in ds


@pytest.mark.parametrize("spec", ["NoSuchKeyword", "zzzz,1234", "0029,1010", "Rows", "0008,103F"])
def test_bad_label_tags_are_refused(spec):
    with pytest.raises(ValueError):
        _make(label_tag=spec)


def test_patient_id_is_required():
    with pytest.raises(ValueError):
        _make(patient_id="")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("pixels", [np.zeros((31, 33), np.uint8), np.full((16, 16), -4, np.int16),
                                    np.zeros((7, 9, 3), np.uint8), np.ones((8, 8), np.float32)])
def test_dciodvfy_finds_no_errors(tmp_path, pixels):
    path = tmp_path / "sc.dcm"
    path.write_bytes(dicomize.to_bytes(_make(pixels)))
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    report = (result.stdout + result.stderr).splitlines()
    errors = [line for line in report if line.startswith("Error")]
    assert not errors, "\n".join(errors)


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="dcmtk not installed")
def test_dcmtk_reads_the_file(tmp_path):
    path = tmp_path / "mr.dcm"
    path.write_bytes(dicomize.to_bytes(_make()))
    result = subprocess.run(["dcmdump", "-E", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "SecondaryCaptureImageStorage" in result.stdout and "glioma" in result.stdout
