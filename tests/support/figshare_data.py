"""Real figshare images for the export tests: picks, manifests, similarity.

A module of its own (not conftest.py) because several test folders have a conftest and
`from conftest import ...` would pick whichever was imported first."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIGSHARE = REPO / ".." / "shared" / "data" / "figshare-cheng"
FIGSHARE_MANIFEST = FIGSHARE / "manifest.csv"
TINY_INPUT_SIZE = 96
IMAGES_PER_LABEL = 10

requires_figshare = pytest.mark.skipif(
    not FIGSHARE_MANIFEST.is_file(),
    reason=f"needs the figshare images at {FIGSHARE} (../shared/data beside the repository)")


def figshare_rows() -> list[dict]:
    with FIGSHARE_MANIFEST.open(newline="") as handle:
        return list(csv.DictReader(handle))


def pick_rows(per_label: int = IMAGES_PER_LABEL) -> list[dict]:
    """Evenly spaced rows of each label, so the pick spans patients and folds."""
    rows = figshare_rows()
    picked = []
    for label in sorted({r["label"] for r in rows}):
        of_label = [r for r in rows if r["label"] == label]
        step = len(of_label) // per_label
        picked += of_label[::step][:per_label]
    return picked


def write_manifest(folder: Path, rows: list[dict], splits: list[str]) -> Path:
    """Manifest in `folder` whose relative paths point at the figshare images."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id", "split"])
        for row, split in zip(rows, splits):
            target = os.path.relpath((FIGSHARE / row["path"]).resolve(), folder.resolve())
            writer.writerow([target, row["label"], "", split])
    return path


def real_image(index: int = 0) -> np.ndarray:
    from cbmir.core.decode import read_image_file

    return read_image_file(FIGSHARE / pick_rows()[index]["path"])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
