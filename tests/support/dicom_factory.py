"""Make DICOM test objects on the fly with pydicom (nothing from ../shared is committed).

`figshare_cases` turns figshare JPGs into labelled MR instances with synthetic
patients: consecutive figshare indices of one class are grouped into a patient
(one study, one series), the class goes into ImageComments (0020,4000).
One picture in every pixel layout and transfer syntax: `layouts()` (from
support/dicom_layouts.py, re-exported here).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from support.dicom_layouts import (Layout, layout_names, layouts, phantom,  # noqa: F401
                                   undecodable_layouts)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FIGSHARE = SHARED / "figshare-cheng"
DICOM_MR = SHARED / "dicom-brain-mr"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _base(sop_class: str, patient_id: str, study_uid: str, series_uid: str, modality: str,
          sop_uid: str | None = None) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = f"Test^{patient_id}"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mr_image(pixels: np.ndarray, patient_id: str, study_uid: str, series_uid: str,
             label: str | None = None, instance_number: int = 1, modality: str = "MR",
             series_description: str = "T1 post-contrast") -> bytes:
    """One MONOCHROME2 16-bit MR slice as DICOM bytes."""
    ds = _base(MR_STORAGE, patient_id, study_uid, series_uid, modality)
    pixels = np.asarray(pixels).astype(np.uint16)
    ds.SeriesDescription = series_description
    ds.InstanceNumber = instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    if label is not None:
        ds.ImageComments = label
    return to_bytes(ds)


def structured_report(patient_id: str = "SR-PATIENT") -> bytes:
    """A minimal Basic Text SR (no pixel data): must be skipped, never indexed."""
    ds = _base(BASIC_TEXT_SR, patient_id, generate_uid(), generate_uid(), "SR")
    ds.ValueType = "CONTAINER"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContinuityOfContent = "SEPARATE"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121060", "DCM", "History"
    ds.ConceptNameCodeSequence = [concept]
    return to_bytes(ds)


@dataclass
class Case:
    figshare_index: int
    label: str
    patient_id: str
    study_uid: str
    data: bytes


PHANTOM_LABELS = ("glioma", "meningioma", "pituitary")


def phantom_cases(per_label_patients: int = 3, slices: int = 2) -> list[Case]:
    """Like `figshare_cases`, from generated phantoms (tests/support/dicom_layouts.py), for a
    checkout without ../shared/data: labels are metadata only, every picture is distinct."""
    cases, seed = [], 100
    for label in PHANTOM_LABELS:
        for patient in range(per_label_patients):
            patient_id = f"PHANTOM-{label[:4].upper()}-{patient:02d}"
            study_uid, series_uid = generate_uid(), generate_uid()
            for number in range(1, slices + 1):
                seed += 1
                data = mr_image(phantom(seed=seed).astype(np.uint16) * 16, patient_id, study_uid,
                                series_uid, label=label, instance_number=number)
                cases.append(Case(seed, label, patient_id, study_uid, data))
    return cases


def figshare_cases(per_label_patients: int = 3, slices: int = 2) -> list[Case]:
    """Labelled MR instances from figshare JPGs: `per_label_patients` patients per class,
    `slices` consecutive figshare images each; phantoms (`phantom_cases`) when the figshare
    copy is absent, so tests that only need labelled images run anywhere."""
    manifest = FIGSHARE / "manifest.csv"
    if not manifest.is_file():
        return phantom_cases(per_label_patients, slices)
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    cases = []
    for label, items in sorted(by_label.items()):
        items.sort(key=lambda r: int(Path(r["path"]).stem))
        for patient in range(per_label_patients):
            patient_id = f"FIG-{label[:4].upper()}-{patient:02d}"
            study_uid, series_uid = generate_uid(), generate_uid()
            for number, row in enumerate(items[patient * slices:(patient + 1) * slices], 1):
                pixels = np.asarray(Image.open(FIGSHARE / row["path"]).convert("L"))
                data = mr_image(pixels.astype(np.uint16) * 16, patient_id, study_uid, series_uid,
                                label=label, instance_number=number)
                cases.append(Case(int(Path(row["path"]).stem), label, patient_id, study_uid, data))
    return cases
