"""Query-side and database-side re-ranking from image retrieval, measured by `cbmir evaluate`.

Radenović et al. (the GeM authors) report gains from both on landmark retrieval:
- alpha-weighted query expansion (`expand_queries`, aQE): a query is replaced by the
  normalised sum of itself and its k nearest database vectors, each weighted by its
  cosine to the query raised to alpha;
- database-side augmentation (`augment_database`, DBA): every database vector is
  replaced the same way by its own k nearest database neighbours, once, offline.
Whether they help here (same-label mAP, and the most-alike measures of
`finegrained`) is an empirical question: a neighbour of the same type but another
patient pulls the query towards its type's centre, which helps labels and may hurt the
ordering within a type. numpy only, like `metrics`.
"""
from __future__ import annotations

import numpy as np

# (name, database k, query k, alpha): the variants `cbmir evaluate --rerank` reports
DEFAULT_VARIANTS = (("aQE k=2", 0, 2, 3.0), ("aQE k=5", 0, 5, 3.0), ("aQE k=10", 0, 10, 3.0),
                    ("DBA k=2", 2, 0, 3.0), ("DBA k=5", 5, 0, 3.0),
                    ("DBA k=2 + aQE k=2", 2, 2, 3.0))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _weighted_neighbours(similarities: np.ndarray, database: np.ndarray, k: int,
                         alpha: float) -> np.ndarray:
    """Per row, the sum of its k most similar database vectors weighted by max(cos, 0)^alpha."""
    k = min(k, similarities.shape[1])
    top = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(similarities, top, axis=1), 0.0, None) ** alpha
    return np.einsum("qk,qkd->qd", weights, database[top])


def expand_queries(queries: np.ndarray, database: np.ndarray, k: int, alpha: float = 3.0,
                   excluded: np.ndarray | None = None) -> np.ndarray:
    """aQE: (Q, D) unit vectors. `excluded` (Q, M) True where a database item may not be
    used (the query itself, its own patient: the same rule as the ranking's)."""
    queries = np.asarray(queries, np.float32)
    if k <= 0:
        return queries
    database = np.asarray(database, np.float32)
    similarities = queries @ database.T
    if excluded is not None:
        similarities = np.where(excluded, -np.inf, similarities)
    return _normalise(queries + _weighted_neighbours(similarities, database, k, alpha))


def augment_database(database: np.ndarray, k: int, alpha: float = 3.0,
                     groups: np.ndarray | None = None) -> np.ndarray:
    """DBA: (M, D) unit vectors, each the weighted sum of itself and its k nearest other
    database vectors. `groups` (e.g. patient ids): neighbours of the same group are not
    used, so a patient's own slices cannot reinforce each other."""
    database = np.asarray(database, np.float32)
    if k <= 0:
        return database
    similarities = database @ database.T
    np.fill_diagonal(similarities, -np.inf)
    if groups is not None:
        groups = np.asarray(["" if g is None else str(g) for g in groups], dtype=object)
        same = (groups[:, None] == groups[None, :]) & (groups[:, None] != "")
        similarities = np.where(same, -np.inf, similarities)
    return _normalise(database + _weighted_neighbours(similarities, database, k, alpha))


def rerank_report(vectors: np.ndarray, copies: np.ndarray | None, records, queries: list[str],
                  database: list[str], variants=DEFAULT_VARIANTS) -> list[dict]:
    """Per variant: mAP and P@k of the query splits against the database splits (the
    evaluation's own protocol), and the copy measure (perturbed query copies searched among
    query + database originals, as in `finegrained`), each after re-ranking."""
    from .finegrained import copy_ranks, split_rows, summarise_ranks
    from .metrics import exclusion_mask, retrieval_metrics

    query_rows, database_rows = split_rows(records, queries, database)
    q = [records[i] for i in query_rows]
    d = [records[i] for i in database_rows]
    excluded = exclusion_mask([r.key for r in q], [r.key for r in d],
                              [r.patient_id for r in q], [r.patient_id for r in d])
    originals_rows = query_rows + database_rows
    report = []
    for name, database_k, query_k, alpha in (("none", 0, 0, 0.0),) + tuple(variants):
        base = augment_database(vectors[database_rows], database_k, alpha,
                                [r.patient_id for r in d])
        expanded = expand_queries(vectors[query_rows], base, query_k, alpha, excluded)
        scores = retrieval_metrics(expanded, [r.label for r in q], base, [r.label for r in d],
                                   [r.key for r in q], [r.key for r in d],
                                   [r.patient_id for r in q], [r.patient_id for r in d])
        row = {"variant": name, "database_k": database_k, "query_k": query_k, "alpha": alpha,
               "mAP": scores["mAP"], **{k: scores[k] for k in scores if k.startswith("P@")}}
        if copies is not None:
            originals = augment_database(vectors[originals_rows], database_k, alpha,
                                         [records[i].patient_id for i in originals_rows])
            searched = expand_queries(copies, originals, query_k, alpha)
            row["copy"] = summarise_ranks(copy_ranks(searched, originals,
                                                     np.arange(len(query_rows))))
        report.append(row)
    return report


def markdown_section(report: list[dict]) -> str:
    lines = ["## Re-ranking (aQE, DBA; alpha 3)", "",
             "| variant | mAP | P@1 | P@10 | copy first | copy median rank |",
             "|---|---|---|---|---|---|"]
    for row in report:
        copy = row.get("copy") or {}
        lines.append(f"| {row['variant']} | {row['mAP']:.4f} | {row.get('P@1', 0):.4f} | "
                     f"{row.get('P@10', 0):.4f} | "
                     + (f"{copy['top1']:.3f} | {copy['median_rank']:g} |" if copy else "— | — |"))
    return "\n".join(lines) + "\n"
