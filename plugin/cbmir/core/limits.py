"""Bounded memory for stored instances: read the header first, refuse what is too large.

Why: a 0.5 MB deflated DICOM can declare 4 frames of 8192 x 8192 and inflate to
512 MiB; pydicom's `dcmread` inflates a deflated file whole, even with
`stop_before_pixels`, and decoding then multiplies that. So the worker reads
only the header (a deflated stream is inflated in chunks, up to the pixel data
tag and never past `MAX_HEADER_BYTES`), checks rows x columns (x frames) against
`CBMIR.MaxFramePixels` / `CBMIR.MaxInstancePixels`, and records anything larger
as "skipped: too large" before a single pixel is decoded. Frames much larger
than the model input are shrunk by block averaging right after decoding, so
preprocessing never copies a huge frame several times.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

MAX_HEADER_BYTES = 16 * 1024 * 1024  # a header (everything before the pixels) larger is refused
CHUNK = 1024 * 1024
DEFLATED = "1.2.840.10008.1.2.1.99"
PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")  # (7FE0,0010/08/09)


class TooLarge(Exception):
    """The instance declares more pixels than the configured limits (or a huge header)."""


class BadHeader(ValueError):
    """Not a readable DICOM header."""


def _read(data, **kwargs):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview))
                               else data, stop_before_pixels=True, **kwargs)
    except (InvalidDicomError, EOFError, OSError, ValueError, struct.error, KeyError) as error:
        raise BadHeader(f"not a readable DICOM file: {error}") from error


def read_header(data: bytes, max_header_bytes: int = MAX_HEADER_BYTES):
    """pydicom Dataset of everything before the pixel data, reading a bounded amount."""
    import pydicom

    original = data  # a bytes object is parsed in place: BytesIO shares its buffer
    data = memoryview(data).cast("B")
    stream = io.BytesIO(data)
    pydicom.filereader.read_preamble(stream, force=True)
    try:
        file_meta = pydicom.filereader._read_file_meta_info(stream)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on junk
        raise BadHeader(f"not a readable DICOM file: {error}") from error
    if str(file_meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return _read(original if isinstance(original, bytes) else bytes(data))
    # Deflated: inflate chunk by chunk; whenever a pixel data tag may have arrived, parse the
    # inflated prefix (explicit VR little endian) element by element. Only a parse that
    # stops *at* a pixel data element counts: the same four bytes inside an earlier value
    # (a hostile name, say) are read as that value, so they cannot cut the header short.
    start = stream.tell()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    prefix = bytearray()
    pending = bytes(data[start:])
    searched = 0
    while True:
        chunk = inflater.decompress(pending, CHUNK)
        pending = inflater.unconsumed_tail
        prefix += chunk
        ended = not chunk and not pending
        if ended or any(prefix.find(tag, max(0, searched - 4)) >= 0 for tag in PIXEL_TAGS):
            dataset, at_pixels = _parse_prefix(bytes(prefix))
            if at_pixels or ended:
                dataset.file_meta = file_meta
                return dataset
        searched = len(prefix)
        if len(prefix) > max_header_bytes:
            raise TooLarge(f"too large: no pixel data within the first {max_header_bytes} "
                           f"bytes of the inflated data set")


def _stop_at_pixels(tag, vr, length) -> bool:
    return tag in (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _parse_prefix(prefix: bytes):
    """(dataset, stopped at a pixel data element) for an explicit VR LE data set prefix."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    stream = DicomBytesIO(prefix)
    stream.is_little_endian, stream.is_implicit_VR = True, False
    try:
        dataset = read_dataset(stream, False, True, stop_when=_stop_at_pixels)
    except (EOFError, OSError, ValueError, struct.error, KeyError) as error:
        raise BadHeader(f"not a readable deflated data set: {error}") from error
    position = stream.tell()
    return dataset, position + 12 <= len(prefix) and prefix[position:position + 4] in PIXEL_TAGS


def frame_pixels(dataset) -> int:
    """Values in one frame as the header declares them: rows x columns x samples."""
    return (int(dataset.get("Rows", 0) or 0) * int(dataset.get("Columns", 0) or 0)
            * int(dataset.get("SamplesPerPixel", 1) or 1))


def check_size(dataset, max_frame_pixels: int, max_instance_pixels: int) -> None:
    """TooLarge with a clear reason when the header declares more pixels than allowed."""
    rows = int(dataset.get("Rows", 0) or 0)
    columns = int(dataset.get("Columns", 0) or 0)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    frame = frame_pixels(dataset)
    what = f"{frames} frame(s) of {rows} x {columns}" + (f" x {samples}" if samples > 1 else "")
    if frame > max_frame_pixels:
        raise TooLarge(f"too large: {what}: {frame:,} pixels per frame exceed "
                       f"CBMIR.MaxFramePixels={max_frame_pixels:,}")
    if frame * frames > max_instance_pixels:
        raise TooLarge(f"too large: {what}: {frame * frames:,} pixels exceed "
                       f"CBMIR.MaxInstancePixels={max_instance_pixels:,}")


def reduce(frame: np.ndarray, size: int, factor_of: int = 8) -> np.ndarray:
    """Shrink a frame by block averaging while it stays >= `factor_of` x the model input.

    Why: `preprocess` makes float copies of its input before resizing it to `size`;
    for a 4096 x 4096 frame that is hundreds of MiB. Averaging blocks first keeps
    every later copy small, and changes nothing for ordinary frames (at input 128 a frame
    is left alone below 2048 px: every MR slice, most CT and CR)."""
    height, width = frame.shape[:2]
    step = max(height, width) // (factor_of * size)
    if step < 2:
        return frame
    h, w = height // step * step, width // step * step
    blocks = frame[:h, :w].reshape(h // step, step, w // step, step, *frame.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def inflate_to(data: bytes, file, max_bytes: int) -> None:
    """Write a deflated DICOM file to `file` as explicit VR little endian: the bytes up to
    the deflated stream (preamble, file meta) as they are, then the data set inflated in
    CHUNK pieces. Why: pydicom inflates a deflated file whole in memory; on disk, the
    pixels can be read one frame at a time. TooLarge when it inflates past `max_bytes`."""
    import pydicom

    stream = io.BytesIO(data)
    pydicom.filereader.read_preamble(stream, force=True)
    pydicom.filereader._read_file_meta_info(stream)
    start = stream.tell()
    view = memoryview(data).cast("B")
    file.write(view[:start])
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, written = view[start:], 0
    while pending:
        chunk = inflater.decompress(pending, CHUNK)
        pending = inflater.unconsumed_tail
        if not chunk:
            break
        written += len(chunk)
        if written > max_bytes:
            raise TooLarge(f"too large: the deflated data set inflates past {max_bytes:,} bytes")
        file.write(chunk)


def inflated_limit(dataset) -> int:
    """Most bytes a deflated data set may inflate to: its declared pixels plus headroom."""
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    allocated = int(dataset.get("BitsAllocated", 16) or 16)
    return frame_pixels(dataset) * frames * max(1, -(-allocated // 8)) + 2 * MAX_HEADER_BYTES
