"""The pieces of `cbmir benchmark`: score one fold, check INT8 on it, ship the default model."""
from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cbmir.core.embed import card_path_for
from cbmir.core.preprocess import PREPROCESS_VERSION

from . import datasets
from .evaluation import embed_records, score_splits
from .onnx_export import export_run, write_card
from .quantization import latency_ms, quantize_with_card, score_precisions

CALIBRATION_IMAGES = 256


@dataclass(frozen=True)
class BenchmarkSettings:
    """What the steps need from `cbmir benchmark`'s options (the command converts them once;
    the defaults of --model-version and --max-int8-map-drop are these)."""
    manifest: str
    runs: Path  # work folder; preprocessed inputs are cached in runs/cache
    input_size: int
    seed: int = 0
    name: str = "figshare"  # the report is docs/benchmarks/<name>.md
    model_version: str = "1.1.0"
    max_int8_map_drop: float = 0.005
    fine_weight: float = 0.0  # the search vector's fine part (networks.RetrievalNet)
    fine_dim: int = 0

    @property
    def cache(self) -> Path:
        return Path(self.runs) / "cache"


def _quantize(run_dir: Path, settings: BenchmarkSettings,
              calibration_splits: list[str]) -> tuple[Path, Path]:
    """FP32 ONNX (+card) and INT8 ONNX (+card) of the run in `run_dir`."""
    fp32, card = export_run(run_dir, run_dir / "model.onnx", fine_weight=settings.fine_weight,
                            fine_dim=settings.fine_dim)
    int8 = run_dir / "model-int8.onnx"
    quantize_with_card(fp32, int8, card, settings.manifest, calibration_splits,
                       CALIBRATION_IMAGES, seed=settings.seed)
    return fp32, int8


def fold_result(run_dir: Path, records, fold: str, others: list[str], settings: BenchmarkSettings,
                check_quantization: bool = False) -> dict:
    """Held-out metrics of the model trained in `run_dir` (+ ONNX parity and INT8 check)."""
    train = json.loads((run_dir / "train.json").read_text())
    vectors, _ = embed_records(run_dir, records, cache_dir=settings.cache, progress=False,
                               fine_weight=settings.fine_weight, fine_dim=settings.fine_dim)
    metrics = score_splits(vectors, records, [fold], others)
    metrics.pop("pr_curve")
    result = {"fold": fold, "train_splits": others, "metrics": metrics,
              "train_seconds": train["train_seconds"], "epochs": len(train["history"]),
              "hardware": train["hardware"], "history": train["history"]}
    if check_quantization:
        fp32, int8 = _quantize(run_dir, settings, others)
        report, onnx = score_precisions({"fp32": fp32, "int8": int8}, records, [fold], others,
                                        settings.input_size, cache_dir=settings.cache)
        result["onnx_parity_min_cosine"] = float(np.min(np.sum(vectors * onnx["fp32"], 1)))
        result["quantization"] = report
    return result


