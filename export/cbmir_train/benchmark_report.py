"""Aggregate per-fold results into docs/benchmarks/<name>.json and .md."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

METRIC_KEYS = ("mAP", "P@1", "P@5", "P@10")
ANCHORS = [("Swati et al. 2019 (VGG19, ImageNet-pretrained, fine-tuned)", "96.13", "—"),
           ("Cheng et al. 2016 (Fisher vectors + CFML)", "94.68", "—"),
           ("Paper this project follows (GoogLeNet + GeM, private data)", "89.16", "94.08")]
GOALS = {"mAP": 0.90, "P@10": 0.94}


def summarise(folds: list[dict]) -> dict:
    mean = {k: statistics.fmean(f["metrics"][k] for f in folds) for k in METRIC_KEYS}
    spread = {k: statistics.pstdev(f["metrics"][k] for f in folds) for k in METRIC_KEYS}
    return {"mean": mean, "std": spread,
            "train_seconds_total": round(sum(f["train_seconds"] for f in folds), 1),
            "goals_met": {k: mean[k] >= v for k, v in GOALS.items()}}


def write_report(out: Path, name: str, protocol: dict, folds: list[dict],
                 extra_sections: list[str] | None = None) -> dict:
    """Write NAME.json and NAME.md; returns the JSON payload."""
    summary = summarise(folds) if folds else {}
    payload = {"protocol": protocol, "folds": folds, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(payload, extra_sections or []))
    return payload


def markdown(payload: dict, extra_sections: list[str]) -> str:
    protocol, folds, summary = payload["protocol"], payload["folds"], payload["summary"]
    lines = [f"# Retrieval benchmark: {protocol['dataset']}", "",
             f"Reproduce: `{protocol['command']}`"
             + (f" or `{protocol['script']}` (the same settings)" if protocol.get("script") else ""), "",
             "## Protocol", "",
             f"- Data: {protocol['data_description']}",
             f"- Folds: {protocol['folds_description']}",
             "- For each fold k: train from scratch on the other folds only, then query with "
             "every image of fold k against a database of the other folds.",
             "- Relevant = same tumour label; AP over the whole database ranking (cosine similarity "
             "of L2-normalised embeddings); mAP = mean over queries; P@k = share of the top k "
             "that is relevant.",
             f"- Patient exclusion: {protocol['patient_exclusion']}",
             f"- Model: {protocol['model']}",
             f"- Training: {protocol['training']}",
             f"- Hardware: {protocol['hardware']}", "",
             "## Results (held-out fold as queries, FP32 PyTorch model)", "",
             "| fold | queries | database | mAP | P@1 | P@5 | P@10 | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for fold in folds:
        m = fold["metrics"]
        lines.append(f"| {fold['fold']} | {m['queries']} | {m['database']} | {m['mAP']:.4f} | "
                     f"{m['P@1']:.4f} | {m['P@5']:.4f} | {m['P@10']:.4f} | "
                     f"{fold['train_seconds'] / 60:.1f} min |")
    if summary:
        mean, std = summary["mean"], summary["std"]
        lines.append("| **mean ± sd** | | | " + " | ".join(
            f"**{mean[k]:.4f}** ± {std[k]:.4f}" for k in METRIC_KEYS)
            + f" | {summary['train_seconds_total'] / 60:.0f} min total |")
        lines += ["", "Goals from scratch: mAP >= 0.90 "
                  f"({'met' if summary['goals_met']['mAP'] else 'NOT met'}), P@10 >= 0.94 "
                  f"({'met' if summary['goals_met']['P@10'] else 'NOT met'})."]
    lines += ["", "## Published anchors (not directly comparable: other protocols or data)", "",
              "| method | mAP % | P@10 % |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ANCHORS]
    for section in extra_sections:
        lines += ["", section.rstrip()]
    return "\n".join(lines) + "\n"
