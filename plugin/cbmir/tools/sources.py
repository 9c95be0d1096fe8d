"""Where importable images come from: a manifest CSV or a folder of figshare `.mat` files.

Why a module of its own: the importer and `cbmir demo` share it, and the figshare
files need care (MATLAB v7.3 = HDF5, arrays stored transposed, the patient ID as
uint16 character codes). Listing (`collect`) is cheap; pixels are read per item
(`load_item`) so a large set streams through the importer.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cbmir.core import manifest

# cjdata.label codes of Cheng et al.'s figshare set.
FIGSHARE_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}
PICTURE_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
MAT_SERIES = "T1 post-contrast (figshare .mat)"


class SourceError(ValueError):
    """An image or a `.mat` folder cannot be listed or read (a bad manifest: ManifestError)."""


@dataclass(frozen=True)
class SourceItem:
    """One image to import, before its pixels are read. Empty strings count as unknown."""
    path: Path
    label: str | None = None
    patient_id: str | None = None
    split: str | None = None
    instance_number: int = 1


@dataclass
class FigshareRecord:
    """The `cjdata` struct of one figshare file, arrays in MATLAB's (row, column) order."""
    image: np.ndarray
    label: int
    pid: str
    tumor_border: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tumor_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass
class SourceImage:
    """What `cbmir.tools.dicomize.make_instance` needs for one slice."""
    pixels: np.ndarray
    label: str | None
    patient_id: str
    source_key: str
    series_description: str
    instance_number: int
    path: Path


def _instance_number(path: Path, position: int) -> int:
    """figshare files are numbered (`123.mat`, `123.jpg`): keep that number, else the position."""
    return int(path.stem) if path.stem.isdigit() else position + 1


def read_manifest(csv_path: str | Path) -> list[SourceItem]:
    """Rows of a `path,label,patient_id,split` CSV (cbmir.core.manifest); ManifestError if bad."""
    return [SourceItem(path=row.path, label=row.label or None, patient_id=row.patient_id or None,
                       split=row.split or None, instance_number=_instance_number(row.path, position))
            for position, row in enumerate(manifest.read_manifest(csv_path))]


def _h5py():
    import h5py
    return h5py


def _mat_kind(path: Path) -> str:
    """'cjdata' (an image), 'cvind' (fold table) or '' for other files."""
    h5py = _h5py()
    if not h5py.is_hdf5(path):
        return ""
    with h5py.File(path, "r") as mat:
        return "cjdata" if "cjdata" in mat else "cvind" if "cvind" in mat else ""


def read_folds(path: str | Path) -> dict[int, str]:
    """figshare index (1-based) -> 'foldN' from Cheng's `cvind.mat` (v7.3)."""
    with _h5py().File(path, "r") as mat:
        folds = np.asarray(mat["cvind"][()]).reshape(-1)
    return {index + 1: f"fold{int(fold)}" for index, fold in enumerate(folds)}


def scan_mat_dir(directory: str | Path) -> list[SourceItem]:
    """Every figshare image `.mat` under `directory`, in index order; splits from a cvind file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory} is not a directory")
    images: list[Path] = []
    folds: dict[int, str] = {}
    for path in sorted(directory.rglob("*.mat")):
        # Numbered files are the images; anything else is probed (fold table or stray file).
        kind = "cjdata" if path.stem.isdigit() else _mat_kind(path)
        if kind == "cjdata":
            images.append(path)
        elif kind == "cvind":
            folds = read_folds(path)
    images.sort(key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, str(p)))
    return [SourceItem(path=path, split=folds.get(int(path.stem)) if path.stem.isdigit() else None,
                       instance_number=_instance_number(path, position))
            for position, path in enumerate(images)]


def collect(source: str | Path, splits: set[str] | None = None,
            limit: int | None = None) -> list[SourceItem]:
    """Items of a manifest CSV or a `.mat` folder, kept to `splits`, at most `limit`."""
    source = Path(source)
    items = scan_mat_dir(source) if source.is_dir() else read_manifest(source)
    if splits:
        items = [item for item in items if item.split in splits]
    return items[:limit] if limit is not None else items


def _chars(codes: np.ndarray) -> str:
    return "".join(chr(int(c)) for c in np.asarray(codes).reshape(-1) if int(c)).strip()


def read_figshare_mat(path: str | Path) -> FigshareRecord:
    """The `cjdata` struct of a MATLAB v7.3 figshare file (HDF5 arrays are transposed)."""
    path = Path(path)
    h5py = _h5py()
    if not h5py.is_hdf5(path):
        raise SourceError(f"{path}: not a MATLAB v7.3 (HDF5) file")
    try:
        with h5py.File(path, "r") as mat:
            if "cjdata" not in mat:
                raise SourceError(f"{path}: no 'cjdata' struct (not a figshare brain tumour file)")
            group = mat["cjdata"]
            image = np.asarray(group["image"][()]).T
            label = int(np.asarray(group["label"][()]).reshape(-1)[0])
            pid = _chars(group["PID"][()]) if "PID" in group else ""
            border = (np.asarray(group["tumorBorder"][()]).T.reshape(-1)
                      if "tumorBorder" in group else np.zeros(0))
            mask = np.asarray(group["tumorMask"][()]).T if "tumorMask" in group else np.zeros((0, 0))
    except (OSError, KeyError, IndexError) as error:
        raise SourceError(f"{path}: unreadable figshare file: {error}") from error
    return FigshareRecord(image=image, label=label, pid=pid, tumor_border=border, tumor_mask=mask)


def derived_patient_id(digest: str) -> str:
    """A stable ID for an image that came without one (one patient per file)."""
    return "CBMIR-" + digest[:12].upper()


def load_item(item: SourceItem) -> SourceImage:
    """Read the pixels and fill in label, patient ID and identity of one item."""
    path = item.path
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error}") from error
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    if suffix == ".mat":
        record = read_figshare_mat(path)
        pixels = record.image
        label = item.label or FIGSHARE_LABELS.get(record.label, str(record.label))
        patient_id = item.patient_id or record.pid or derived_patient_id(digest)
        series = MAT_SERIES
    elif suffix in PICTURE_SUFFIXES:
        from cbmir.core.decode import UndecodableImage, read_picture_bytes

        try:
            pixels = read_picture_bytes(data)
        except UndecodableImage as error:
            raise SourceError(f"{path}: {error}") from error
        label = item.label
        patient_id = item.patient_id or derived_patient_id(digest)
        series = f"Imported {PICTURE_SUFFIXES[suffix]} images"
    else:
        raise SourceError(f"{path}: unsupported file type {suffix or '(none)'} "
                          "(expected .jpg, .jpeg, .png or figshare .mat)")
    return SourceImage(pixels=pixels, label=label, patient_id=patient_id, source_key=digest,
                       series_description=series, instance_number=item.instance_number, path=path)
