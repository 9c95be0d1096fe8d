"""Figures for people who would rather look than read: training curves, precision-recall
with its chance line, per-label curves, and a grid of example retrievals.

All figures are PNG files written with matplotlib's Agg backend (no display needed).
`evaluation_figures` recomputes the similarity matrix of the evaluated split (cheap next
to embedding: 3k x 3k floats) so `metrics.retrieval_metrics` stays unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .metrics import exclusion_mask, precision_recall_curve, rank_relevance

GRID_K = 5
GRID_QUERIES = 6
CORRECT, WRONG = "#1a9850", "#d73027"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: list[dict], path: str | Path) -> Path:
    """Loss per epoch (left) and validation mAP / P@10 per epoch (right) -> PNG."""
    plt = _pyplot()
    path = Path(path)
    epochs = [entry["epoch"] for entry in history]
    figure, (loss_axes, val_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [entry["loss"] for entry in history], marker="o", lw=2)
    loss_axes.set(xlabel="epoch", ylabel="training loss (mean over the epoch)",
                  title="Training loss")
    validated = [entry for entry in history if "val_mAP" in entry]
    if validated:
        for key in ("val_mAP", "val_P@10"):
            val_axes.plot([e["epoch"] for e in validated], [e[key] for e in validated],
                          marker="o", lw=2, label=key.replace("val_", ""))
        val_axes.set(ylim=(0, 1.02), title="Validation retrieval")
        val_axes.legend()
    else:
        val_axes.text(0.5, 0.5, "no validation split\n(train with --val-splits)",
                      ha="center", va="center", transform=val_axes.transAxes)
        val_axes.set(title="Validation retrieval")
    val_axes.set(xlabel="epoch")
    for axes in (loss_axes, val_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def curves_by_label(query_vectors, query_labels, database_vectors, database_labels,
                    excluded) -> dict:
    """Per label: interpolated PR curve and the chance precision (random ranking), plus
    the overall chance. Chance precision of one query = relevant share of its database."""
    similarities = np.asarray(query_vectors, np.float32) @ np.asarray(database_vectors,
                                                                      np.float32).T
    rankings = rank_relevance(similarities, query_labels, database_labels, excluded)
    chance = np.array([r.mean() if len(r) else 0.0 for r in rankings])
    labels = np.asarray(query_labels)
    result = {"chance_precision": float(chance.mean()) if len(chance) else 0.0, "per_label": {}}
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        recall, precision = precision_recall_curve([rankings[i] for i in rows])
        result["per_label"][str(label)] = {
            "chance_precision": float(chance[rows].mean()),
            "pr_curve": {"recall": recall.round(4).tolist(),
                         "precision": precision.round(4).tolist()}}
    return result


def _pr_figure(path: Path, size: tuple[float, float], title: str, curves: list) -> Path:
    """One precision-recall figure: `curves` = (row with pr_curve and chance_precision,
    legend text, keywords of the curve, keywords of its chance line)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=size)
    for row, label, line, chance in curves:
        axes.plot(row["pr_curve"]["recall"], row["pr_curve"]["precision"], lw=2, label=label,
                  **line)
        axes.axhline(row["chance_precision"], **chance)
    axes.set(xlabel="recall", ylabel="interpolated precision", xlim=(0, 1), ylim=(0, 1.02),
             title=title)
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def precision_recall_plot(result: dict, path: Path) -> Path:
    """The overall curve and a dashed chance line (what a random ranking would give)."""
    chance = {"color": "grey", "ls": "--", "lw": 1.5,
              "label": f"chance ({result['chance_precision']:.3f})"}
    return _pr_figure(path, (5, 4), f"Precision-recall (mAP {result['mAP']:.3f})",
                      [(result, f"model (mAP {result['mAP']:.3f})", {}, chance)])


def per_label_plot(result: dict, path: Path) -> Path:
    """One curve per label, each with its own dotted chance line in the same colour."""
    curves = [(row, f"{label} (mAP {row['mAP']:.3f})", {"color": f"C{number % 10}"},
               {"color": f"C{number % 10}", "ls": ":", "lw": 1.2})
              for number, (label, row) in enumerate(result["per_label"].items())]
    return _pr_figure(path, (5.5, 4.2), "Precision-recall per label (dotted: chance)", curves)


