"""Preprocessing invariances seen through a real exported model (cosine of embeddings)."""
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from cbmir.core.decode import frames_from_dataset
from cbmir.core.embed import Embedder
from support.figshare_data import cosine, real_image, requires_figshare

pytestmark = requires_figshare


def embed(model, image):
    return Embedder(model).embed_images([image])[0]


def dicom_of(pixels: np.ndarray, photometric: str) -> Dataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype("<u2").tobytes()
    return dataset


def test_8_bit_16_bit_and_affine_copies_embed_alike(tiny_onnx):
    eight = real_image(0)
    assert eight.dtype == np.uint8
    reference = embed(tiny_onnx, eight)
    sixteen = (eight.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 257, eight.shape)
               ).astype(np.uint16)
    rescaled = eight.astype(np.float64) * 12.5 - 300.0
    for variant in (sixteen, rescaled):
        assert cosine(reference, embed(tiny_onnx, variant))[0] >= 0.999


def test_monochrome1_is_inverted_back(tiny_onnx):
    image = real_image(1).astype(np.uint16) * 16
    mono2 = frames_from_dataset(dicom_of(image, "MONOCHROME2"))[0]
    mono1 = frames_from_dataset(dicom_of(image.max() - image, "MONOCHROME1"))[0]
    assert cosine(embed(tiny_onnx, mono2), embed(tiny_onnx, mono1))[0] >= 0.999
    # Without the inversion the model would see a different picture (guards a blind model).
    assert cosine(embed(tiny_onnx, mono2), embed(tiny_onnx, image.max() - image))[0] < 0.99
    assert pydicom.__version__


def test_rgb_copy_embeds_like_grey(tiny_onnx):
    grey = real_image(2)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert cosine(embed(tiny_onnx, grey), embed(tiny_onnx, rgb))[0] >= 0.999


def test_non_square_image_is_padded_not_stretched(tiny_onnx):
    image = real_image(3)
    cropped = image[:, 64:-64]  # 512 x 384: same anatomy, narrower field of view
    padded = np.zeros_like(image)
    padded[:, 64:-64] = cropped
    assert cosine(embed(tiny_onnx, cropped), embed(tiny_onnx, padded))[0] >= 0.99
