"""Invariances of the shared preprocessing (pure numpy; the model-level checks live in tests/export)."""
import numpy as np
import pytest

from cbmir.core.preprocess import DEFAULT_INPUT_SIZE, MEAN, STD, preprocess, preprocess_batch

BACKGROUND = (0.0 - MEAN) / STD


def phantom(height=240, width=240, seed=0) -> np.ndarray:
    """A bright ellipse with texture on a black background, like an axial slice."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    inside = ((y - height / 2) / (height * 0.4)) ** 2 + ((x - width / 2) / (width * 0.35)) ** 2 < 1
    image = np.where(inside, 1000 + 400 * np.sin(x / 7.0) * np.cos(y / 11.0), 0.0)
    return image + inside * rng.normal(0, 30, image.shape)


def test_shape_dtype_and_range():
    out = preprocess(phantom().astype(np.uint16), 64)
    assert out.shape == (1, 64, 64) and out.dtype == np.float32
    assert out.min() >= (0 - MEAN) / STD - 1e-6 and out.max() <= (1 - MEAN) / STD + 1e-6


def test_default_size():
    assert preprocess(phantom()).shape == (1, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)


@pytest.mark.parametrize("scale,offset", [(3.0, 0.0), (0.01, 500.0), (7.5, -2000.0)])
def test_positive_affine_intensity_change_is_invisible(scale, offset):
    image = phantom()
    np.testing.assert_allclose(preprocess(image * scale + offset, 96), preprocess(image, 96),
                               atol=1e-3)


def test_8_bit_and_16_bit_copies_agree():
    image = phantom()
    sixteen = np.round((image - image.min()) / np.ptp(image) * 65535).astype(np.uint16)
    eight = np.round(sixteen / 257.0).astype(np.uint8)
    difference = np.abs(preprocess(sixteen, 96) - preprocess(eight, 96))
    assert difference.mean() < 0.01 and difference.max() < 0.05


def test_rgb_grey_equals_grey():
    grey = np.round(phantom() / 1600 * 255).clip(0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_allclose(preprocess(rgb, 64), preprocess(grey, 64), atol=1e-5)


def test_aspect_ratio_is_kept_and_padded_with_background():
    wide = phantom(100, 200)
    out = preprocess(wide, 64)[0]
    # 100x200 -> 32x64 centred: rows 0..15 and 48..63 are padding.
    assert np.all(out[:16] == BACKGROUND) and np.all(out[48:] == BACKGROUND)
    assert out[16:48].max() > BACKGROUND


def test_padding_an_image_to_square_changes_little():
    image = phantom(240, 160)
    padded = np.zeros((240, 240))
    padded[:, 40:200] = image
    difference = np.abs(preprocess(image, 96) - preprocess(padded, 96))
    assert difference.mean() < 0.02


def test_constant_and_non_finite_images_do_not_crash():
    assert np.all(preprocess(np.full((50, 50), 7.0), 32) == BACKGROUND)
    image = phantom()
    image[0, 0] = np.nan
    assert np.isfinite(preprocess(image, 32)).all()


def test_rejects_non_images():
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4, 4, 4)), 32)
    with pytest.raises(ValueError):
        preprocess(np.zeros((1, 10)), 32)


def test_batch_is_a_stack_of_single_calls():
    images = [phantom(seed=1), phantom(120, 200, seed=2)]
    batch = preprocess_batch(images, 48)
    assert batch.shape == (2, 1, 48, 48)
    np.testing.assert_array_equal(batch[1], preprocess(images[1], 48))
    assert preprocess_batch([], 48).shape == (0, 1, 48, 48)
