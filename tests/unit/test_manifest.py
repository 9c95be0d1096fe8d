"""cbmir.core.manifest: the one manifest reader (import, embed, training) and split lists."""
from __future__ import annotations

from pathlib import Path

import pytest

from cbmir.core.manifest import ManifestError, ManifestRow, parse_splits, read_manifest


def _write(tmp_path, text: str, name: str = "m.csv", **options) -> Path:
    path = tmp_path / "data" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, **options)
    return path


def test_rows_in_file_order_with_paths_resolved_against_the_csv(tmp_path):
    csv_path = _write(tmp_path, "path,label,patient_id,split\n"
                                "images/1.jpg,glioma,P1,fold1\n"
                                " ../up/2.png , meningioma ,,fold2 \n"
                                "3.dcm,,,\n")
    rows = read_manifest(csv_path)
    assert rows == [
        ManifestRow((tmp_path / "data" / "images" / "1.jpg").resolve(), "glioma", "P1", "fold1"),
        ManifestRow((tmp_path / "up" / "2.png").resolve(), "meningioma", "", "fold2"),
        ManifestRow((tmp_path / "data" / "3.dcm").resolve())]
    assert rows[0].key == str(rows[0].path)


def test_only_the_path_column_is_needed_and_a_bom_is_tolerated(tmp_path):
    csv_path = _write(tmp_path, "path\nx.jpg\n", encoding="utf-8-sig")
    assert read_manifest(csv_path) == [ManifestRow((tmp_path / "data" / "x.jpg").resolve())]


@pytest.mark.parametrize("content,required,message", [
    ("file,label\nx.jpg,a\n", ("path",), r"lacks column\(s\) path"),
    ("path,split\nx.jpg,fold1\n", ("path", "label"), r"lacks column\(s\) label"),
    ("path,label\nx.jpg,a\n,b\n", ("path",), "row 3 has no path"),
    ("", ("path",), "lacks column"),
])
def test_what_a_caller_needs_is_checked(tmp_path, content, required, message):
    with pytest.raises(ManifestError, match=message):
        read_manifest(_write(tmp_path, content), required)


def test_unreadable_files_are_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "missing.csv")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(_write(tmp_path, "path\n\xff\xfe".encode("latin-1").decode("latin-1"),
                             encoding="latin-1"))
    assert issubclass(ManifestError, ValueError)


@pytest.mark.parametrize("text,expected", [
    ("fold1,fold2", ["fold1", "fold2"]),
    (" fold1 , , fold2 ", ["fold1", "fold2"]),
    (["fold1", "fold2,fold3"], ["fold1", "fold2", "fold3"]),
    ("", []), (None, []), ([], []),
])
def test_parse_splits(text, expected):
    assert parse_splits(text) == expected
