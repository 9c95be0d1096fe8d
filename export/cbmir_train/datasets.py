"""Manifest CSV -> preprocessed model inputs held in RAM.

Every image goes through `cbmir.core.decode.read_image_file` and then the one shared
`cbmir.core.preprocess.preprocess`, exactly as the plugin does at ingest time;
augmentation (see `augment`) then acts on those tensors. Preprocessing once and
keeping ~3k inputs in memory removes decoding from the training loop, which
matters with two CPU cores.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cbmir.core import decode, manifest
from cbmir.core import preprocess as preprocessing

# One row of the manifest (path, label, patient_id, split; `key` = the path as text).
Record = manifest.ManifestRow


def read_manifest(csv_path: str | Path) -> list[Record]:
    """Rows of a manifest with its `label` column (training needs labels); ManifestError if bad."""
    return manifest.read_manifest(csv_path, required=("path", "label"))


def select(records: list[Record], splits: list[str]) -> list[Record]:
    """Records whose split is one of `splits` (all records when `splits` is empty)."""
    if not splits:
        return list(records)
    known = {r.split for r in records}
    unknown = [s for s in splits if s not in known]
    if unknown:
        raise ValueError(f"splits {unknown} not in manifest (it has {sorted(known)})")
    wanted = set(splits)
    return [r for r in records if r.split in wanted]


def load_inputs(records: list[Record], size: int, cache_dir: str | Path | None = None,
                progress: bool = True) -> np.ndarray:
    """(N, 1, size, size) float32 model inputs through the shared preprocessing.

    With `cache_dir`, the array is stored under a name derived from the file
    list, the size and PREPROCESS_VERSION, so a changed recipe never reuses it.
    """
    cache_file = None
    if cache_dir is not None:
        digest = hashlib.sha1("\n".join(r.key for r in records).encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / (f"inputs-v{preprocessing.PREPROCESS_VERSION}-"
                                        f"{size}-{digest}.npy")
        if cache_file.is_file():
            return np.load(cache_file)
    inputs = np.empty((len(records), 1, size, size), dtype=np.float32)
    for index, record in enumerate(tqdm(records, desc="preprocess", unit="img",
                                        disable=not progress)):
        inputs[index] = preprocessing.preprocess(decode.read_image_file(record.path), size)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache_file, inputs)
    return inputs


class LabelCodec:
    """Label strings <-> contiguous integer codes (sorted, so stable across runs)."""

    def __init__(self, labels: list[str]):
        self.labels = sorted(set(labels))
        self.index = {label: code for code, label in enumerate(self.labels)}

    def encode(self, labels: list[str]) -> np.ndarray:
        return np.array([self.index[label] for label in labels], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)


def training_records(records: list[Record], splits: list[str], limit: int = 0) -> list[Record]:
    """The records a run trains on: its splits, and with `limit` a stratified subset."""
    chosen = select(records, splits)
    if limit and limit < len(chosen):
        # Stratified by label, evenly spaced within each: a small subset keeps every label.
        chosen = stratified_sample(chosen, limit)
    return chosen


def stratified_sample(records: list[Record], count: int, key=lambda r: r.label) -> list[Record]:
    """At most `count` records with every stratum (label by default) kept in proportion.

    Why: `--limit` makes small smoke or debugging runs; a plain prefix or even spacing
    of a manifest sorted by label can drop a rare label altogether. Each stratum gets
    its share by largest remainder (at least one while `count` allows), and within a
    stratum the picks are evenly spaced, so they span patients; manifest order is kept.
    """
    if count <= 0 or count >= len(records):
        return list(records)
    strata: dict = {}
    for position, record in enumerate(records):
        strata.setdefault(key(record), []).append(position)
    exact = {name: count * len(rows) / len(records) for name, rows in strata.items()}
    share = {name: min(len(strata[name]), max(1 if count >= len(strata) else 0, int(value)))
             for name, value in exact.items()}
    by_remainder = sorted(strata, key=lambda name: (exact[name] - int(exact[name]), name),
                          reverse=True)
    while sum(share.values()) > count:  # the "at least one" rule overshot: trim the largest
        largest = max(share, key=lambda name: (share[name], name))
        share[largest] -= 1
    for name in by_remainder * 2:
        if sum(share.values()) >= count:
            break
        if share[name] < len(strata[name]):
            share[name] += 1
    chosen = []
    for name, rows in strata.items():
        spacing = len(rows) / share[name] if share[name] else 0
        chosen += [rows[int(i * spacing)] for i in range(share[name])]
    return [records[i] for i in sorted(chosen)]
