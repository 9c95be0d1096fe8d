"""`cbmir export`: trained run folder -> ONNX model + model card."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..inference import load_trained
from ..onnx_export import build_card, export_onnx, write_card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder (model.pt / last.pt) or .pt file")
    parser.add_argument("--out", required=True, help="ONNX file to write (card goes beside it, .json)")
    parser.add_argument("--name", default="cbmir-googlenet-gem")
    parser.add_argument("--version", help="model version (default: ONNX file stem + date)")
    parser.add_argument("--training-data", help="text for the card (default: manifest and splits)")
    parser.add_argument("--metrics", help="JSON file whose content goes into the card's metrics")


def run(args: argparse.Namespace) -> int:
    model, info = load_trained(args.checkpoint)
    config = info["config"]
    path = export_onnx(model, config["input_size"], args.out)
    history = info.get("history", [])
    training_data = args.training_data or (
        f"{Path(config['manifest']).name} splits {','.join(config['train_splits']) or 'all'} "
        f"({info.get('train_images', '?')} images)")
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    card = build_card(
        name=args.name, version=args.version or f"{path.stem}-{info.get('config', {}).get('seed', 0)}",
        dim=config["dim"], input_size=config["input_size"], precision="fp32",
        training_data=training_data, metrics=metrics, labels=info.get("labels", []),
        loss=config["loss"], epochs=len(history), train_seconds=info.get("train_seconds"),
        hardware=info.get("hardware"), training_config=config,
        final_epoch=history[-1] if history else None)
    write_card(path, card)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0
