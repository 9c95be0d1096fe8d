"""`cbmir quantize`: static INT8 (QDQ, per-channel) ONNX, calibrated on training images.

With --queries/--database it also measures the mAP change against the FP32
model and the CPU speed-up, and records both in the INT8 model card.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cbmir.core.embed import card_path_for, load_card
from cbmir.core.manifest import parse_splits

from ..onnx_export import write_card
from ..quantization import compare_precisions, quantize_with_card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="FP32 ONNX model (with its .json card)")
    parser.add_argument("--out", required=True, help="INT8 ONNX file to write")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--calibration-splits", default="", help="training splits (default: all)")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    parser.add_argument("--queries", default="", help="split(s) to score FP32 vs INT8 (optional)")
    parser.add_argument("--database", default="")
    parser.add_argument("--threads", type=int, default=2, help="threads for the latency probe")
    parser.add_argument("--cache-dir")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    fp32, int8 = Path(args.model), Path(args.out)
    card = quantize_with_card(fp32, int8, load_card(fp32), args.manifest,
                              parse_splits(args.calibration_splits), args.calibration_images,
                              args.cache_dir, args.seed, args.method,
                              recorded_splits=args.calibration_splits or "all")
    # the comparison loads the INT8 model through its card, written above
    queries, database = parse_splits(args.queries), parse_splits(args.database)
    if queries and database:
        card["quantization"]["comparison"] = compare_precisions(
            fp32, int8, args.manifest, queries, database, args.cache_dir, args.threads)
        print(json.dumps(card["quantization"]["comparison"], indent=2))
        write_card(int8, card)
    print(f"wrote {int8} ({int8.stat().st_size / 1e6:.1f} MB) and {card_path_for(int8)}")
    return 0
