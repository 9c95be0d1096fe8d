"""`cbmir embed` on a manifest that mixes DICOM files and pictures."""
from __future__ import annotations

import os

import numpy as np
import pytest

from cbmir.core.decode import read_image_file
from cbmir.core.embed import Embedder
from cbmir.tools.cli import main
from support.figshare_data import FIGSHARE, REPO, pick_rows, requires_figshare

DICOM_MR = REPO / ".." / "shared" / "data" / "dicom-brain-mr"
DICOM_FILES = ["dcm_qa_ts/3.dcm", "dcm_qa_ts/7.dcm", "example-dicom-structural/N2D_0100.dcm"]


@requires_figshare
@pytest.mark.skipif(not DICOM_MR.is_dir(), reason=f"needs the brain MR DICOM at {DICOM_MR}")
def test_embed_writes_dicom_and_picture_rows_in_manifest_order(tiny_onnx, tmp_path):
    paths = [DICOM_MR / name for name in DICOM_FILES] + [FIGSHARE / pick_rows(1)[0]["path"]]
    manifest = tmp_path / "mixed.csv"
    lines = ["path,label,patient_id,split"]
    lines += [f"{os.path.relpath(p.resolve(), tmp_path.resolve())},x,,all" for p in paths]
    manifest.write_text("\n".join(lines) + "\n")

    out = tmp_path / "vectors.npy"
    assert main(["embed", "--model", str(tiny_onnx), "--manifest", str(manifest), "--out", str(out),
                 "--quiet"]) == 0
    vectors = np.load(out)
    embedder = Embedder(tiny_onnx)
    assert vectors.shape == (len(paths), embedder.dim) and vectors.dtype == np.float32
    expected = embedder.embed_images([read_image_file(p) for p in paths])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    # Big endian (3.dcm) and JPEG-LS (7.dcm) hold the same slice: the same vector.
    assert float(vectors[0] @ vectors[1]) > 0.9999
