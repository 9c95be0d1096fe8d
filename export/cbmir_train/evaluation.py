"""Embed manifest records with a model and score retrieval; JSON, Markdown and plots.

Works from an ONNX file through `cbmir.core.embed.Embedder` without torch; a run
folder or .pt checkpoint is embedded with torch (imported only then).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import datasets, reranking
from .finegrained import DEFAULT_SEED, embed_copies, evaluate_finegrained
from .finegrained import markdown_section as finegrained_markdown
from .metrics import retrieval_metrics


def load_embedder(model_path: str | Path, threads: int = 0, batch_size: int = 64,
                  progress: bool = False, fine_weight: float = 0.0, fine_dim: int = 0):
    """(input size, function (N, 1, S, S) inputs -> (N, D) unit vectors, model description).
    `fine_weight`, `fine_dim`: a torch run's search vector (networks.RetrievalNet); an ONNX
    file carries its own."""
    model_path = Path(model_path)
    if model_path.suffix == ".onnx":
        if fine_weight:
            raise ValueError("--fine-weight applies to a run folder or .pt file; an ONNX model "
                             "carries its own search vector (cbmir export --fine-weight)")
        from cbmir.core.embed import Embedder, embed_in_batches

        embedder = Embedder(model_path, threads=threads)

        def embed(inputs: np.ndarray) -> np.ndarray:
            with tqdm(total=-(-len(inputs) // batch_size), desc="embed", unit="batch",
                      disable=not progress) as bar:
                return embed_in_batches(embedder.embed_inputs, inputs, batch_size, embedder.dim,
                                        lambda count, seconds: bar.update())
        return embedder.input_size, embed, {"model": str(model_path), "kind": "onnx",
                                            "card": embedder.card}
    from .inference import embed_inputs, load_trained

    model, info = load_trained(model_path, fine_weight, fine_dim)
    return (info["config"]["input_size"],
            lambda inputs: embed_inputs(model, inputs, batch_size, progress=progress),
            {"model": str(model_path), "kind": "torch", "config": info["config"]})


def embed_records(model_path: str | Path, records: list[datasets.Record], batch_size: int = 64,
                  cache_dir: str | Path | None = None, threads: int = 0,
                  progress: bool = True, fine_weight: float = 0.0,
                  fine_dim: int = 0) -> tuple[np.ndarray, dict]:
    """(N, D) unit vectors for `records`, plus a description of the model used."""
    size, embed, info = load_embedder(model_path, threads, batch_size, progress, fine_weight,
                                      fine_dim)
    return embed(datasets.load_inputs(records, size, cache_dir, progress)), info


def score_splits(vectors: np.ndarray, records: list[datasets.Record], queries: list[str],
                 database: list[str]) -> dict:
    """Retrieval metrics of query splits against database splits (vectors align with records)."""
    query_rows = [i for i, r in enumerate(records) if r.split in set(queries)]
    database_rows = [i for i, r in enumerate(records) if r.split in set(database)]
    if not query_rows or not database_rows:
        raise ValueError(f"no records for queries {queries} or database {database}")
    q = [records[i] for i in query_rows]
    d = [records[i] for i in database_rows]
    result = retrieval_metrics(vectors[query_rows], [r.label for r in q],
                               vectors[database_rows], [r.label for r in d],
                               [r.key for r in q], [r.key for r in d],
                               [r.patient_id for r in q], [r.patient_id for r in d])
    result["patient_exclusion"] = any(r.patient_id for r in q)
    result["query_splits"], result["database_splits"] = queries, database
    return result


def markdown_summary(result: dict, title: str = "Retrieval evaluation") -> str:
    lines = [f"# {title}", "",
             f"Model: `{result.get('model', '?')}`  ",
             f"Queries: {', '.join(result['query_splits'])} ({result['queries']} images); "
             f"database: {', '.join(result['database_splits'])} ({result['database']} images).  ",
             "Relevant = same label; AP over the whole database ranking; "
             + ("each query's own patient left out." if result["patient_exclusion"]
                else "no patient ids in the manifest, so no patient exclusion."), "",
             "| label | queries | mAP | P@1 | P@5 | P@10 |", "|---|---|---|---|---|---|"]
    rows = [("**all**", result)] + list(result["per_label"].items())
    for label, row in rows:
        lines.append(f"| {label} | {row['queries']} | {row['mAP']:.4f} | {row['P@1']:.4f} | "
                     f"{row['P@5']:.4f} | {row['P@10']:.4f} |")
    if "chance_precision" in result:
        lines += ["", f"Chance (a random ranking's precision): {result['chance_precision']:.4f} "
                      "overall; " + ", ".join(f"{label} {row['chance_precision']:.4f}"
                                              for label, row in result["per_label"].items()
                                              if "chance_precision" in row) + ".",
                  "", "Figures: precision_recall.png (with the chance line), "
                      "precision_recall_per_label.png, example_retrievals.png, embedding_map.png."]
    return "\n".join(lines) + "\n"


def two_d_map(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates: PCA (numpy SVD) or t-SNE (scikit-learn)."""
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, init="pca", random_state=seed,
                    perplexity=min(30.0, max(2.0, (len(vectors) - 1) / 3))).fit_transform(vectors)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def save_plots(result: dict, vectors: np.ndarray, labels: list[str], out: Path,
               map_method: str = "pca") -> list[Path]:
    """embedding_map.png in `out` (the precision-recall figures: report_plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    points = two_d_map(vectors, map_method)
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for label in sorted(set(labels)):
        chosen = np.array([lab == label for lab in labels])
        axes.scatter(points[chosen, 0], points[chosen, 1], s=6, alpha=0.6, label=label)
    axes.legend(markerscale=3, fontsize=8)
    axes.set(title=f"Embeddings ({map_method.upper()}), coloured by label", xticks=[], yticks=[])
    figure.tight_layout()
    paths.append(out / "embedding_map.png")
    figure.savefig(paths[-1], dpi=120)
    plt.close(figure)
    return paths


def evaluate(model_path: str | Path, manifest: str | Path, queries: list[str],
             database: list[str], out: str | Path, cache_dir=None, map_method: str = "pca",
             threads: int = 0, progress: bool = True, limit: int = 0,
             finegrained_seed: int | None = DEFAULT_SEED, rerank: bool = False,
             fine_weight: float = 0.0, fine_dim: int = 0) -> dict:
    """The whole `cbmir evaluate`: embed, score, write evaluation.json/.md and PNG plots.
    `limit`: evaluate N images only, stratified by (split, label) (smoke runs);
    `rerank`: also score aQE / DBA re-ranking (cbmir_train.reranking)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = datasets.select(datasets.read_manifest(manifest), sorted(set(queries + database)))
    records = datasets.stratified_sample(records, limit, key=lambda r: (r.split, r.label))
    size, embed, model_info = load_embedder(model_path, threads, progress=progress,
                                            fine_weight=fine_weight, fine_dim=fine_dim)
    vectors = embed(datasets.load_inputs(records, size, cache_dir, progress))
    result = score_splits(vectors, records, queries, database)
    copies = None
    if finegrained_seed is not None:
        copies = embed_copies(embed, size, records, queries, finegrained_seed)
        result["finegrained"] = evaluate_finegrained(embed, size, vectors, records, queries,
                                                     database, finegrained_seed, copies)
    if rerank:
        result["reranking"] = reranking.rerank_report(vectors, copies, records, queries, database)
    result["model"] = str(model_path)
    result["model_info"] = {k: v for k, v in model_info.items() if k != "model"}
    result["manifest"] = str(manifest)
    if limit:
        result["limit"] = limit
    from .report_plots import evaluation_figures

    evaluation_figures(vectors, records, result, out, progress)  # adds chance, per-label curves
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    summary = markdown_summary(result)
    if "finegrained" in result:
        summary += "\n" + finegrained_markdown(result["finegrained"])
    if "reranking" in result:
        summary += "\n" + reranking.markdown_section(result["reranking"])
    (out / "evaluation.md").write_text(summary)
    save_plots(result, vectors, [r.label for r in records], out, map_method)
    return result