def quantization_section(folds: list[dict]) -> str:
    checked = [f for f in folds if "quantization" in f]
    if not checked:
        return ""
    lines = ["## INT8 quantization (static QDQ, per-channel, 256 calibration images from the "
             "training folds)", "",
             "| fold | FP32 ONNX mAP | INT8 mAP | change | FP32 ms/img | INT8 ms/img | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for fold in checked:
        q = fold["quantization"]
        lines.append(f"| {fold['fold']} | {q['fp32']['mAP']:.4f} | {q['int8']['mAP']:.4f} | "
                     f"{q['mAP_change']:+.4f} | {q['fp32']['ms_per_image']:.1f} | "
                     f"{q['int8']['ms_per_image']:.1f} | {q['speedup']:.2f}x |")
    change = statistics.fmean(f["quantization"]["mAP_change"] for f in checked)
    lines += ["", f"Mean mAP change FP32 -> INT8: {change:+.4f}. Latency: batch 1, 2 onnxruntime "
              "threads, median of 30 runs, measured on a shared machine while other jobs ran, so "
              "treat the speed-up as indicative. ONNX vs PyTorch parity (minimum cosine over all "
              "images): " + ", ".join(f"{f['fold']} {f.get('onnx_parity_min_cosine', float('nan')):.6f}"
                                      for f in checked) + "."]
    return "\n".join(lines)


def already_shipped(full_dir: Path, models_dir: Path) -> dict | None:
    """The shipped card when models/default.onnx is still the export of `full_dir`'s model."""
    card_path = models_dir / "default.json"
    if not card_path.is_file() or not (full_dir / "model.pt").is_file():
        return None
    card = json.loads(card_path.read_text())
    shipped_from = card.get("source_model_mtime")
    return card if shipped_from == (full_dir / "model.pt").stat().st_mtime else None


def model_version(release: str, onnx_path: Path, precision: str) -> str:
    """'<release>-<precision>+<8 hex of the ONNX file>': the plugin compares versions to decide
    whether to re-index, so two different files must never share one (1.0.0-int8 did)."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:8]
    return f"{release}-{precision}+{digest}"


def ship_default_model(full_dir: Path, folds: list[dict], settings: BenchmarkSettings,
                       models_dir: Path) -> dict:
    """Export the all-folds model, pick INT8 when the folds say it holds, copy to models/."""
    shipped = already_shipped(full_dir, models_dir)
    if shipped is not None:
        print(f"{models_dir}/default.onnx is already the export of {full_dir}", flush=True)
        return shipped
    records = datasets.read_manifest(settings.manifest)
    splits = sorted({r.split for r in records})
    fp32, int8 = _quantize(full_dir, settings, splits)
    checked = [f["quantization"] for f in folds if "quantization" in f]
    mean_change = statistics.fmean(q["mAP_change"] for q in checked) if checked else None
    use_int8 = mean_change is not None and mean_change > -settings.max_int8_map_drop
    chosen = int8 if use_int8 else fp32
    card = json.loads(card_path_for(chosen).read_text())
    size = card["input_size"]
    mean = {k: statistics.fmean(f["metrics"][k] for f in folds) for k in ("mAP", "P@1", "P@5", "P@10")}
    card.update({
        "name": "cbmir-default", "version": model_version(settings.model_version, chosen,
                                                         card["precision"]),
        "training_data": (f"figshare brain tumour MRI (Cheng et al., figshare 1512427): all "
                          f"{len(records)} T1-CE slices, all folds, labels {card['labels']}"),
        "metrics": {
            "note": (f"{len(folds)}-fold held-out estimate of this recipe (each fold trained "
                     "without the query fold; the shipped model itself has seen every image)"),
            **{f"cv_{k}": round(v, 4) for k, v in mean.items()},
            "cv_per_fold_mAP": {f["fold"]: round(f["metrics"]["mAP"], 4) for f in folds},
            "int8_mean_mAP_change": None if mean_change is None else round(mean_change, 4),
        },
        "latency_ms_per_image_cpu_2_threads": {"fp32": round(latency_ms(fp32, size), 2),
                                               "int8": round(latency_ms(int8, size), 2)},
        "preprocess_version": PREPROCESS_VERSION,
        "benchmark": f"docs/benchmarks/{settings.name}.md",
        "source_model_mtime": (full_dir / "model.pt").stat().st_mtime,
    })
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / "default.onnx"
    # Atomic replacement: the plugin or tests may be reading the current default right now.
    staged = target.with_suffix(".onnx.tmp")
    shutil.copyfile(chosen, staged)
    staged.replace(target)
    write_card(target, card)
    print(f"shipped {chosen} ({card['precision']}) as {target}", flush=True)
    return card


def default_model_section(card: dict, models_dir) -> str:
    latency = card["latency_ms_per_image_cpu_2_threads"]
    return "\n".join([
        "## Shipped default model", "",
        f"`{models_dir}/default.onnx` ({card['precision']}), trained on all folds with the same "
        f"recipe ({card['epochs']} epochs, {card['train_seconds'] / 60:.0f} min on "
        f"{card['hardware']}). Chosen precision: {card['precision']} (INT8 is shipped when the mean "
        f"held-out mAP change over the folds is smaller than the threshold; measured change "
        f"{card['metrics']['int8_mean_mAP_change']}). CPU latency, batch 1, 2 threads: FP32 "
        f"{latency['fp32']} ms/image, INT8 {latency['int8']} ms/image."])