def pick_queries(labels: list[str], count: int = GRID_QUERIES) -> list[int]:
    """Query rows for the grid: evenly spaced within each label, labels taking turns."""
    by_label: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        by_label.setdefault(label, []).append(row)
    per_label = max(1, -(-count // max(1, len(by_label))))
    picks = {label: [rows[int(i * len(rows) / per_label)] for i in range(min(per_label, len(rows)))]
             for label, rows in sorted(by_label.items())}
    order = [row for turn in range(per_label) for rows in picks.values() if turn < len(rows)
             for row in [rows[turn]]]
    return order[:count]


def _thumbnail(path) -> np.ndarray:
    from PIL import Image

    from cbmir.core.decode import read_image_file

    pixels = np.asarray(read_image_file(path), dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=2)
    low, high = np.percentile(pixels, (0.5, 99.5))
    pixels = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1)
    return np.asarray(Image.fromarray((pixels * 255).astype(np.uint8)).resize((128, 128)))


def retrieval_grid(query_records, database_records, similarities, excluded, path: Path,
                   count: int = GRID_QUERIES, k: int = GRID_K, progress: bool = True) -> Path:
    """One row per example query: the query, then its top-k with labels; a green frame marks
    a result of the query's label, a red one any other."""
    plt = _pyplot()
    rows = pick_queries([r.label for r in query_records], count)
    figure, grid = plt.subplots(len(rows), k + 1, figsize=(1.9 * (k + 1), 2.1 * len(rows)),
                                squeeze=False)
    for line, query in enumerate(tqdm(rows, desc="example grid", unit="query",
                                      disable=not progress)):
        scores = np.where(excluded[query], -np.inf, similarities[query])
        top = [i for i in np.argsort(-scores, kind="stable")[:k] if np.isfinite(scores[i])]
        wanted = query_records[query].label
        cells = [(query_records[query], "query", "black")] + [
            (database_records[i], f"{scores[i]:.3f}",
             CORRECT if database_records[i].label == wanted else WRONG) for i in top]
        for column, axes in enumerate(grid[line]):
            axes.set_xticks([]), axes.set_yticks([])
            if column >= len(cells):
                axes.axis("off")
                continue
            record, note, colour = cells[column]
            axes.imshow(_thumbnail(record.path), cmap="gray", vmin=0, vmax=255)
            axes.set_title(f"{record.label}\n{note}", fontsize=8, color=colour)
            for spine in axes.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(4 if column else 1)
    figure.suptitle(f"Example retrievals: query, then top {k} "
                    f"(green frame: same label, red: other)", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the first row
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def evaluation_figures(vectors: np.ndarray, records: list, result: dict, out: Path,
                       progress: bool = True) -> list[Path]:
    """Adds chance and per-label curves to `result` and writes the three figures."""
    queries, database = set(result["query_splits"]), set(result["database_splits"])
    q_rows = [i for i, r in enumerate(records) if r.split in queries]
    d_rows = [i for i, r in enumerate(records) if r.split in database]
    q_records, d_records = [records[i] for i in q_rows], [records[i] for i in d_rows]
    patients = result.get("patient_exclusion")
    excluded = exclusion_mask([r.key for r in q_records], [r.key for r in d_records],
                              [r.patient_id for r in q_records] if patients else None,
                              [r.patient_id for r in d_records] if patients else None)
    curves = curves_by_label(vectors[q_rows], [r.label for r in q_records], vectors[d_rows],
                             [r.label for r in d_records], excluded)
    result["chance_precision"] = curves["chance_precision"]
    for label, extra in curves["per_label"].items():
        result["per_label"][label].update(extra)
    similarities = vectors[q_rows] @ vectors[d_rows].T
    return [precision_recall_plot(result, out / "precision_recall.png"),
            per_label_plot(result, out / "precision_recall_per_label.png"),
            retrieval_grid(q_records, d_records, similarities, excluded,
                           out / "example_retrievals.png", progress=progress)]
