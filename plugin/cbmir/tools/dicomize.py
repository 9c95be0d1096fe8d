"""Pixel arrays + a little metadata -> DICOM Secondary Capture instances (highdicom).

Why: demos and tests need the archive filled with real DICOM (JPG/PNG and the
figshare `.mat` files are not), shaped the way a PACS expects: one study per
patient, one series per (patient, source), the label in the configured tag,
Modality MR. Pictures are written as what they are (Secondary Capture, 8-bit grey,
RGB or 16-bit grey), in layouts every viewer, Orthanc 1.10 included, renders right.
All UIDs are derived from the source (a hash), never random, so importing the
same file twice yields the same SOPInstanceUID and Orthanc keeps one copy.
Pure: no I/O besides returning bytes.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import uuid

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import DS

from cbmir.core.dicom_tags import parse_tag

DEFAULT_LABEL_TAG = "ImageComments"  # (0020,4000), the plugin's default label tag
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:orthanc-cbmir:dicomize")


def _label_vr(tag: BaseTag) -> str:
    """The dictionary VR of a standard text tag; private/unknown/non-text tags are refused."""
    if tag.is_private:
        raise ValueError(f"tag {tag} is private: use a standard text tag such as ImageComments")
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise ValueError(f"tag {tag} is not in the DICOM dictionary") from None
    if vr not in ("LO", "LT", "SH", "ST", "UT", "CS", "UC"):
        raise ValueError(f"tag {tag} has VR {vr}: a label needs a text VR (LO, LT, SH, ST, UT, CS)")
    return vr


def derive_uid(*parts: object) -> str:
    """A 2.25 UID that depends only on `parts` (same input -> same UID).

    A name-based (v5) UUID as an integer, as ISO/IEC 9834-8 allows; pydicom's
    `generate_uid(prefix=None)` would ignore the entropy and be random.
    """
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"


def study_uid(patient_id: str) -> str:
    return derive_uid("study", patient_id)


def series_uid(patient_id: str, series_description: str) -> str:
    return derive_uid("series", patient_id, series_description)


def sop_instance_uid(patient_id: str, source_key: str) -> str:
    return derive_uid("instance", patient_id, source_key)


def _series_number(series_description: str) -> int:
    """A stable small number per source so series sort the same way everywhere."""
    return int(hashlib.sha1(series_description.encode()).hexdigest(), 16) % 900 + 100


def _rescaled_to_uint16(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """Any real array -> (uint16 array, Modality LUT) such that slope * stored + intercept
    gives the values back (exactly for integers spanning at most 65535, to 1/65535 of the
    range for floats). Secondary Capture pixels are unsigned; the LUT keeps them honest."""
    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    if np.issubdtype(values.dtype, np.integer) and high - low <= 0xFFFF:
        stored, slope = finite - low, 1.0
    else:
        slope = (high - low) / 0xFFFF if high > low else 1.0
        stored = np.rint((finite - low) / slope)
    return np.ascontiguousarray(stored.astype(np.uint16)), {
        "RescaleIntercept": low, "RescaleSlope": slope, "RescaleType": "US"}


def _to_stored_pixels(pixels: np.ndarray) -> tuple[np.ndarray, str, dict]:
    """(array, photometric interpretation, Modality LUT attributes) for Secondary Capture.

    Why these layouts: viewers and Orthanc 1.10 all render 8 bits in 8 and 16 in 16,
    while 8 bits stored in 16 allocated is decoded wrongly by Orthanc 1.10 (two
    half-width copies). So 8-bit grey stays 8-bit (BitsAllocated 8), 8-bit colour
    stays RGB, other integers become 16-bit unsigned (negative ranges through
    RescaleIntercept) and floats 16-bit with RescaleSlope/Intercept.
    """
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        if rgb.dtype != np.uint8:  # 16-bit or float colour: colour SC is 8-bit only
            finite = np.nan_to_num(rgb.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            low, high = float(finite.min()), float(finite.max())
            scaled = (finite - low) / (high - low) * 255.0 if high > low else np.zeros_like(finite)
            rgb = np.rint(scaled).astype(np.uint8)
        return np.ascontiguousarray(rgb), "RGB", {}
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(f"expected a 2-D grey or (H, W, 3) colour image, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array), "MONOCHROME2", {}
    if np.issubdtype(array.dtype, np.integer) and int(array.min()) >= 0 and int(array.max()) <= 0xFFFF:
        return np.ascontiguousarray(array.astype(np.uint16)), "MONOCHROME2", {}
    stored, lut = _rescaled_to_uint16(array)
    return stored, "MONOCHROME2", lut


def make_instance(pixels: np.ndarray, *, patient_id: str, source_key: str,
                  series_description: str, label: str | None = None,
                  label_tag: str = DEFAULT_LABEL_TAG, instance_number: int = 1,
                  patient_name: str | None = None, study_date: str | None = None,
                  study_description: str = "Brain MRI (imported by cbmir)",
                  pixel_spacing: tuple[float, float] | None = None,
                  modality: str = "MR") -> Dataset:
    """One Secondary Capture Image dataset (with file meta) for a 2-D slice, written by highdicom.

    Why Secondary Capture: a JPG/PNG picture (or a figshare array) carries none of the
    acquisition details an MR Image object must state, so it is stored as what it is, a
    converted picture. `Modality` stays MR (the pictures show MR, and the plugin indexes
    MR by default) and the label goes into `label_tag`.
    `source_key` identifies the source image (e.g. a hash of the file) and, with
    `patient_id`, fixes the SOPInstanceUID. The study is per patient, the
    series per (patient, `series_description`). `study_date` is YYYYMMDD (default: today).
    """
    from highdicom.sc import SCImage

    if not patient_id:
        raise ValueError("patient_id is required (derive one from the source file)")
    stored, photometric, lut = _to_stored_pixels(pixels)
    tag = parse_tag(label_tag)
    label_vr = _label_vr(tag) if label else None
    study_date = study_date or _dt.date.today().strftime("%Y%m%d")
    series = series_uid(patient_id, series_description)
    ds = SCImage(
        pixel_array=stored, photometric_interpretation=photometric,
        bits_allocated=8 if stored.dtype == np.uint8 else 16,
        # highdicom wants an orientation for patient coordinates; it is unknown here and
        # emptied below (Patient Orientation is type 2 when there is no image plane).
        coordinate_system="PATIENT", patient_orientation=("L", "P"),
        study_instance_uid=study_uid(patient_id), series_instance_uid=series,
        series_number=_series_number(series_description),
        sop_instance_uid=sop_instance_uid(patient_id, source_key),
        instance_number=max(1, int(instance_number)), manufacturer="",
        patient_id=patient_id,
        patient_birth_date="", patient_sex="", accession_number="", study_id="",
        study_date=study_date, study_time="000000", referring_physician_name="",
        pixel_spacing=tuple(pixel_spacing) if pixel_spacing else None,
        series_description=series_description, specific_character_set="ISO_IR 192")
    ds.PatientOrientation = None
    # Set here, not through highdicom, which warns on every one-component name (an ID).
    ds.PatientName = patient_name or patient_id
    ds.Modality = modality
    ds.ConversionType = "WSD"  # converted on a workstation, from a picture or an array
    ds.SecondaryCaptureDeviceManufacturer = "Orthanc CBMIR (cbmir import)"
    ds.StudyDescription = study_description
    ds.BodyPartExamined = "BRAIN"
    ds.SeriesDate = ds.ContentDate = study_date
    ds.SeriesTime = ds.ContentTime = "000000"
    ds.BurnedInAnnotation = "NO"
    for keyword, value in lut.items():
        setattr(ds, keyword, value if isinstance(value, str) else DS(value, auto_format=True))
    if label:
        ds.add_new(tag, label_vr, str(label))
    ds.file_meta.ImplementationVersionName = "ORTHANC_CBMIR"
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """A Part 10 file (preamble, DICM, file meta) as bytes."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
