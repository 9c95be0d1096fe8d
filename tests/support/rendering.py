"""Pictures and DICOM objects for the rendering tests (thumbnails, Orthanc's /preview).

Kept apart from dicom_factory.py (the layout matrix lives there): these tests need one
layout Orthanc 1.10 draws wrongly (8 bits stored in 16) and a way to compare a rendered
PNG with the source pixels."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.uid import generate_uid

from support.dicom_factory import MR_STORAGE, _base, to_bytes



def picture(height: int = 201, width: int = 243, colour: bool = False) -> np.ndarray:
    """An asymmetric 8-bit test picture (a bright disc off-centre, a block, a ramp): any
    half-width duplicate or shifted decode of it correlates badly with the original."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = 150.0 * np.exp(-(((x - width * 0.35) / (width * 0.2)) ** 2
                            + ((y - height * 0.6) / (height * 0.25)) ** 2))
    block = 60.0 * ((x > width * 0.7) & (x < width * 0.9) & (y > height * 0.1) & (y < height * 0.3))
    grey = np.clip(20.0 + disc + block + 25.0 * x / width, 0, 255).astype(np.uint8)
    if not colour:
        return grey
    return np.stack([grey, np.flipud(grey), (255 - grey) // 2], axis=-1).astype(np.uint8)


def eight_bits_in_sixteen(pixels: np.ndarray, modality: str = "MR", frames: int = 1) -> bytes:
    """MR instance with BitsAllocated 16 / BitsStored 8 / HighBit 7 (what the old importer and
    some converters write; Orthanc 1.10 decodes it wrongly, pydicom right). `frames` > 1 makes a
    multi-frame object whose frame i is `pixels` + 10 * i (clipped)."""
    ds = _base(MR_STORAGE, "RENDER-8IN16", generate_uid(), generate_uid(), modality)
    ds.InstanceNumber = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 8, 7, 0
    stack = [np.clip(pixels.astype(np.int32) + 10 * i, 0, 255) for i in range(frames)]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.stack(stack).astype("<u2").tobytes()
    return to_bytes(ds)


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image.convert("RGB") if image.mode not in ("L", "I;16", "I") else image)


def correlation(rendered: np.ndarray, source: np.ndarray) -> float:
    """Pearson correlation of a rendered picture with the source, after resizing the source to the
    rendered size (scaling and windowing do not change a correlation that is close to 1)."""
    rendered = np.asarray(rendered, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    if rendered.ndim == 3 and source.ndim == 2:
        source = np.repeat(source[..., None], rendered.shape[-1], axis=-1)
    if source.ndim == 3 and rendered.ndim == 2:
        rendered = np.repeat(rendered[..., None], source.shape[-1], axis=-1)
    if rendered.shape[:2] != source.shape[:2]:
        channels = source[..., None] if source.ndim == 2 else source
        size = (rendered.shape[1], rendered.shape[0])
        resized = [np.asarray(Image.fromarray(channels[..., c].astype(np.float32), mode="F")
                              .resize(size, Image.Resampling.BILINEAR)) for c in range(channels.shape[-1])]
        source = np.stack(resized, axis=-1) if source.ndim == 3 else resized[0]
    if rendered.shape != source.shape:
        return -1.0
    return float(np.corrcoef(rendered.reshape(-1), source.reshape(-1))[0, 1])
