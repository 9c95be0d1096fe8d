"""Fine-grained similarity: does the embedding order images *within* a type?

mAP and P@k only ask for the right label. A radiologist wants the most alike
case, which a model that squeezes every type to one point ("class collapse")
cannot give even at mAP 1.0. Three measures, all numpy (ONNX evaluation needs
no torch):

(a) `copy_ranks`: each query image is perturbed the way a second acquisition of
    the same slice differs (`perturb_reacquisition`: 4-8 degrees of rotation,
    3-8 % smaller, a small shift, gamma 0.8-1.2; seeded, so every model sees the
    same copies) and searched among the originals; rank 1 = its own original first.
(b) `own_patient_first`: with the query's own patient allowed in the database
    (only the query image itself is left out), how often the top hit is another
    slice of the same patient. Needs patient ids; None without them.
(c) `score_spread`: median cosine of same-type and other-type pairs, and the span
    of a query's top-10 scores; a collapsed type has same-type cosines near 1 and
    a top-10 span near 0.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

ROTATION_DEGREES = (4.0, 8.0)
SHRINK_FRACTION = (0.03, 0.08)
MAX_SHIFT_FRACTION = 0.03
GAMMA = (0.8, 1.2)
DEFAULT_SEED = 12


def reacquisition_parameters(count: int, seed: int = DEFAULT_SEED) -> list[dict]:
    """Per-image perturbation parameters, drawn in a fixed order from `seed`."""
    rng = np.random.default_rng(seed)
    params = []
    for _ in range(count):
        params.append({
            "angle": float(rng.uniform(*ROTATION_DEGREES) * rng.choice([-1.0, 1.0])),
            "scale": float(1.0 - rng.uniform(*SHRINK_FRACTION)),
            "shift": tuple(float(v) for v in rng.uniform(-MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION, 2)),
            "gamma": float(rng.uniform(*GAMMA)),
        })
    return params


def perturb_reacquisition(pixels: np.ndarray, angle: float, scale: float,
                          shift: tuple[float, float], gamma: float) -> np.ndarray:
    """The raw 2-D image as a second acquisition might show it (before `preprocess`).

    Rotation by `angle` degrees about the centre, content shrunk by `scale` (< 1
    = smaller), shifted by `shift` (fractions of width, height), intensities
    raised to `gamma` on the image's own [min, max] range. Background is filled
    with the image minimum, as padding on a scanner would be.
    """
    grey = np.asarray(pixels, dtype=np.float32)
    if grey.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {grey.shape}")
    low, high = float(grey.min()), float(grey.max())
    unit = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
    height, width = unit.shape
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    shift_x, shift_y = shift[0] * width, shift[1] * height
    theta = math.radians(angle)
    # PIL maps each output pixel to an input pixel: input = M (output - centre - shift) + centre,
    # with M = R(-theta) / scale, so the content appears rotated by theta and `scale` times larger.
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    a, b, d, e = cos, sin, -sin, cos
    ox, oy = centre_x + shift_x, centre_y + shift_y
    c = centre_x - a * ox - b * oy
    f = centre_y - d * ox - e * oy
    moved = Image.fromarray(unit, mode="F").transform(
        (width, height), Image.Transform.AFFINE, (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR, fillcolor=0.0)
    unit = np.clip(np.asarray(moved, dtype=np.float32), 0.0, 1.0) ** gamma
    return unit * (high - low) + low


def copy_ranks(copies: np.ndarray, originals: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each copy's own original (row `truth[i]` of `originals`).

    Ties count against the copy (an original scoring equal to the true one ranks
    ahead of it), so a fully collapsed embedding cannot look good.
    """
    scores = np.asarray(copies, np.float64) @ np.asarray(originals, np.float64).T
    own = scores[np.arange(len(truth)), truth]
    others = scores >= own[:, None]
    others[np.arange(len(truth)), truth] = False
    return others.sum(axis=1) + 1


def summarise_ranks(ranks: np.ndarray) -> dict:
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return {"copies": 0, "top1": None, "top5": None, "median_rank": None, "mrr": None}
    return {"copies": int(len(ranks)), "top1": float(np.mean(ranks == 1)),
            "top5": float(np.mean(ranks <= 5)), "median_rank": float(np.median(ranks)),
            "mrr": float(np.mean(1.0 / ranks))}


def own_patient_first(vectors: np.ndarray, patients: list[str], query_rows: list[int],
                      candidate_rows: list[int]) -> dict:
    """How often a query's best hit (itself excluded) is another slice of its own patient.

    Only queries whose patient has another image among the candidates count.
    Returns {"queries": n, "rate": r} or rate None with a reason when there are
    no patient ids.
    """
    patients = np.asarray(["" if p is None else str(p) for p in patients], dtype=object)
    if not any(patients[i] for i in query_rows):
        return {"queries": 0, "rate": None, "reason": "no patient ids in the manifest"}
    candidates = np.asarray(candidate_rows)
    vectors = np.asarray(vectors, np.float64)
    hits, counted = 0, 0
    for row in query_rows:
        if not patients[row]:
            continue
        pool = candidates[candidates != row]
        if not np.any(patients[pool] == patients[row]):
            continue
        scores = vectors[pool] @ vectors[row]
        best = pool[int(np.argmax(scores))]
        counted += 1
        hits += bool(patients[best] == patients[row])
    return {"queries": counted, "rate": (hits / counted) if counted else None}


