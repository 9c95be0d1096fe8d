"""cbmir.dicomize: valid MR instances, deterministic UIDs, label tag, pixel fidelity."""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from cbmir import dicomize
from cbmir.decode import decode_dicom_bytes


def _make(pixels=None, **kwargs):
    if pixels is None:
        pixels = np.arange(48 * 40, dtype=np.uint16).reshape(48, 40)
    options = dict(patient_id="P001", source_key="abc", series_description="Imported JPEG images",
                   label="glioma", study_date="20240102", instance_number=7)
    options.update(kwargs)
    return dicomize.make_instance(pixels, **options)


def _read(data: bytes):
    return pydicom.dcmread(io.BytesIO(data))


def test_file_is_an_mr_instance_with_proper_meta():
    data = dicomize.to_bytes(_make())
    assert data[128:132] == b"DICM"
    ds = _read(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "MR"
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (ds.PatientID, str(ds.PatientName)) == ("P001", "P001")
    assert ds.StudyDate == "20240102"
    assert ds.SeriesDescription == "Imported JPEG images"
    assert ds.InstanceNumber == 7
    assert ds.ImageComments == "glioma"
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
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


@pytest.mark.parametrize("pixels,bits,signed", [
    (np.random.default_rng(0).integers(0, 256, (31, 33), dtype=np.uint8), 8, 0),  # odd size
    (np.random.default_rng(1).integers(0, 4000, (64, 64)).astype(np.int16), 16, 0),
    (np.random.default_rng(2).integers(-300, 3000, (64, 64)).astype(np.int16), 16, 1),
    (np.random.default_rng(3).integers(0, 60000, (20, 30)).astype(np.uint16), 16, 0),
])
def test_pixels_round_trip_through_decode(pixels, bits, signed):
    data = dicomize.to_bytes(_make(pixels))
    ds = _read(data)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == \
        (16, bits, bits - 1, signed)
    frames = decode_dicom_bytes(data)
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0], pixels.astype(np.float32))


def test_rgb_and_float_input_become_grey():
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    ds = _read(dicomize.to_bytes(_make(rgb)))
    assert ds.BitsStored == 8 and ds.SamplesPerPixel == 1
    assert int(ds.pixel_array[0, 0]) == round(200 * 0.299)
    ramp = np.linspace(-1.0, 1.0, 100, dtype=np.float32).reshape(10, 10)
    ds = _read(dicomize.to_bytes(_make(ramp)))
    assert ds.BitsStored == 16
    assert int(ds.pixel_array.min()) == 0 and int(ds.pixel_array.max()) == 4095


@pytest.mark.parametrize("spec", ["ImageComments", "0020,4000", "(0020,4000)", "00204000", "0020, 4000"])
def test_label_tag_spellings(spec):
    assert dicomize.parse_tag(spec) == 0x00204000


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
@pytest.mark.parametrize("pixels", [np.zeros((31, 33), np.uint8), np.full((16, 16), -4, np.int16)])
def test_dciodvfy_finds_no_errors(tmp_path, pixels):
    path = tmp_path / "mr.dcm"
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
    assert "MRImageStorage" in result.stdout and "glioma" in result.stdout
