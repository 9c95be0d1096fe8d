"""Fixtures for the export tests: a tiny manifest of real images, one tiny trained model."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.figshare_data import (FIGSHARE, FIGSHARE_MANIFEST, TINY_INPUT_SIZE, pick_rows,
                                   write_manifest)


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    """~30 real images: 2/3 'train', 1/3 'test' in every label."""
    if not FIGSHARE_MANIFEST.is_file():
        pytest.skip(f"needs the figshare images at {FIGSHARE}")
    rows = pick_rows()
    splits = ["test" if i % 3 == 2 else "train" for i in range(len(rows))]
    return write_manifest(tmp_path_factory.mktemp("data"), rows, splits)


@pytest.fixture(scope="session")
def tiny_run(tiny_manifest, tmp_path_factory) -> Path:
    """A run folder trained one epoch on the tiny manifest's 'train' split."""
    from cbmir_train.training import TrainConfig, fit

    out = tmp_path_factory.mktemp("run")
    fit(TrainConfig(manifest=str(tiny_manifest), out=str(out), train_splits=["train"], epochs=1,
                    batch_size=8, input_size=TINY_INPUT_SIZE, dim=32, progress=False, threads=2))
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run) -> Path:
    from cbmir_train.onnx_export import export_run

    path, _ = export_run(tiny_run, tiny_run / "tiny.onnx")
    return path
