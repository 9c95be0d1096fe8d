"""Trained model -> ONNX file (the plugin's contract) plus its model card JSON."""
from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path

import torch

from cbmir.core.embed import CARD_METADATA_KEY, INPUT_NAME, OUTPUT_NAME, card_path_for
from cbmir.core.preprocess import PREPROCESS_VERSION

from .networks import RetrievalNet

OPSET = 17
ARCHITECTURE = "GoogLeNet (Inception v1) trunk, 1-channel input -> GeM -> Linear -> L2 norm"


def export_onnx(model: RetrievalNet, input_size: int, path: str | Path) -> Path:
    """Write an ONNX graph with input `image` [N,1,S,S] and output `embedding` [N,D]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    example = torch.zeros(2, 1, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    return path


def build_card(name: str, version: str, dim: int, input_size: int, precision: str,
               training_data: str, metrics: dict | None = None, **extra) -> dict:
    """Model card with the keys the plugin and `cbmir.core.embed.load_card` rely on."""
    return {"name": name, "version": version, "architecture": ARCHITECTURE,
            "embedding_dim": int(dim), "input_size": int(input_size),
            "preprocess_version": PREPROCESS_VERSION, "precision": precision,
            "training_data": training_data, "metrics": metrics or {},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "onnx": {"opset": OPSET, "input": INPUT_NAME, "output": OUTPUT_NAME},
            **extra}


def write_card(model_path: str | Path, card: dict, embed: bool = True) -> Path:
    """The card beside the model (MODEL.json) and, with `embed`, inside it too."""
    path = card_path_for(model_path)
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(card, indent=2) + "\n")
    staged.replace(path)
    if embed:
        embed_card(model_path, card)
    return path


def embed_card(model_path: str | Path, card: dict) -> None:
    """Store the card in the ONNX file's metadata_props (key CARD_METADATA_KEY).

    Why: a model file copied without its JSON still says what it is (onnxruntime's
    `get_modelmeta().custom_metadata_map` reads it; the plugin falls back to it).
    Written to a temporary file and renamed: the plugin may be reading the model."""
    import onnx

    model_path = Path(model_path)
    model = onnx.load(str(model_path))
    kept = [p for p in model.metadata_props if p.key != CARD_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=CARD_METADATA_KEY, value=json.dumps(card, sort_keys=True))
    staged = model_path.with_suffix(".onnx.card-tmp")
    onnx.save(model, str(staged))
    staged.replace(model_path)


def card_metrics_from_evaluation(evaluation: dict) -> dict:
    """The headline figures of an `evaluation.json` for the model card (no curves)."""
    keep = ("mAP", "P@1", "P@5", "P@10", "queries", "database", "query_splits",
            "database_splits", "patient_exclusion", "chance_precision", "manifest", "model")
    metrics = {key: evaluation[key] for key in keep if key in evaluation}
    metrics["per_label"] = {label: {k: v for k, v in row.items() if k != "pr_curve"}
                            for label, row in evaluation.get("per_label", {}).items()}
    return metrics


def export_run(checkpoint: str | Path, out: str | Path, name: str = "cbmir-googlenet-gem",
               version: str | None = None, training_data: str | None = None,
               metrics: dict | None = None,
               evaluation: str | Path | None = None,
               fine_weight: float = 0.0, fine_dim: int = 0) -> tuple[Path, dict]:
    """Export a trained run (folder or .pt) to `out` with a card describing its training.

    `evaluation`: an evaluation.json (or a folder holding one) from `cbmir evaluate`;
    by default RUN/evaluation.json when it exists. Its figures go into the card's
    metrics under "evaluation"; explicit `metrics` keys are kept beside them.
    `fine_weight`, `fine_dim`: the search vector's fine part (networks.RetrievalNet)."""
    from .inference import load_trained

    model, info = load_trained(checkpoint, fine_weight, fine_dim)
    config, history = info["config"], info.get("history", [])
    path = export_onnx(model, config["input_size"], out)
    metrics = dict(metrics or {})
    found = _find_evaluation(checkpoint, evaluation)
    if found is not None:
        metrics.setdefault("evaluation", {"file": str(found), **card_metrics_from_evaluation(
            json.loads(found.read_text()))})
    training_data = training_data or (
        f"{Path(config['manifest']).parent.name}/{Path(config['manifest']).name}, splits "
        f"{','.join(config['train_splits']) or 'all'} ({info.get('train_images', '?')} images)")
    extra = {}
    if model.fine_weight > 0:
        fine = "unit(GeM(inception4e))" + (
            f" centred, first {model.fine_dim} principal axes of the training images, unit"
            if model.fine_dim else "")
        extra = {"architecture": f"{ARCHITECTURE}; search vector = [embedding, {model.fine_weight:g}"
                                 f" x {fine}], L2 norm ({model.dim}-d)",
                 "fine_weight": model.fine_weight, "fine_dim": model.fine_dim}
    card = build_card(
        name=name, version=version or path.stem, dim=model.dim,
        input_size=config["input_size"], precision="fp32", training_data=training_data,
        metrics=metrics, labels=info.get("labels", []), loss=config["loss"],
        epochs=len(history), train_seconds=info.get("train_seconds"),
        hardware=info.get("hardware"), training_config=config,
        final_epoch=history[-1] if history else None, **extra)
    write_card(path, card)
    return path, card


def _find_evaluation(checkpoint, evaluation) -> Path | None:
    """An explicit evaluation.json (file or folder, must exist), else RUN/evaluation.json."""
    if evaluation is not None:
        path = Path(evaluation)
        path = path / "evaluation.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no evaluation results at {path}")
        return path
    run = Path(checkpoint)
    run = run if run.is_dir() else run.parent
    candidate = run / "evaluation.json"
    return candidate if candidate.is_file() else None
