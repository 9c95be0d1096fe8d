"""cbmir.tools.sources: manifests, figshare .mat v7.3 files (synthetic fixtures), identities."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from cbmir.core.manifest import ManifestError
from cbmir.tools import sources

MAT_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def write_figshare_mat(path, image, label, pid):
    """A file laid out like figshare's cjdata files: MATLAB v7.3, column-major (transposed)."""
    rows, cols = image.shape
    mask = np.zeros_like(image, dtype=np.uint8)
    mask[rows // 4: rows // 2, cols // 3: cols // 2] = 1
    with h5py.File(path, "w", userblock_size=512) as mat:
        group = mat.create_group("cjdata")
        group["image"] = np.asarray(image, dtype=np.int16).T
        group["label"] = np.array([[float(label)]])
        group["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)
        group["tumorBorder"] = np.array([[10.0], [12.0], [11.0], [13.0]])
        group["tumorMask"] = mask.T
    with open(path, "r+b") as handle:
        handle.write(MAT_HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM")
    return path


def write_cvind(path, folds):
    with h5py.File(path, "w", userblock_size=512) as mat:
        mat["cvind"] = np.asarray(folds, dtype=np.float64).reshape(1, -1)


def _image(seed, shape=(24, 20)):
    return np.random.default_rng(seed).integers(0, 900, shape).astype(np.int16)


def test_read_figshare_mat_undoes_matlab_transpose(tmp_path):
    image = _image(0)
    path = write_figshare_mat(tmp_path / "5.mat", image, 3, "MR0401")
    record = sources.read_figshare_mat(path)
    assert record.image.shape == (24, 20) and record.image.dtype == np.int16
    np.testing.assert_array_equal(record.image, image)
    assert (record.label, record.pid) == (3, "MR0401")
    assert record.tumor_mask.shape == (24, 20) and record.tumor_mask[6, 7] == 1
    assert record.tumor_border.tolist() == [10.0, 12.0, 11.0, 13.0]


def test_load_mat_item_takes_label_and_patient_from_the_file(tmp_path):
    path = write_figshare_mat(tmp_path / "12.mat", _image(1), 1, "100360")
    item = sources.collect(tmp_path)[0]
    loaded = sources.load_item(item)
    assert (loaded.label, loaded.patient_id, loaded.instance_number) == ("meningioma", "100360", 12)
    assert loaded.series_description == sources.MAT_SERIES
    assert loaded.source_key == sources.load_item(item).source_key  # stable identity
    override = sources.load_item(sources.SourceItem(path=path, label="other", patient_id="X9"))
    assert (override.label, override.patient_id) == ("other", "X9")


def test_mat_dir_listing_orders_by_index_reads_folds_and_skips_strays(tmp_path):
    write_figshare_mat(tmp_path / "2.mat", _image(2), 3, "P2")
    write_figshare_mat(tmp_path / "1.mat", _image(1), 1, "P1")
    (tmp_path / "sub").mkdir()
    write_figshare_mat(tmp_path / "sub" / "10.mat", _image(10), 2, "P10")
    write_cvind(tmp_path / "cvind.mat", [1, 2] + [5] * 7 + [3])
    with h5py.File(tmp_path / "other.mat", "w") as mat:
        mat["x"] = np.zeros(3)
    (tmp_path / "notes.txt").write_text("ignore me")
    items = sources.collect(tmp_path)
    assert [i.path.name for i in items] == ["1.mat", "2.mat", "10.mat"]
    assert [i.split for i in items] == ["fold1", "fold2", "fold3"]
    assert [i.path.name for i in sources.collect(tmp_path, splits={"fold2", "fold3"})] == \
        ["2.mat", "10.mat"]
    assert len(sources.collect(tmp_path, limit=2)) == 2


def test_manifest_with_pictures_and_a_mat_row(tmp_path):
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.full((16, 16), 100, np.uint8), mode="L").save(images / "7.jpg")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "scan.png")
    write_figshare_mat(images / "3.mat", _image(3), 2, "PX")
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text("path,label,patient_id,split\n"
                        "images/7.jpg,glioma,,fold1\n"
                        "images/scan.png,pituitary,PAT-1,fold2\n"
                        "images/3.mat,,,fold1\n")
    items = sources.collect(manifest)
    assert [(i.label, i.patient_id, i.split, i.instance_number) for i in items] == [
        ("glioma", None, "fold1", 7), ("pituitary", "PAT-1", "fold2", 2), (None, None, "fold1", 3)]
    jpg, png, mat = (sources.load_item(i) for i in items)
    assert jpg.pixels.shape == (16, 16) and jpg.series_description == "Imported JPEG images"
    assert jpg.patient_id.startswith("CBMIR-") and jpg.patient_id == sources.load_item(items[0]).patient_id
    assert png.patient_id == "PAT-1" and png.series_description == "Imported PNG images"
    assert (mat.label, mat.patient_id) == ("glioma", "PX")
    assert [i.path.name for i in sources.collect(manifest, splits={"fold1"})] == ["7.jpg", "3.mat"]


@pytest.mark.parametrize("content,message", [
    ("file,label\nx.jpg,a\n", "path"),
    ("path,label\n,a\n", "no path"),
])
def test_bad_manifests_are_reported(tmp_path, content, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(ManifestError, match=message):
        sources.collect(manifest)


def test_unreadable_files_raise_source_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "old.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    for name in ("bad.jpg", "old.mat", "x.gif", "missing.png"):
        with pytest.raises(sources.SourceError):
            sources.load_item(sources.SourceItem(path=tmp_path / name))
    with pytest.raises(ManifestError):
        sources.collect(tmp_path / "nope.csv")
