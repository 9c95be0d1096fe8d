"""The same picture in every pixel layout and transfer syntax a modality or converter may write.

Why: a decoder bug shows only on the layout it mishandles (Orthanc 1.10 reads
BitsAllocated 16 / BitsStored 8 as two half-width copies; a decoder that forgets
the palette, the unused high bits or the sign of 12-bit values gives another
picture). Tests that build their objects here exercise all of them without
../shared/data. Every layout carries, per frame, the id of the picture it shows,
so a test can say which stored frames must embed alike.

    files = layouts(patient_id="P", study_uid=..., series_uid=..., workdir=tmp)
    files["mono8_in_16"].data          # DICOM bytes
    files["mono8_in_16"].pictures      # ["A"]: one id per frame

Transfer syntaxes come from pydicom's encoders (RLE; JPEG-LS with pyjpegls, JPEG 2000 with
pylibjpeg-openjpeg, both in the `test` extra) and,
when dcmtk is installed, `dcmcjpeg` (JPEG lossless) and `dcmconv` (big endian,
deflated); those missing are left out (`available_syntaxes()` says which).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid)

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SOURCE_SHAPE = (256, 256)
ODD_SHAPE = (257, 511)  # rows, columns: 511 x 257, an odd number of 8-bit bytes


@dataclass
class Layout:
    name: str
    data: bytes
    pictures: list[str]  # picture id of each frame
    transfer_syntax: str = ExplicitVRLittleEndian
    expect_failure: str | None = None  # a reason fragment when the layout must be refused
    notes: dict = field(default_factory=dict)


def phantom(shape: tuple[int, int] = SOURCE_SHAPE, seed: int = 0) -> np.ndarray:
    """A brain-MRI-like 8-bit picture: skull ring, brain, ventricles, lesions, texture.
    Different seeds give pictures the model tells apart."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y, x = (y - rows / 2) / (rows / 2), (x - cols / 2) / (cols / 2)
    image = np.zeros(shape, np.float32)
    head = (x / 0.85) ** 2 + (y / 0.95) ** 2
    image[head < 1] = 0.9
    image[head < 0.85] = 0.45
    for _ in range(6):  # blobs of random size, place and brightness
        cy, cx = rng.uniform(-0.6, 0.6, 2)
        ry, rx = rng.uniform(0.05, 0.3, 2)
        blob = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
        image[blob & (head < 0.85)] = rng.uniform(0.05, 1.0)
    texture = np.asarray(Image.fromarray(rng.uniform(0, 1, (rows // 8 + 1, cols // 8 + 1))
                                         .astype(np.float32), mode="F")
                         .resize((cols, rows), Image.Resampling.BICUBIC))
    image = np.where(head < 1, image + 0.12 * (texture - 0.5), 0)
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def _dataset(pixels: bytes, rows: int, cols: int, *, ids: dict, allocated: int, stored: int,
             high: int | None = None, signed: int = 0, photometric: str = "MONOCHROME2",
             samples: int = 1, frames: int = 1, sop_class: str = MR_STORAGE,
             syntax: str = ExplicitVRLittleEndian, description: str = "") -> Dataset:
    # The factory's base (patient, study, series, file meta); imported here because
    # dicom_factory re-exports this module's builders.
    from support.dicom_factory import _base

    ds = _base(sop_class, ids["patient_id"], ids["study_uid"], ids["series_uid"], "MR")
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PatientName = f"Layouts^{ids['patient_id']}"
    ds.InstanceNumber = 1
    ds.SeriesDescription = description
    ds.ImageComments = ids.get("label", "layout")
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1 or sop_class == ENHANCED_MR_STORAGE:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored = allocated, stored
    ds.HighBit = stored - 1 if high is None else high
    ds.PixelRepresentation = signed
    ds.PixelData = pixels
    return ds


def to_bytes(ds: Dataset, implicit: bool = False) -> bytes:
    buffer = io.BytesIO()
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _mono(name, values, ids, pictures=("A",), extra: dict | None = None, **kwargs) -> Layout:
    values = np.asarray(values)
    frames = values.shape[0] if values.ndim == 3 else 1
    rows, cols = values.shape[-2:]
    ds = _dataset(values.tobytes(), rows, cols, ids=ids, frames=frames, description=name, **kwargs)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return Layout(name, to_bytes(ds), list(pictures))


def _rgb(source: np.ndarray) -> np.ndarray:
    """A tinted RGB version whose luminance is an affine function of the grey source."""
    grey = source.astype(np.float32)
    return np.stack([grey, grey * 0.85, grey * 0.6], axis=-1).round().astype(np.uint8)


def _palette(name, source, ids) -> Layout:
    """Indices through a scrambled grey palette: without the lookup the picture is noise."""
    permutation = np.random.default_rng(7).permutation(256)  # index -> grey level
    inverse = np.argsort(permutation)                         # grey level -> index
    ds = _dataset(inverse[source].astype(np.uint8).tobytes(), *source.shape, ids=ids,
                  allocated=8, stored=8, photometric="PALETTE COLOR", description=name)
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData",
                (permutation.astype(np.uint16) * 257).tobytes())
    return Layout(name, to_bytes(ds), ["A"])


def _ybr_jpeg(name, source, ids) -> Layout:
    """JPEG baseline, YBR_FULL_422 (4:2:2 chroma subsampling), as most colour JPEG DICOM is."""
    buffer = io.BytesIO()
    Image.fromarray(_rgb(source), "RGB").save(buffer, "JPEG", quality=95, subsampling=1)
    ds = _dataset(encapsulate([buffer.getvalue()]), *source.shape, ids=ids, allocated=8,
                  stored=8, photometric="YBR_FULL_422", samples=3, syntax=JPEGBaseline8Bit,
                  description=name)
    ds.LossyImageCompression = "01"
    return Layout(name, to_bytes(ds), ["A"], JPEGBaseline8Bit)


def _enhanced_mr(name, source, other, ids) -> Layout:
    """Enhanced MR, 3 frames, a rescale per frame in the functional groups: frame 1 is stored
    inverted with slope -1, so only a decoder that reads the per-frame rescale shows A."""
    stored = np.stack([source, 255 - source, other]).astype(np.uint16)
    ds = _dataset(stored.tobytes(), *source.shape, ids=ids, allocated=16, stored=16, frames=3,
                  sop_class=ENHANCED_MR_STORAGE, description=name)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20240101", "120000", "20240101120000"
    groups = []
    for slope, intercept in ((1, 0), (-1, 255), (2, -100)):
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        transform.RescaleType = "US"
        item = Dataset()
        item.PixelValueTransformationSequence = [transform]
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.SharedFunctionalGroupsSequence = [Dataset()]
    return Layout(name, to_bytes(ds), ["A", "A", "B"])


def _encoded(name, base: Layout, syntax: str) -> Layout:
    """`base` re-encoded with one of pydicom's encoders."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(base.data))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesDescription = name
    ds.compress(syntax, generate_instance_uid=False)
    return Layout(name, to_bytes(ds), list(base.pictures), syntax)


DCMTK = {"jpeg_lossless": ("dcmcjpeg", ["+e1"], "1.2.840.10008.1.2.4.70"),
         "big_endian": ("dcmconv", ["+tb"], "1.2.840.10008.1.2.2"),
         "deflated": ("dcmconv", ["+td"], "1.2.840.10008.1.2.1.99")}


def available_syntaxes() -> dict[str, bool]:
    return {name: shutil.which(tool) is not None for name, (tool, _, _) in DCMTK.items()}


def _encoder_available(syntax: str) -> bool:
    """pydicom can encode `syntax` here (JPEG-LS needs pyjpegls, JPEG 2000 pylibjpeg-openjpeg)."""
    from pydicom.pixels import get_encoder

    return get_encoder(syntax).is_available


ENCODED = {"rle_mono16": ("mono16", RLELossless),
           "rle_mono12_junk_high_bits": ("mono12_junk_high_bits", RLELossless),
           "rle_rgb": ("rgb", RLELossless), "rle_multi_frame": ("multi_frame", RLELossless),
           "jpeg_ls_mono16": ("mono16", JPEGLSLossless),
           "jpeg_ls_signed16": ("signed16_negative", JPEGLSLossless),
           "jpeg2000_mono16": ("mono16", JPEG2000Lossless),
           "jpeg2000_signed16": ("signed16_negative", JPEG2000Lossless)}
PLAIN = ["mono16", "mono8_in_16", "mono12", "mono12_junk_high_bits", "mono10_high_bit_9",
         "mono12_high_bit_15", "signed16_negative", "signed12_in_16_not_extended",
         "rescale_slope_intercept", "monochrome1", "mono8", "odd_size_511x257", "multi_frame",
         "enhanced_mr", "palette_color", "ybr_full_422_jpeg_baseline", "rgb",
         "rgb_planar_configuration_1", "implicit_little_endian"]
WITH_DCMTK = {"jpeg_lossless_mono16": "jpeg_lossless", "jpeg_lossless_mono12": "jpeg_lossless",
              "big_endian_mono16": "big_endian", "big_endian_mono8": "big_endian",
              "deflated_mono16": "deflated", "deflated_multi_frame": "deflated",
              "deflated_enhanced_mr": "deflated"}


def layout_names() -> list[str]:
    """Names `layouts()` makes on this machine, without making them (for parametrize)."""
    have = available_syntaxes()
    return PLAIN + [name for name, (_, syntax) in ENCODED.items() if _encoder_available(syntax)] \
        + [name for name, kind in WITH_DCMTK.items() if have[kind]]


def _dcmtk(name, base: Layout, kind: str, workdir: Path) -> Layout | None:
    import pydicom

    tool, options, syntax = DCMTK[kind]
    if shutil.which(tool) is None:
        return None
    ds = pydicom.dcmread(io.BytesIO(base.data))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesDescription = name
    source, target = workdir / f"{name}-in.dcm", workdir / f"{name}.dcm"
    source.write_bytes(to_bytes(ds))
    subprocess.run([tool, *options, str(source), str(target)], check=True, capture_output=True,
                   timeout=60)
    return Layout(name, target.read_bytes(), list(base.pictures), syntax)


def layouts(patient_id: str = "LAYOUTS", study_uid: str | None = None,
            series_uid: str | None = None, workdir: str | Path | None = None,
            source: np.ndarray | None = None) -> dict[str, Layout]:
    """Every layout of picture A (and, in multi-frame objects, B and A mirrored), fresh
    SOPInstanceUIDs on each call so several ways in can store them side by side."""
    ids = {"patient_id": patient_id, "study_uid": study_uid or generate_uid(),
           "series_uid": series_uid or generate_uid()}
    a = phantom(seed=0) if source is None else source
    b = phantom(a.shape, seed=1)
    a16 = a.astype(np.uint16)
    rng = np.random.default_rng(3)
    out: list[Layout] = [
        _mono("mono16", a16 * 257, ids, allocated=16, stored=16),
        _mono("mono8_in_16", a16, ids, allocated=16, stored=8),
        _mono("mono12", a16 * 16 + 8, ids, allocated=16, stored=12),
        _mono("mono12_junk_high_bits", (a16 * 16 + 8) | (rng.integers(0, 16, a.shape,
                                                                      dtype=np.uint16) << 12),
              ids, allocated=16, stored=12),
        _mono("mono10_high_bit_9", a16 * 4, ids, allocated=16, stored=10, high=9),
        _mono("mono12_high_bit_15", (a16 * 16 + 8) << 4, ids, allocated=16, stored=12, high=15),
        _mono("signed16_negative", (a16.astype(np.int16) * 64 - 8000), ids, allocated=16,
              stored=16, signed=1),
        _mono("signed12_in_16_not_extended",
              ((a16.astype(np.int16) * 16 - 2048).view(np.uint16) & 0x0FFF), ids, allocated=16,
              stored=12, signed=1),
        _mono("rescale_slope_intercept", a16 * 10, ids, allocated=16, stored=16,
              extra={"RescaleSlope": 0.25, "RescaleIntercept": -1000, "RescaleType": "US"}),
        _mono("monochrome1", (255 - a16) * 257, ids, allocated=16, stored=16,
              photometric="MONOCHROME1"),
        _mono("mono8", a, ids, allocated=8, stored=8),
        _mono("odd_size_511x257", phantom(ODD_SHAPE, seed=2), ids, pictures=["C"], allocated=8,
              stored=8),
        _mono("multi_frame", np.stack([a16, a16[:, ::-1], b.astype(np.uint16)]) * 257, ids,
              pictures=["A", "A-mirrored", "B"], allocated=16, stored=16),
        _enhanced_mr("enhanced_mr", a, b, ids),
        _palette("palette_color", a, ids),
        _ybr_jpeg("ybr_full_422_jpeg_baseline", a, ids),
    ]
    rgb = _rgb(a)
    rgb_layout = _dataset(rgb.tobytes(), *a.shape, ids=ids, allocated=8, stored=8,
                          photometric="RGB", samples=3, description="rgb")
    out.append(Layout("rgb", to_bytes(rgb_layout), ["A"]))
    planar = _dataset(np.moveaxis(rgb, -1, 0).tobytes(), *a.shape, ids=ids, allocated=8,
                      stored=8, photometric="RGB", samples=3, description="rgb_planar")
    planar.PlanarConfiguration = 1
    out.append(Layout("rgb_planar_configuration_1", to_bytes(planar), ["A"]))
    implicit = _dataset((a16 * 257).tobytes(), *a.shape, ids=ids, allocated=16, stored=16,
                        description="implicit_little_endian")
    out.append(Layout("implicit_little_endian", to_bytes(implicit, implicit=True), ["A"],
                      ImplicitVRLittleEndian))
    by_name = {layout.name: layout for layout in out}
    for name, (base, syntax) in ENCODED.items():
        if _encoder_available(syntax):
            by_name[name] = _encoded(name, by_name[base], syntax)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        for name, kind in WITH_DCMTK.items():
            base = name.split("_", 1)[1]  # multi_frame, enhanced_mr; else mono16, mono12, mono8
            base = base if base in by_name else name.split("_")[-1]
            made = _dcmtk(name, by_name[base], kind, Path(scratch))
            if made is not None:
                by_name[name] = made
    assert list(by_name) == layout_names(), "PLAIN / WITH_DCMTK out of date"
    return by_name


def undecodable_layouts(patient_id: str = "UNDECODABLE") -> dict[str, Layout]:
    """Objects Orthanc stores but no decoder can read for certain: each must end as a
    'failed' entry with its reason, never as a vector."""
    ids = {"patient_id": patient_id, "study_uid": generate_uid(), "series_uid": generate_uid()}
    a16 = phantom(seed=0).astype(np.uint16)
    high = _mono("rle_high_bit_15", (a16 * 16) << 4, ids, allocated=16, stored=12, high=15)
    rle = _encoded("rle_high_bit_15", high, RLELossless)
    rle.expect_failure = "HighBit"
    hsv = _dataset(np.stack([a16.astype(np.uint8)] * 3, -1).tobytes(), *a16.shape, ids=ids,
                   allocated=8, stored=8, photometric="HSV", samples=3, description="hsv")
    return {"rle_high_bit_15": rle,
            "hsv": Layout("hsv", to_bytes(hsv), ["A"], expect_failure="PhotometricInterpretation")}

