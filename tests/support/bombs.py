"""Hostile DICOM objects made on the fly: deflated files whose pixels inflate to far more
than their size (a "decompression bomb"), built as a stream so making one costs no memory."""
from __future__ import annotations

import struct
import zlib

import numpy as np
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from support.dicom_factory import MR_STORAGE, _base



def deflated_image(rows: int, columns: int, frames: int = 1, patient_id: str = "BOMB",
                   study_uid: str | None = None, series_uid: str | None = None,
                   label: str | None = None, noise: bool = False) -> bytes:
    """A deflated 16-bit MR of `frames` x rows x columns: zero pixels (a bomb) or, with
    `noise`, a small random pattern repeated (still compresses well, still decodes)."""
    ds = _base(MR_STORAGE, patient_id, study_uid or generate_uid(), series_uid or generate_uid(),
               "MR")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.InstanceNumber = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if label is not None:
        ds.ImageComments = label
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    size = rows * columns * frames * 2
    head = body.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", size)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [deflater.compress(head)]
    row = (np.random.default_rng(1).random(columns) * 4000).astype("<u2").tobytes() if noise \
        else bytes(columns * 2)
    block = row * max(1, min(rows, (8 << 20) // len(row)))
    left = size
    while left:
        piece = block[:left]
        out.append(deflater.compress(piece))
        left -= len(piece)
    out.append(deflater.flush())
    head_file = DicomBytesIO()
    head_file.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head_file, ds.file_meta)
    return head_file.getvalue() + b"".join(out)
