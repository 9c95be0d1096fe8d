"""The manifest CSV (`path,label,patient_id,split`) and split lists, read one way.

Why one reader: `cbmir import`, `cbmir embed` and training all take the same file;
they must agree on what a row means (paths relative to the CSV, empty = unknown,
a UTF-8 BOM from spreadsheet exports tolerated) and fail with one error type.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("path", "label", "patient_id", "split")


class ManifestError(ValueError):
    """The manifest cannot be read or lacks what the caller needs (a column, a path)."""


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest; empty strings are unknown values."""
    path: Path
    label: str = ""
    patient_id: str = ""
    split: str = ""

    @property
    def key(self) -> str:
        return str(self.path)


def read_manifest(csv_path: str | Path, required: tuple[str, ...] = ("path",)) -> list[ManifestRow]:
    """Rows in file order, paths resolved against the CSV's folder; ManifestError when the
    file cannot be read, a `required` column is missing or a row has no path."""
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(f"{csv_path}: the manifest lacks column(s) {', '.join(missing)} "
                                    f"(columns: {','.join(COLUMNS)})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"cannot read manifest {csv_path}: {error}") from error
    result = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        relative = (row.get("path") or "").strip()
        if not relative:
            raise ManifestError(f"{csv_path}: row {number} has no path")
        result.append(ManifestRow(path=(csv_path.parent / relative).resolve(),
                                  **{column: (row.get(column) or "").strip()
                                     for column in COLUMNS[1:]}))
    return result


def parse_splits(text: str | list[str] | None) -> list[str]:
    """'fold1, fold2' or ['fold1', 'fold2,fold3'] -> ['fold1', 'fold2', 'fold3'] ([] for none)."""
    if not text:
        return []
    parts = [text] if isinstance(text, str) else list(text)
    return [s.strip() for part in parts for s in part.split(",") if s.strip()]