def score_spread(query_vectors: np.ndarray, query_labels, database_vectors: np.ndarray,
                 database_labels, top: int = 10) -> dict:
    """Median same-type / other-type cosine and the median span of each query's top scores."""
    scores = np.asarray(query_vectors, np.float64) @ np.asarray(database_vectors, np.float64).T
    same = np.asarray(query_labels)[:, None] == np.asarray(database_labels)[None, :]
    top_scores = -np.sort(-scores, axis=1)[:, :top]
    return {"median_same_type_cosine": float(np.median(scores[same])) if same.any() else None,
            "median_other_type_cosine": float(np.median(scores[~same])) if (~same).any() else None,
            "median_top10_span": float(np.median(top_scores[:, 0] - top_scores[:, -1])),
            "median_top1_score": float(np.median(top_scores[:, 0]))}


def markdown_section(result: dict) -> str:
    """The fine-grained block of evaluation.md."""
    lines = ["## Fine-grained similarity (within a type)", ""]
    copies = result.get("copy", {})
    for scope, row in copies.items():
        if row.get("top1") is None:
            continue
        lines.append(f"- Perturbed copy finds its original first ({scope}, {row['database']} "
                     f"originals): **{row['top1']:.3f}** (top-5 {row['top5']:.3f}, median rank "
                     f"{row['median_rank']:g}, MRR {row['mrr']:.3f}, {row['copies']} copies)")
    own = result.get("own_patient_first", {})
    if own.get("rate") is None:
        lines.append(f"- Own patient's other slice ranks first: n/a ({own.get('reason', 'no data')})")
    else:
        lines.append(f"- Own patient's other slice ranks first: **{own['rate']:.3f}** "
                     f"({own['queries']} queries)")
    spread = result.get("spread", {})
    if spread:
        lines.append(f"- Score spread: median same-type cosine {spread['median_same_type_cosine']:.4f}, "
                     f"other types {spread['median_other_type_cosine']:.4f}; median top-10 span "
                     f"{spread['median_top10_span']:.4f} (top-1 score {spread['median_top1_score']:.4f})")
    lines += ["", f"Perturbation: {result.get('perturbation', '')}"]
    return "\n".join(lines) + "\n"


PERTURBATION_TEXT = (f"rotation {ROTATION_DEGREES[0]:g}-{ROTATION_DEGREES[1]:g} degrees (either "
                     f"sign), {SHRINK_FRACTION[0]:.0%}-{SHRINK_FRACTION[1]:.0%} smaller, shift up to "
                     f"{MAX_SHIFT_FRACTION:.0%} per axis, gamma {GAMMA[0]}-{GAMMA[1]}, applied to the "
                     "decoded image before the shared preprocessing")


def perturbed_inputs(records, size: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Preprocessed model inputs of perturbed copies of `records` (same order, same seed)."""
    from cbmir.core import decode, preprocess

    params = reacquisition_parameters(len(records), seed)
    inputs = np.empty((len(records), 1, size, size), dtype=np.float32)
    for index, (record, param) in enumerate(zip(records, params)):
        grey = preprocess.to_grey(decode.read_image_file(record.path))
        inputs[index] = preprocess.preprocess(perturb_reacquisition(grey, **param), size)
    return inputs


def split_rows(records, queries: list[str], database: list[str]) -> tuple[list[int], list[int]]:
    """Row numbers of the query splits, and of the database splits that are not queries."""
    query_rows = [i for i, r in enumerate(records) if r.split in set(queries)]
    database_rows = [i for i, r in enumerate(records) if r.split in set(database)
                     and r.split not in set(queries)]
    return query_rows, database_rows


def embed_copies(embed, size: int, records, queries: list[str],
                 seed: int = DEFAULT_SEED) -> np.ndarray:
    """Vectors of the perturbed copies of the query splits' images, in record order."""
    return embed(perturbed_inputs([r for r in records if r.split in set(queries)], size, seed))


def evaluate_finegrained(embed, size: int, vectors: np.ndarray, records, queries: list[str],
                         database: list[str], seed: int = DEFAULT_SEED,
                         copies: np.ndarray | None = None) -> dict:
    """All three measures for query splits against database splits; `vectors` align with
    `records` and `embed` maps preprocessed inputs to vectors with the same model;
    `copies`: `embed_copies` already computed with the same seed."""
    query_rows, database_rows = split_rows(records, queries, database)
    if copies is None:
        copies = embed_copies(embed, size, records, queries, seed)
    own = np.arange(len(query_rows))
    held_out = copy_ranks(copies, vectors[query_rows], own)
    everything = copy_ranks(copies, vectors[query_rows + database_rows], own)
    labels = [r.label for r in records]
    return {
        "perturbation": PERTURBATION_TEXT + f"; seed {seed}",
        "copy": {"query splits": {**summarise_ranks(held_out), "database": len(query_rows)},
                 "query + database splits": {**summarise_ranks(everything),
                                             "database": len(query_rows) + len(database_rows)}},
        "own_patient_first": own_patient_first(vectors, [r.patient_id for r in records],
                                               query_rows, query_rows + database_rows),
        "spread": (score_spread(vectors[query_rows], [labels[i] for i in query_rows],
                                vectors[database_rows], [labels[i] for i in database_rows])
                   if database_rows else {}),  # queries searched among themselves: no spread
    }
