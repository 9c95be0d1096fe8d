"""Bad and unusual DICOM objects made on the fly with pydicom (nothing from ../shared is copied).

Why here and not in tests/support: these objects exist to break the plugin
(encapsulated PDF, RGB, multi-frame, a 4096x4096 slice, truncation); the
retrieval tests need none of them.
"""
from __future__ import annotations

import numpy as np
from pydicom.uid import generate_uid

from support.dicom_factory import _base, mr_image, structured_report, to_bytes

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>"
       b"endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def _new(patient: str, modality: str = "MR", sop_class: str = MR_STORAGE):
    return _base(sop_class, patient, generate_uid(), generate_uid(), modality)


def encapsulated_pdf(modality: str = "DOC") -> bytes:
    """An Encapsulated PDF object: no pixels, must be skipped with a reason."""
    ds = _new(f"PDF-{modality}", modality, ENCAPSULATED_PDF)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = PDF + (b"\0" if len(PDF) % 2 else b"")
    ds.DocumentTitle = "report"
    ds.BurnedInAnnotation = "NO"
    return to_bytes(ds)


def rgb_mr(size: int = 128) -> bytes:
    ds = _new("RGB")
    rng = np.random.default_rng(3)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (rng.random((size, size, 3)) * 255).astype(np.uint8).tobytes()
    return to_bytes(ds)


def multi_frame_mr(frames: int = 3, size: int = 64) -> bytes:
    ds = _new("MULTI")
    rng = np.random.default_rng(4)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (rng.random((frames, size, size)) * 4000).astype(np.uint16).tobytes()
    return to_bytes(ds)


def huge_mr(size: int = 4096) -> bytes:
    """A 4096x4096 16-bit slice (32 MiB of pixels)."""
    pixels = (np.add.outer(np.arange(size), np.arange(size)) % 4096).astype(np.uint16)
    return mr_image(pixels, "HUGE", generate_uid(), generate_uid())


def small_mr(patient: str = "SMALL", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return mr_image((rng.random((64, 64)) * 4000).astype(np.uint16), patient, generate_uid(),
                    generate_uid())


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[:int(len(data) * keep)]


__all__ = ["encapsulated_pdf", "rgb_mr", "multi_frame_mr", "huge_mr", "small_mr", "truncated",
           "structured_report"]
