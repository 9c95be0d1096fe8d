"""The one function that turns pixels into model input.

Training (`cbmir_train`), `cbmir embed` and the Orthanc plugin all call
`preprocess`; nothing else may normalise or resize pixels for the model.

Why this recipe: MR intensities are in arbitrary units, so the same slice may
arrive as 8-bit JPEG, 12/16-bit DICOM, or scaled and offset by a scanner.
Resizing first (linear) and then mapping robust percentiles to a fixed range
makes the result invariant to any positive affine intensity change and nearly
invariant to bit depth. The aspect ratio is kept; the short side is padded
with the background level (the low percentile, i.e. black).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# Bump when the output of `preprocess` changes: models record the version they
# were trained with and the plugin refuses a mismatch.
PREPROCESS_VERSION = 1
DEFAULT_INPUT_SIZE = 160
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
# Model input = (unit - MEAN) / STD, where unit is the [0, 1] robust-normalised image.
MEAN = 0.5
STD = 0.5


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """2-D float32 grey image from a 2-D grey or an (H, W, 3|4) colour array."""
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float32)
        array = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D image or an RGB image, got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"image too small: {array.shape}")
    return array.astype(np.float32, copy=False)


def _resize_keep_aspect(grey: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    height, width = grey.shape
    scale = size / max(height, width)
    new_h = max(1, round(height * scale))
    new_w = max(1, round(width * scale))
    if (new_h, new_w) == (height, width):
        return grey, (new_h, new_w)
    resized = Image.fromarray(grey, mode="F").resize((new_w, new_h), Image.Resampling.BILINEAR,
                                                      reducing_gap=None)
    return np.asarray(resized, dtype=np.float32), (new_h, new_w)


def robust_unit_range(grey: np.ndarray) -> np.ndarray:
    """Map the LOW..HIGH percentiles of `grey` to 0..1 and clip."""
    finite = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not high > low:
        return np.zeros_like(finite, dtype=np.float32)
    unit = (finite - low) / (high - low)
    return np.clip(unit, 0.0, 1.0, out=unit).astype(np.float32, copy=False)


def preprocess(pixels: np.ndarray, size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """Model input (1, size, size) float32 from a 2-D pixel array of any dtype and range.

    `pixels` must already be in display orientation: RescaleSlope/Intercept
    applied and MONOCHROME1 inverted (see `cbmir.core.decode`). RGB is turned grey.
    """
    grey = to_grey(pixels)
    resized, (new_h, new_w) = _resize_keep_aspect(grey, size)
    unit = robust_unit_range(resized)
    canvas = np.zeros((size, size), dtype=np.float32)
    top = (size - new_h) // 2
    left = (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = unit
    return ((canvas - MEAN) / STD)[None, :, :]


def preprocess_batch(images: list[np.ndarray], size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """Stack `preprocess` over several images: (N, 1, size, size) float32."""
    if not images:
        return np.zeros((0, 1, size, size), dtype=np.float32)
    return np.stack([preprocess(image, size) for image in images])
