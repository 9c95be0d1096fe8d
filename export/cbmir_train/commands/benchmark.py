"""`cbmir benchmark`: k-fold retrieval benchmark, then train, quantize and ship the default model.

Resumable at every level: a fold whose result.json exists is skipped, a fold or
the full model whose training was interrupted resumes from its last.pt, so the
same command is re-run until everything is done.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import shutil
from pathlib import Path

from cbmir.core.manifest import parse_splits

from .. import datasets
from ..benchmark_report import write_report
from ..benchmark_steps import (BenchmarkSettings, default_model_section, fold_result,
                              quantization_section, ship_default_model)
from ..losses import LOSSES
from ..recipe import RECIPE
from ..training import TrainConfig, fit
from . import search_vector_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True, help="folder for NAME.md and NAME.json")
    parser.add_argument("--name", default=BenchmarkSettings.name)
    parser.add_argument("--runs", default="runs/benchmark", help="work folder (checkpoints, caches)")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--input-size", type=int, default=RECIPE["input_size"])
    parser.add_argument("--dim", type=int, default=RECIPE["dim"])
    parser.add_argument("--loss", choices=LOSSES, default=RECIPE["loss"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--lr", type=float, default=RECIPE["lr"])
    parser.add_argument("--seed", type=int, default=RECIPE["seed"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--instance-weight", type=float, default=0.0,
                        help="lambda of the instance-level NT-Xent term (see cbmir train)")
    search_vector_options.add_arguments(parser)
    parser.add_argument("--data-device", choices=("auto", "cpu"), default="auto")
    parser.add_argument("--folds", default="", help="only these folds (default: every split)")
    parser.add_argument("--quantize-check-folds", type=int, default=1,
                        help="measure FP32 vs INT8 ONNX (mAP, latency) on the first N folds")
    parser.add_argument("--no-default", dest="ship_default", action="store_false",
                        help="skip training/shipping the all-folds default model")
    parser.add_argument("--models-dir", default="models", help="where default.onnx/.json go")
    parser.add_argument("--model-version", default=BenchmarkSettings.model_version,
                        help="release of the shipped model; the card's version adds the precision "
                             "and a content hash, so the plugin re-indexes after any model change")
    parser.add_argument("--max-int8-map-drop", type=float,
                        default=BenchmarkSettings.max_int8_map_drop,
                        help="ship INT8 only if the mean held-out mAP drops less than this")
    parser.add_argument("--compare-losses", default="",
                        help="also train these losses on the first fold and report them beside")
    parser.add_argument("--notes", help="Markdown file appended to the report (what was tried)")
    parser.add_argument("--quiet", action="store_true")


def base_config(args, out: Path, train_splits: list[str]) -> TrainConfig:
    return TrainConfig(manifest=args.manifest, out=str(out), train_splits=train_splits,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       input_size=args.input_size, dim=args.dim, loss=args.loss, seed=args.seed,
                       threads=args.threads, cache_dir=str(Path(args.runs) / "cache"),
                       progress=not args.quiet, instance_weight=args.instance_weight,
                       data_device=args.data_device)


def protocol(args, splits: list[str], records) -> dict:
    labels = sorted({r.label for r in records})
    has_patients = any(r.patient_id for r in records)
    return {
        "dataset": f"{args.name} ({len(records)} images, labels {', '.join(labels)})",
        "command": (f"cbmir benchmark --manifest {args.manifest} --out {args.out} "
                    f"--name {args.name} --runs {args.runs} --epochs {args.epochs} --input-size {args.input_size} --dim {args.dim} "
                    f"--loss {args.loss} --batch-size {args.batch_size} --lr {args.lr}"
                    + (f" --instance-weight {args.instance_weight}" if args.instance_weight else "")
                    + (f" --fine-weight {args.fine_weight} --fine-dim {args.fine_dim}"
                       if args.fine_weight else "")
                    + (f" --compare-losses {args.compare_losses}" if args.compare_losses else "")),
        "script": "export/run-benchmark.sh",
        "data_description": (f"manifest `{args.manifest}`; images decoded with "
                             "`cbmir.core.decode.read_image_file` and preprocessed with "
                             "`cbmir.core.preprocess.preprocess` (the plugin's own path)"),
        "folds_description": (f"{len(splits)} splits from the manifest ({', '.join(splits)}); for "
                              "figshare these are Cheng et al.'s cvind5fold folds, described by the "
                              "authors as patient-level (not verifiable here: no patient ids)"),
        "patient_exclusion": ("query's own patient left out of its ranking" if has_patients else
                              "not possible: the manifest has no patient ids; the folds themselves "
                              "separate patients per Cheng et al."),
        "model": (f"GoogLeNet trunk (1-channel, from scratch) -> GeM (learnable p, init 3) -> "
                  f"Linear 1024->{args.dim} -> L2; input {args.input_size}x{args.input_size}"),
        "training": (f"{args.loss} loss, AdamW (wd 5e-4), one-cycle LR peak {args.lr}, "
                     f"batch {args.batch_size}, {args.epochs} epochs, bf16 autocast on CPU when "
                     "supported, augmentation: LR flip, +-10 deg rotation, +-10% scale, +-6% shift, "
                     "gamma/contrast jitter; seed " + str(args.seed)),
        "hardware": "",
    }


def settings_of(args) -> BenchmarkSettings:
    """The options the benchmark steps use, converted once."""
    return BenchmarkSettings(manifest=args.manifest, runs=Path(args.runs),
                             input_size=args.input_size, seed=args.seed, name=args.name, model_version=args.model_version,
                             max_int8_map_drop=args.max_int8_map_drop,
                             fine_weight=args.fine_weight, fine_dim=args.fine_dim)


def trained(run_dir: Path, epochs: int) -> bool:
    """Whether `run_dir` holds a finished training of `epochs` epochs (model.pt + train.json)."""
    summary = run_dir / "train.json"
    return ((run_dir / "model.pt").is_file() and summary.is_file()
            and len(json.loads(summary.read_text())["history"]) >= epochs)


def compare_losses(args, records, splits, reference: dict, losses: list[str]) -> str:
    """Train each alternative loss on the reference fold with the same budget; Markdown table."""
    fold = reference["fold"]
    others = [s for s in splits if s != fold]
    rows = [(args.loss, reference)]
    for loss in losses:
        run_dir = Path(args.runs) / f"loss-{loss}-{fold}"
        result_file = run_dir / "result.json"
        if not result_file.is_file():
            print(f"loss comparison: {loss} on {fold}", flush=True)
            config = base_config(args, run_dir, others)
            config.loss = loss
            fit(config, resume=True)
            result = fold_result(run_dir, records, fold, others, settings_of(args))
            result_file.write_text(json.dumps(result, indent=2))
        rows.append((loss, json.loads(result_file.read_text())))
    lines = [f"## Loss comparison ({fold} held out, same recipe and epochs)", "",
             "| loss | mAP | P@1 | P@10 | train time |", "|---|---|---|---|---|"]
    for loss, result in rows:
        m = result["metrics"]
        lines.append(f"| {loss} | {m['mAP']:.4f} | {m['P@1']:.4f} | {m['P@10']:.4f} | "
                     f"{result['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    lock = (Path(args.runs) / ".lock").open("w")
    try:  # two benchmarks in one work folder would overwrite each other's checkpoints
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another `cbmir benchmark` is using {args.runs}; not starting a second one")
        return 1
    return _run_locked(args)


def _run_locked(args: argparse.Namespace) -> int:
    records = datasets.read_manifest(args.manifest)
    splits = sorted({r.split for r in records if r.split})
    chosen = parse_splits(args.folds) or splits
    runs, out = Path(args.runs), Path(args.out)
    settings = settings_of(args)
    info = protocol(args, splits, records)
    folds = []
    for fold in chosen:
        others = [s for s in splits if s != fold]
        run_dir = runs / fold
        result_file = run_dir / "result.json"
        check = len(folds) < args.quantize_check_folds
        earlier = json.loads(result_file.read_text()) if result_file.is_file() else None
        if earlier is not None and (not check or "quantization" in earlier):
            print(f"{fold}: done earlier, {result_file}")
            folds.append(earlier)
        else:
            if not trained(run_dir, args.epochs):
                print(f"{fold}: training on {','.join(others)}", flush=True)
                fit(base_config(args, run_dir, others), resume=True)
            result = fold_result(run_dir, records, fold, others, settings,
                                 check_quantization=check)
            result_file.write_text(json.dumps(result, indent=2))
            folds.append(result)
            print(f"{fold}: {json.dumps(result['metrics'])}", flush=True)
        info["hardware"] = folds[-1]["hardware"]
        write_report(out, args.name, info, folds, [quantization_section(folds)])

    sections = [quantization_section(folds)]
    if args.ship_default and set(chosen) == set(splits):
        full_dir = runs / "full"
        if not trained(full_dir, args.epochs):
            print(f"default model: training on all splits ({','.join(splits)})", flush=True)
            fit(base_config(args, full_dir, splits), resume=True)
        card = ship_default_model(full_dir, folds, settings, Path(args.models_dir))
        sections.append(default_model_section(card, args.models_dir))
    compared = [loss for loss in parse_splits(args.compare_losses) if loss != args.loss]
    if compared and folds:
        sections.append(compare_losses(args, records, splits, folds[0], compared))
    if args.notes and Path(args.notes).is_file():
        sections.append(Path(args.notes).read_text())
    payload = write_report(out, args.name, info, folds, sections)
    print(json.dumps(payload.get("summary", {}), indent=2))
    shutil.rmtree(runs / "scratch", ignore_errors=True)
    return 0
