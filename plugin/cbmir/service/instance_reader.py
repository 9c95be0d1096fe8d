"""Reads one stored instance for the ingest worker: its header, the metadata a row keeps,
and its frames (decoded lazily, one at a time).

Why its own module: the worker's lanes (cbmir.service.lanes) read instances in parallel;
this is the part each lane runs, and it touches Orthanc only through the gateway, never
the vector store (the worker thread alone writes that).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cbmir.core import decode, limits
from cbmir.service.gateway import NotFound


class Skip(Exception):
    """Not for this index (other modality, no pixels): recorded once as 'skipped'."""


class Gone(Exception):
    """The instance was deleted from Orthanc before the worker reached it."""


@dataclass
class StoredInstance:
    meta: dict  # the row's metadata (cbmir.vectors.store.Record fields)
    frames: Iterator[np.ndarray]  # display-ready frames, decoded one at a time
    frame_pixels: int  # pixels of one frame, from the header (before any decoding)


def element_text(value) -> str:
    """A DataElement or plain value as text; multi-values joined with a backslash."""
    value = getattr(value, "value", value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def dataset_text(dataset, keyword: str) -> str:
    return element_text(dataset.get(keyword))


def read_instance(gateway, config, instance: str, fingerprint: str) -> StoredInstance:
    """Metadata and frames of a stored instance; raises Gone, Skip, limits.TooLarge or
    decode errors (also later, while iterating the frames).
    `fingerprint` was read before the file: an overwrite between the two leaves an old
    fingerprint beside new pixels (re-embedded once more), never the reverse."""
    try:
        dicom = gateway.instance_dicom(instance)
    except NotFound as error:
        raise Gone(instance) from error  # deleted since it was queued
    # The header alone first (bounded, also for deflated files): a size over the limits
    # is refused before any pixel is decoded (cbmir.core.limits).
    try:
        dataset = limits.read_header(dicom)
    except limits.BadHeader as error:
        raise decode.UndecodableImage(str(error)) from error
    parents = orthanc_ids(dataset)
    if parents.get("instance") != instance:  # unusual tags: ask Orthanc (2 more calls)
        try:
            series = gateway.instance(instance)["ParentSeries"]
            study = gateway.instance_study(instance)
        except NotFound as error:
            raise Gone(instance) from error
        parents = {"series": series, "study": study.get("ID", ""),
                   "patient": study.get("ParentPatient", "")}
    group, element = config.label_tag
    label_element = dataset.get((group << 16) | element)
    meta = {"sop_uid": dataset_text(dataset, "SOPInstanceUID"),
            "study_uid": dataset_text(dataset, "StudyInstanceUID"),
            "series_uid": dataset_text(dataset, "SeriesInstanceUID"),
            "patient_id": dataset_text(dataset, "PatientID"),
            "modality": dataset_text(dataset, "Modality").upper(),
            "series_description": dataset_text(dataset, "SeriesDescription"),
            "study_date": dataset_text(dataset, "StudyDate"),
            "label": element_text(label_element),
            "orthanc_series": parents["series"], "orthanc_study": parents["study"],
            "orthanc_patient": parents["patient"], "fingerprint": fingerprint}
    if not config.accepts_modality(meta["modality"]):
        raise Skip(f"modality {meta['modality'] or '(none)'} not in CBMIR.Modalities")
    limits.check_size(dataset, config.max_frame_pixels, config.max_instance_pixels)
    # One frame's pixels in memory at a time, also for deflated files (cbmir.core.decode).
    return StoredInstance(meta, decode.iter_frames_from_bytes(dicom, dataset),
                          limits.frame_pixels(dataset))


def _orthanc_hash(text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def orthanc_ids(dataset) -> dict:
    """Orthanc's resource IDs of an instance, computed as Orthanc does (SHA-1 of the UIDs).

    Why: asking Orthanc (/instances/{id}, /instances/{id}/study) takes its database
    lock twice per image while uploads wait for the same lock; the caller checks the
    computed instance ID against the real one and asks Orthanc when they differ.
    """
    keys = [dataset_text(dataset, k) for k in
            ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    return {level: _orthanc_hash("|".join(keys[:n])) for n, level in
            ((1, "patient"), (2, "study"), (3, "series"), (4, "instance"))}
