"""Retrieval metrics in numpy (no torch: the plugin side and ONNX evaluation use them).

Relevant = same label. Average precision is taken over the whole database
ranking. A query never retrieves itself (same item key) nor, where patient ids
are known, any image of its own patient: adjacent slices would flatter the score.
"""
from __future__ import annotations

import numpy as np

DEFAULT_KS = (1, 5, 10)


def exclusion_mask(query_keys, database_keys, query_patients=None, database_patients=None):
    """(Q, M) bool: True where database item must be left out of the query's ranking."""
    query_keys = np.asarray(query_keys, dtype=object)
    database_keys = np.asarray(database_keys, dtype=object)
    mask = query_keys[:, None] == database_keys[None, :]
    if query_patients is not None and database_patients is not None:
        qp = np.asarray(["" if p is None else str(p) for p in query_patients], dtype=object)
        dp = np.asarray(["" if p is None else str(p) for p in database_patients], dtype=object)
        mask |= (qp[:, None] == dp[None, :]) & (qp[:, None] != "")
    return mask


def rank_relevance(similarities: np.ndarray, query_labels, database_labels,
                   excluded: np.ndarray | None = None) -> list[np.ndarray]:
    """Per query, the relevance (bool) of the database items in decreasing similarity order."""
    similarities = np.asarray(similarities, dtype=np.float64)
    query_labels = np.asarray(query_labels)
    database_labels = np.asarray(database_labels)
    rankings = []
    for row in range(similarities.shape[0]):
        keep = np.ones(similarities.shape[1], bool) if excluded is None else ~excluded[row]
        scores = similarities[row, keep]
        relevant = database_labels[keep] == query_labels[row]
        order = np.argsort(-scores, kind="stable")
        rankings.append(relevant[order])
    return rankings


def average_precision(relevance: np.ndarray) -> float:
    """AP of one ranked relevance list: mean of precision@k at each relevant position."""
    relevance = np.asarray(relevance, dtype=bool)
    hits = relevance.sum()
    if hits == 0:
        return 0.0
    precision_at = np.cumsum(relevance) / np.arange(1, len(relevance) + 1)
    return float(precision_at[relevance].sum() / hits)


def precision_at_k(relevance: np.ndarray, k: int) -> float:
    """Fraction of the top k that is relevant (k larger than the list counts missing as wrong)."""
    relevance = np.asarray(relevance, dtype=bool)
    return float(relevance[:k].sum() / k)


def precision_recall_curve(rankings: list[np.ndarray], points: int = 101):
    """Mean interpolated precision at `points` evenly spaced recall levels."""
    recall_levels = np.linspace(0.0, 1.0, points)
    curves = []
    for relevance in rankings:
        relevance = np.asarray(relevance, dtype=bool)
        hits = relevance.sum()
        if hits == 0:
            continue
        cumulative = np.cumsum(relevance)
        precision = cumulative / np.arange(1, len(relevance) + 1)
        recall = cumulative / hits
        # Interpolated precision: best precision at any recall >= r.
        best_after = np.maximum.accumulate(precision[::-1])[::-1]
        index = np.searchsorted(recall, recall_levels, side="left")
        curves.append(best_after[np.minimum(index, len(best_after) - 1)])
    if not curves:
        return recall_levels, np.zeros_like(recall_levels)
    return recall_levels, np.mean(curves, axis=0)


def retrieval_metrics(query_vectors, query_labels, database_vectors, database_labels,
                      query_keys=None, database_keys=None, query_patients=None,
                      database_patients=None, ks=DEFAULT_KS) -> dict:
    """mAP, P@k (overall and per label) for cosine retrieval of unit vectors."""
    query_vectors = np.asarray(query_vectors, dtype=np.float32)
    database_vectors = np.asarray(database_vectors, dtype=np.float32)
    similarities = query_vectors @ database_vectors.T
    excluded = None
    if query_keys is not None and database_keys is not None:
        excluded = exclusion_mask(query_keys, database_keys, query_patients, database_patients)
    rankings = rank_relevance(similarities, query_labels, database_labels, excluded)
    aps = np.array([average_precision(r) for r in rankings])
    precisions = {k: np.array([precision_at_k(r, k) for r in rankings]) for k in ks}
    labels = np.asarray(query_labels)
    per_label = {}
    for label in sorted(set(labels.tolist())):
        chosen = labels == label
        per_label[str(label)] = {"queries": int(chosen.sum()), "mAP": float(aps[chosen].mean()),
                                 **{f"P@{k}": float(precisions[k][chosen].mean()) for k in ks}}
    recall, precision = precision_recall_curve(rankings)
    return {"queries": int(len(aps)), "database": int(database_vectors.shape[0]),
            "mAP": float(aps.mean()) if len(aps) else 0.0,
            **{f"P@{k}": float(precisions[k].mean()) if len(aps) else 0.0 for k in ks},
            "per_label": per_label,
            "pr_curve": {"recall": recall.round(4).tolist(), "precision": precision.round(4).tolist()}}
