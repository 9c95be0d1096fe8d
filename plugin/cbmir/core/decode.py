"""DICOM and image files -> display-ready 2-D pixel arrays (one per frame).

"Display-ready" means what `cbmir.core.preprocess.preprocess` expects: the stored
bits extracted (BitsStored/HighBit, junk in unused bits dropped, signed values
sign-extended), the Modality LUT (RescaleSlope/Intercept, per frame for
enhanced objects) applied, MONOCHROME1 inverted, PALETTE COLOR looked up,
colour turned RGB.

Why one path: the plugin's index, `POST /cbmir/query`, `cbmir embed` and
`cbmir verify` all decode through `iter_frames`, so the same file always gives
the same vector. Orthanc 1.10's own decoder is not used: it gets BitsAllocated
16 / BitsStored 8 wrong (docs/design.md, "Data path"). pydicom with the
pylibjpeg plugins decodes every transfer syntax we meet (JPEG baseline and
lossless, JPEG-LS, JPEG 2000, RLE, big endian). A layout this module cannot
decode for certain raises `UndecodableImage`, never a wrong picture.
"""
from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Photometric interpretations whose decoded frame is already RGB (pydicom turns YBR_FULL(_422)
# into RGB; JPEG 2000 decoders undo YBR_ICT / YBR_RCT themselves).
RGB_LIKE = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
LUMA_FIRST = {"YBR_PARTIAL_422", "YBR_PARTIAL_420"}  # channel 0 is luma: enough for grey


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


def _int(dataset, keyword: str, default: int | None = None) -> int | None:
    value = dataset.get(keyword, default)
    try:
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        raise UndecodableImage(f"{keyword} is not a number: {value!r}") from None


def _is_encapsulated(dataset) -> bool:
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return bool(syntax is not None and syntax.is_encapsulated)


def stored_values(array: np.ndarray, dataset, encapsulated: bool) -> np.ndarray:
    """The values of the stored bits only: BitsStored bits ending at HighBit, sign-extended
    when PixelRepresentation is 1. Why by hand: pydicom masks only native data whose HighBit
    is BitsStored - 1, while RLE keeps whatever the unused bits held, and old files place
    their bits elsewhere (HighBit 15 with BitsStored 12). Idempotent on clean data."""
    if array.dtype.kind not in "ui":
        return array  # float pixel data
    container = array.dtype.itemsize * 8
    allocated = _int(dataset, "BitsAllocated", container)
    stored = _int(dataset, "BitsStored", allocated)
    high = _int(dataset, "HighBit", stored - 1)
    if not 1 <= stored <= allocated or not stored - 1 <= high < allocated:
        raise UndecodableImage(f"impossible bit layout: BitsAllocated {allocated}, "
                               f"BitsStored {stored}, HighBit {high}")
    low = high + 1 - stored  # position of the lowest stored bit
    if low and encapsulated:
        raise UndecodableImage(f"BitsStored {stored} with HighBit {high} in compressed pixel "
                               "data: where the codec put the stored bits is ambiguous")
    if stored >= container:
        return array
    unsigned = np.array(array, dtype=f"u{array.dtype.itemsize}", copy=True) \
        if array.dtype.kind == "u" else array.view(f"u{array.dtype.itemsize}").copy()
    if low:
        unsigned >>= low
    spare = container - stored
    unsigned <<= spare
    if _int(dataset, "PixelRepresentation", 0) == 1:
        signed = unsigned.view(f"i{array.dtype.itemsize}")
        signed >>= spare  # arithmetic shift: sign extension
        return signed
    unsigned >>= spare
    return unsigned


def _frame_rescale(dataset, index: int) -> tuple[float, float] | None:
    """(slope, intercept) of frame `index` from the functional groups of an enhanced object
    (Pixel Value Transformation), per frame first, then shared; None when absent."""
    for keyword, item_index in (("PerFrameFunctionalGroupsSequence", index),
                                ("SharedFunctionalGroupsSequence", 0)):
        groups = dataset.get(keyword)
        if not groups or item_index >= len(groups):
            continue
        transform = groups[item_index].get("PixelValueTransformationSequence")
        if transform:
            item = transform[0]
            if "RescaleSlope" in item or "RescaleIntercept" in item:
                return float(item.get("RescaleSlope", 1) or 1), \
                    float(item.get("RescaleIntercept", 0) or 0)
    return None


def to_display(frame: np.ndarray, dataset, index: int = 0) -> np.ndarray:
    """One decoded frame (stored values) -> display-ready: Modality LUT, MONOCHROME1
    inverted, palette applied; RGB kept as (H, W, 3)."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = _int(dataset, "SamplesPerPixel", 1)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if samples != 1 or frame.ndim != 2:
            raise UndecodableImage(f"{photometric} with {samples} samples per pixel")
        rescale = _frame_rescale(dataset, index)
        if rescale is not None:
            frame = frame.astype(np.float32) * np.float32(rescale[0]) + np.float32(rescale[1])
        else:
            frame = apply_modality_lut(frame, dataset)
        frame = np.asarray(frame, dtype=np.float32)
        if photometric == "MONOCHROME1":
            frame = frame.max() + frame.min() - frame
        return frame
    if photometric == "PALETTE COLOR":
        if samples != 1 or frame.ndim != 2:
            raise UndecodableImage(f"PALETTE COLOR with {samples} samples per pixel")
        try:
            return apply_color_lut(frame, dataset)[..., :3]
        except Exception as error:  # missing/invalid LUT descriptors or data
            raise UndecodableImage(f"cannot apply the colour palette: {error}") from error
    if samples != 3 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise UndecodableImage(f"{photometric} with {samples} samples per pixel, "
                               f"decoded shape {frame.shape}")
    if photometric in RGB_LIKE:
        return frame
    if photometric in LUMA_FIRST:
        return frame[..., 0]
    raise UndecodableImage(f"unsupported PhotometricInterpretation {photometric!r}")


def has_pixel_data(dataset) -> bool:
    """Whether a data set holds a pixel data element (Pixel Data, Float or Double Float)."""
    return any(keyword in dataset for keyword in PIXEL_KEYWORDS)


def no_pixel_data(dataset) -> NotAnImage:
    """The one outcome of an object without pixels (SR, PDF, ...): the worker records it as
    'skipped', the routes answer 4xx; decoding paths raise it, never UndecodableImage."""
    return NotAnImage(f"no pixel data (SOP class {dataset.get('SOPClassUID', 'unknown')})")


def iter_frames(dataset) -> Iterator[np.ndarray]:
    """Display-ready frames of a pydicom dataset, decoded one at a time (memory: one frame).

    The one decoding path of the project. Raises NotAnImage (no pixel data) or
    UndecodableImage (truncated, unsupported codec or layout) while iterating.
    """
    from pydicom.pixels import iter_pixels

    if not has_pixel_data(dataset):
        raise no_pixel_data(dataset)
    # correct_unused_bits off: `stored_values` extracts the stored bits for every syntax.
    yield from _display_frames(iter_pixels(dataset, correct_unused_bits=False), dataset)


def iter_frames_from_bytes(data: bytes, header) -> Iterator[np.ndarray]:
    """Display-ready frames of a DICOM file given as bytes, holding one frame's pixels at a
    time: pydicom reads each frame's bytes from a file-like, so no copy of the whole pixel
    data is made; a deflated file is first inflated in chunks to a temporary file.

    `header` is the file's data set before its pixels (`limits.read_header`): it supplies
    the attributes of the corrections. Same frames as `iter_frames(read_dataset(data))`;
    NotAnImage when the file has no pixel data."""
    import tempfile

    from pydicom.pixels import iter_pixels
    from pydicom.uid import ExplicitVRLittleEndian

    from cbmir.core import limits

    syntax = str(header.file_meta.get("TransferSyntaxUID", ""))
    with tempfile.TemporaryFile(prefix="cbmir-") if syntax == limits.DEFLATED \
            else io.BytesIO(data) as source:
        options = {}
        if syntax == limits.DEFLATED:
            limits.inflate_to(data, source, limits.inflated_limit(header))
            source.seek(0)
            options["transfer_syntax_uid"] = ExplicitVRLittleEndian
        frames = iter_pixels(source, correct_unused_bits=False, **options)
        try:
            yield from _display_frames(frames, header, from_file=True)
        finally:
            frames.close()  # before `source` closes: pydicom seeks it back when it ends


def _display_frames(frames, dataset, from_file: bool = False) -> Iterator[np.ndarray]:
    encapsulated = _is_encapsulated(dataset)
    index = 0
    while True:
        try:
            raw = next(frames)
        except StopIteration:
            break
        except Exception as error:  # pydicom/pylibjpeg raise many types for broken data
            if from_file and index == 0 and isinstance(error, AttributeError) \
                    and "no pixel data" in str(error):  # pydicom's words (pixels.utils)
                raise no_pixel_data(dataset) from error  # the header has no pixels to look at
            raise UndecodableImage(f"cannot decode pixel data (frame {index}): {error}") from error
        yield to_display(stored_values(np.asarray(raw), dataset, encapsulated), dataset, index)
        index += 1
    if index == 0:
        raise UndecodableImage("pixel data holds no frame")


def frame_count(dataset) -> int:
    """NumberOfFrames as the header says (1 when absent); ValueError for a garbled value."""
    return int(dataset.get("NumberOfFrames", 1) or 1)


def decode_frame(dataset, index: int) -> np.ndarray:
    """Frame `index`, display-ready, with one frame in memory at a time: the frames before it
    are decoded in order and dropped, the ones after it never decoded (a query or thumbnail
    of a large multi-frame object). UndecodableImage when the pixel data holds fewer."""
    frame = next(itertools.islice(iter_frames(dataset), index, None), None)
    if frame is None:
        raise UndecodableImage(f"frame {index} is missing from the pixel data")
    return frame


def frames_from_dataset(dataset) -> list[np.ndarray]:
    """All frames of a pydicom dataset, display-ready. Raises NotAnImage / UndecodableImage."""
    return list(iter_frames(dataset))


def decode_dicom_bytes(data: bytes) -> list[np.ndarray]:
    """Display-ready frames of a DICOM file given as bytes."""
    return frames_from_dataset(read_dataset(data))


def read_image_file(path: str | Path) -> np.ndarray:
    """First frame of a DICOM file, or a PNG/JPEG/TIFF image, as a display-ready array."""
    path = Path(path)
    data = path.read_bytes()
    if looks_like_dicom(data) or path.suffix.lower() in (".dcm", ".dicom"):
        return next(iter_frames(read_dataset(data)))
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
