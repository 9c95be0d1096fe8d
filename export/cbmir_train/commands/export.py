"""`cbmir export`: trained run folder -> ONNX model + model card."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..onnx_export import export_run
from . import search_vector_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder (model.pt / last.pt) or .pt file")
    parser.add_argument("--out", required=True, help="ONNX file to write (card goes beside it, .json)")
    parser.add_argument("--name", default="cbmir-googlenet-gem")
    parser.add_argument("--version", help="model version (default: ONNX file stem)")
    parser.add_argument("--training-data", help="text for the card (default: manifest and splits)")
    parser.add_argument("--metrics", help="JSON file whose content goes into the card's metrics")
    parser.add_argument("--evaluation", help="evaluation.json (or its folder) from `cbmir evaluate` "
                        "to put in the card (default: RUN/evaluation.json when present)")
    search_vector_options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    path, _ = export_run(args.checkpoint, args.out, name=args.name, version=args.version,
                         training_data=args.training_data, metrics=metrics,
                         evaluation=args.evaluation, fine_weight=args.fine_weight,
                         fine_dim=args.fine_dim)
    print(f"wrote {path} and {path.with_suffix('.json')} (the card is also inside the ONNX file)")
    return 0
