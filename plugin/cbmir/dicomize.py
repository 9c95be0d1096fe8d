"""Pixel arrays + a little metadata -> proper DICOM MR Image Storage instances.

Why: demos and tests need the archive filled with real DICOM (JPG/PNG and the
figshare `.mat` files are not), shaped the way a PACS expects: one study per
patient, one series per (patient, source), the label in the configured tag.
All UIDs are derived from the source (a hash), never random, so importing the
same file twice yields the same SOPInstanceUID and Orthanc keeps one copy.
Pure: no I/O besides returning bytes.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import re
import uuid

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID

DEFAULT_LABEL_TAG = "ImageComments"  # (0020,4000), the plugin's default label tag
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:orthanc-cbmir:dicomize")
_TAG_PATTERN = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")


def parse_tag(spec: str) -> BaseTag:
    """A tag from a keyword ("ImageComments") or a number ("0020,4000", "(0020,4000)", "00204000")."""
    text = str(spec).strip()
    match = _TAG_PATTERN.match(text)
    if match:
        return Tag(int(match.group(1), 16), int(match.group(2), 16))
    number = tag_for_keyword(text)
    if number is None:
        raise ValueError(f"unknown DICOM tag {spec!r}: use a keyword such as ImageComments "
                         "or a number such as 0020,4000")
    return Tag(number)


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


def _to_stored_pixels(pixels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(array, bits, pixel representation) for MONOCHROME2 storage.

    8-bit data keeps 8 stored bits (in 16 allocated, as the MR IOD wants);
    other integers become 16-bit (signed only when needed); floats are rescaled to 12 bits because MR Image Storage has no
    float pixels. Colour input is turned grey with the ITU-R 601 weights.
    """
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        weights = np.array([0.299, 0.587, 0.114])
        grey = array[..., :3].astype(np.float64) @ weights
        array = np.clip(np.rint(grey), 0, 255).astype(np.uint8) if array.dtype == np.uint8 else grey
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(f"expected a 2-D image, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array.astype("<u2")), 8, 0
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 0xFFFF:
            return np.ascontiguousarray(array.astype("<u2")), 16, 0
        if -0x8000 <= low and high <= 0x7FFF:
            return np.ascontiguousarray(array.astype("<i2")), 16, 1
    finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    scaled = (finite - low) / (high - low) * 4095.0 if high > low else np.zeros_like(finite)
    return np.ascontiguousarray(np.rint(scaled).astype("<u2")), 16, 0


def make_instance(pixels: np.ndarray, *, patient_id: str, source_key: str,
                  series_description: str, label: str | None = None,
                  label_tag: str = DEFAULT_LABEL_TAG, instance_number: int = 1,
                  patient_name: str | None = None, study_date: str | None = None,
                  study_description: str = "Brain MRI (imported by cbmir)",
                  pixel_spacing: tuple[float, float] | None = None,
                  slice_thickness: float | None = None) -> Dataset:
    """One MR Image Storage dataset (with file meta) for a 2-D slice.

    `source_key` identifies the source image (e.g. a hash of the file) and, with
    `patient_id`, fixes the SOPInstanceUID. The study is per patient, the
    series per (patient, `series_description`). `study_date` is YYYYMMDD
    (default: today). Unknown acquisition attributes are left empty (type 2).
    """
    if not patient_id:
        raise ValueError("patient_id is required (derive one from the source file)")
    stored, bits, signed = _to_stored_pixels(pixels)
    tag = parse_tag(label_tag)
    study_date = study_date or _dt.date.today().strftime("%Y%m%d")
    sop_uid = sop_instance_uid(patient_id, source_key)
    series = series_uid(patient_id, series_description)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "000000"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name or patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "BRAIN"
    ds.PatientPosition = ""  # type 2C for MR: required, unknown here
    # MR Image module: acquisition details are unknown for converted pictures.
    ds.ScanningSequence = "RM"  # research mode: the sequence is not known
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = None
    ds.EchoTime = None
    ds.EchoTrainLength = None
    ds.SliceThickness = slice_thickness
    ds.StudyInstanceUID = study_uid(patient_id)
    ds.SeriesInstanceUID = series
    ds.StudyID = ""
    ds.SeriesNumber = _series_number(series_description)
    ds.InstanceNumber = int(instance_number)
    ds.FrameOfReferenceUID = derive_uid("frame-of-reference", series)
    ds.PositionReferenceIndicator = ""
    # Image Plane module: geometry is unknown; an axial identity plane keeps viewers happy.
    ds.ImagePositionPatient = [0.0, 0.0, float(instance_number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = list(pixel_spacing) if pixel_spacing else [1.0, 1.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16  # the MR Image IOD allows only 16; 8-bit data keeps BitsStored 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = signed
    ds.BurnedInAnnotation = "NO"
    data = stored.tobytes()
    ds.PixelData = data + b"\0" if len(data) % 2 else data  # values have even length
    if label:
        ds.add_new(tag, _label_vr(tag), str(label))

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ORTHANC_CBMIR"
    ds.file_meta = meta
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """A Part 10 file (preamble, DICM, file meta) as bytes."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
