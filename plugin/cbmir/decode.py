"""DICOM and image files -> display-ready 2-D pixel arrays (one per frame).

"Display-ready" means what `cbmir.preprocess.preprocess` expects: the Modality
LUT (RescaleSlope/Intercept) applied, MONOCHROME1 inverted, colour turned RGB.
pydicom with the pylibjpeg plugins decodes every syntax we meet (JPEG Lossless,
JPEG-LS, JPEG 2000, RLE, big endian); the plugin may try Orthanc's own decoder
first because it is faster.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = {".dcm", ".dicom", ""}


class NotAnImage(ValueError):
    """The object carries no pixels we can index (SR, PDF, presentation state, ...)."""


class UndecodableImage(ValueError):
    """The object claims pixels but they cannot be decoded (truncated, unsupported)."""


def read_dataset(data: bytes):
    """Parse DICOM bytes with pydicom; UndecodableImage when it is not DICOM at all."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except (InvalidDicomError, EOFError, OSError, ValueError, struct.error) as error:
        raise UndecodableImage(f"not a readable DICOM file: {error}") from error


def _to_display(frame: np.ndarray, dataset) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        frame = apply_modality_lut(frame, dataset).astype(np.float32, copy=False)
        if photometric == "MONOCHROME1":
            frame = frame.max() + frame.min() - frame
    return frame


def frames_from_dataset(dataset) -> list[np.ndarray]:
    """All frames of a pydicom dataset, display-ready. Raises NotAnImage / UndecodableImage."""
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise NotAnImage(f"no pixel data (SOP class {dataset.get('SOPClassUID', 'unknown')})")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom/pylibjpeg raise many types for broken data
        raise UndecodableImage(f"cannot decode pixel data: {error}") from error
    frames_count = int(dataset.get("NumberOfFrames", 1) or 1)
    frames = list(pixels) if frames_count > 1 else [pixels]
    # pydicom >= 3 already turns YBR colour into RGB in pixel_array.
    return [_to_display(np.asarray(f), dataset) for f in frames]


def decode_dicom_bytes(data: bytes) -> list[np.ndarray]:
    """Display-ready frames of a DICOM file given as bytes."""
    return frames_from_dataset(read_dataset(data))


def read_image_file(path: str | Path) -> np.ndarray:
    """First frame of a DICOM file, or a PNG/JPEG/TIFF image, as a display-ready array."""
    path = Path(path)
    data = path.read_bytes()
    if looks_like_dicom(data) or path.suffix.lower() in (".dcm", ".dicom"):
        return decode_dicom_bytes(data)[0]
    return read_picture_bytes(data)


def read_picture_bytes(data: bytes) -> np.ndarray:
    """PNG/JPEG/TIFF bytes -> 2-D grey or (H, W, 3) array. UndecodableImage otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA"):
                image = image.convert("RGB")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UndecodableImage(f"not a readable image: {error}") from error


def looks_like_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"
