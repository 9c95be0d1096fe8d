"""Query parameters and the similar-case search (filters, grouping), without Orthanc.

Why separate from routes: the filtering and best-slice-per-study grouping are
the behaviour users see, so they are pure functions over (index, store) that
unit tests drive directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_K = 1000
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class ApiError(Exception):
    """An answer other than 200: status code, message and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict:
        return {"error": self.message, "status": self.status, **self.extra}


@dataclass(frozen=True)
class Params:
    k: int = 10
    exclude_same_patient: bool = True
    group_by: str = "study"
    modality: str | None = None
    label: str | None = None
    frame: int | None = None


def parse_params(args: dict) -> Params:
    """Query arguments (str values; unknown keys ignored) -> Params, ApiError(400) if bad."""
    def text(name):
        value = args.get(name)
        if isinstance(value, (bytes, bytearray)):
            value = value.decode("utf-8", "replace")
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def integer(name, default, low, high):
        value = text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ApiError(400, f"argument '{name}' must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ApiError(400, f"argument '{name}' must be in [{low}, {high}], got {number}")
        return number

    exclude = text("exclude_same_patient")
    if exclude is not None and exclude.lower() not in TRUE | FALSE:
        raise ApiError(400, f"argument 'exclude_same_patient' must be true or false, got {exclude!r}")
    group_by = (text("group_by") or "study").lower()
    if group_by not in ("study", "instance"):
        raise ApiError(400, f"argument 'group_by' must be 'study' or 'instance', got {group_by!r}")
    return Params(k=integer("k", 10, 1, MAX_K),
                  exclude_same_patient=exclude is None or exclude.lower() in TRUE,
                  group_by=group_by, modality=text("modality"), label=text("label"),
                  frame=integer("frame", None, 0, 100_000))


def thumbnail_url(row: dict) -> str:
    """The plugin's own renderer (cbmir.service.thumbnails), not Orthanc's /preview, which draws
    some layouts wrongly (8 bits stored in 16)."""
    if row.get("frame"):
        return f"/cbmir/thumbnail/{row['instance']}?frame={row['frame']}"
    return f"/cbmir/thumbnail/{row['instance']}"


def result_entry(row: dict, score: float) -> dict:
    return {"instance": row["instance"], "frame": row["frame"],
            "sop_instance_uid": row["sop_uid"], "study_instance_uid": row["study_uid"],
            "series_instance_uid": row["series_uid"], "patient_id": row["patient_id"],
            "study_date": row["study_date"], "series_description": row["series_description"],
            "modality": row["modality"], "label": row["label"] or None,
            "score": round(float(score), 6), "thumbnail": thumbnail_url(row),
            "orthanc_study": row["orthanc_study"]}


def _accept(row: dict, params: Params, query: dict) -> bool:
    if query.get("instance") and row["instance"] == query["instance"]:
        return False
    if params.exclude_same_patient and query.get("patient_id") is not None \
            and row["patient_id"] == query["patient_id"]:
        return False
    if params.modality and row["modality"].upper() != params.modality.upper():
        return False
    if params.label and (row["label"] or "").lower() != params.label.lower():
        return False
    return True


def find_similar(index, store, vector: np.ndarray, params: Params, query: dict) -> list[dict]:
    """At most k results, best first, one per study (or per instance), filters applied.

    Asks the index for more neighbours (x4 each round) until k groups pass the
    filters or the index is exhausted. Each result carries its `percentile` in the
    archive's scores for this query (percentile.py) beside the raw cosine `score`.
    """
    wanted = max(params.k * 5, 50)
    total = len(index)
    while True:
        hits = index.search(vector, wanted)
        rows = store.metadata([row_id for row_id, _ in hits])
        results, raw, seen, own = [], [], set(), set()
        for row_id, score in hits:
            row = rows.get(row_id)
            if row is not None and query.get("instance") and row["instance"] == query["instance"]:
                own.add(row_id)  # the query image: not its own neighbour, nor in its percentiles
            if row is None or not _accept(row, params, query):
                continue
            key = row["study_uid"] if params.group_by == "study" else row["instance"]
            if key in seen:
                continue
            seen.add(key)
            results.append(result_entry(row, score))
            raw.append(score)
            if len(results) == params.k:
                break
        if len(results) == params.k or wanted >= total:
            return _with_percentiles(index, vector, results, raw, own)
        wanted *= 4


def _with_percentiles(index, vector, results: list[dict], raw: list[float], own: set) -> list[dict]:
    values = index.reference.percentiles(vector, raw, own) if results else []
    for result, value in zip(results, values):
        result["percentile"] = None if np.isnan(value) else float(value)
    return results
