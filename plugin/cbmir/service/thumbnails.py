"""GET /cbmir/thumbnail/{instance}[?frame=N&size=S]: a PNG of a stored image, from the plugin's decoder.

Why this route exists: Orthanc 1.10's own renderer (`/instances/{id}/preview`) gets some
pixel layouts wrong (BitsAllocated 16 / BitsStored 8 / HighBit 7 shows two half-width
copies of the top of the image), so the similar-cases panel would show scrambled pictures
for images the index handles right. Here the pixels come from `cbmir.core.decode` (the same
decoding the index and `cbmir embed` use) and are windowed the way the model sees them
(robust percentiles of `cbmir.core.preprocess`), so a thumbnail shows what was matched.
Errors are JSON like every /cbmir/ route: 404 unknown instance, 400 bad frame or size,
422 no pixels or pixels that cannot be decoded.
"""
from __future__ import annotations

import io

import numpy as np

from cbmir.core import decode
from cbmir.core.preprocess import robust_unit_range
from cbmir.service.gateway import NotFound, send_buffer, send_json, send_method_not_allowed
from cbmir.service.routes import resolve_instance
from cbmir.vectors.search import ApiError

DEFAULT_SIZE = 256  # longest side in pixels; the panel shows 72 px cards (144 on HiDPI screens)
MIN_SIZE, MAX_SIZE = 16, 1024
CACHE_CONTROL = "private, max-age=600"  # an instance's pixels do not change under its ID


def _integer(args: dict, name: str, default, low: int, high: int):
    value = args.get(name)
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if value is None or str(value).strip() == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ApiError(400, f"argument '{name}' must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(400, f"argument '{name}' must be in [{low}, {high}], got {number}")
    return number


def parse_args(args: dict) -> tuple[int, int]:
    """(frame, size) from the query arguments; frame 0 (as Orthanc's /preview) by default."""
    return (_integer(args, "frame", 0, 0, 100_000),
            _integer(args, "size", DEFAULT_SIZE, MIN_SIZE, MAX_SIZE))


def render_png(pixels: np.ndarray, size: int = DEFAULT_SIZE) -> bytes:
    """Display-ready pixels (2-D grey or (H, W, 3) colour) -> PNG whose longest side is at most
    `size`, windowed to the robust percentiles the model's preprocessing uses. Never upscales."""
    from PIL import Image

    array = np.nan_to_num(np.asarray(pixels, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    colour = array.ndim == 3 and array.shape[-1] in (3, 4)
    if not (array.ndim == 2 or colour) or min(array.shape[:2]) < 1:
        raise decode.UndecodableImage(f"cannot draw pixels of shape {array.shape}")
    height, width = array.shape[:2]
    scale = min(1.0, size / max(height, width))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [array[..., c] for c in range(3)] if colour else [array]
    if target != (width, height):
        channels = [np.asarray(Image.fromarray(np.ascontiguousarray(c), mode="F")
                               .resize(target, Image.Resampling.BILINEAR), dtype=np.float32)
                    for c in channels]
    resized = np.stack(channels, axis=-1) if colour else channels[0]
    grey_levels = np.rint(robust_unit_range(resized) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey_levels, mode="RGB" if colour else "L").save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail(gateway, engine, identifier: str, args: dict) -> bytes:
    """The PNG for an instance (Orthanc ID or SOPInstanceUID); ApiError for every failure."""

    frame, size = parse_args(args)
    instance = resolve_instance(gateway, engine, identifier)
    try:
        data = gateway.instance_dicom(instance)
    except NotFound:
        data = None
    if not data:
        raise ApiError(404, f"unknown instance {instance}", instance=instance)
    try:
        dataset = decode.read_dataset(bytes(data))
        count = decode.frame_count(dataset)
        if frame >= count:
            raise ApiError(400, f"instance {instance} has frames 0..{count - 1}, not {frame}",
                           instance=instance, frames=count)
        return render_png(decode.decode_frame(dataset, frame), size)
    except decode.NotAnImage as error:
        raise ApiError(422, f"instance {instance} has no image to draw: {error}",
                       instance=instance) from None
    except decode.UndecodableImage as error:
        raise ApiError(422, f"instance {instance} cannot be decoded: {error}",
                       instance=instance) from None
    except (ValueError, TypeError, ArithmeticError) as error:  # e.g. NumberOfFrames "abc"
        raise ApiError(422, f"instance {instance} cannot be read: {type(error).__name__}: "
                            f"{error}", instance=instance) from None


def answer(output, request: dict, handler, log) -> None:
    """GET only; the PNG from `handler()`, or the JSON error every /cbmir/ route gives."""

    try:
        if request.get("method") != "GET":
            send_method_not_allowed(output, "GET")
            return
        send_buffer(output, handler(), "image/png", {"Cache-Control": CACHE_CONTROL})
    except ApiError as error:
        send_json(output, error.status, error.body())
    except Exception as error:  # a request must never take Orthanc down
        log(f"CBMIR: thumbnail failed: {error!r}")
        send_json(output, 500, {"error": f"internal error: {type(error).__name__}: {error}",
                                "status": 500})
