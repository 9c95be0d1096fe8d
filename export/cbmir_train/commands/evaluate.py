"""`cbmir evaluate`: mAP and P@k of a model (ONNX or checkpoint) on manifest splits."""
from __future__ import annotations

import argparse

from cbmir.core.manifest import parse_splits

from ..evaluation import evaluate
from ..finegrained import DEFAULT_SEED
from . import search_vector_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="ONNX file (no torch needed) or run folder/.pt")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--queries", required=True, help="query split(s), comma-separated")
    parser.add_argument("--database", required=True, help="database split(s), comma-separated")
    parser.add_argument("--out", required=True, help="folder for evaluation.json/.md and PNG plots")
    parser.add_argument("--map", choices=("pca", "tsne"), default="pca", help="2-D embedding map")
    parser.add_argument("--cache-dir", help="reuse preprocessed inputs kept here")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = default)")
    parser.add_argument("--limit", type=int, default=0,
                        help="evaluate N images only, stratified by split and label (smoke runs)")
    parser.add_argument("--finegrained-seed", type=int, default=DEFAULT_SEED,
                        help="seed of the perturbed copies of the fine-grained measures")
    parser.add_argument("--no-finegrained", dest="finegrained", action="store_false",
                        help="skip the fine-grained (within-type) measures")
    search_vector_options.add_arguments(parser)
    parser.add_argument("--rerank", action="store_true",
                        help="also score aQE and DBA re-ranking variants (label and copy measures)")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    result = evaluate(args.model, args.manifest, parse_splits(args.queries),
                      parse_splits(args.database), args.out, cache_dir=args.cache_dir,
                      map_method=args.map, threads=args.threads, progress=not args.quiet,
                      limit=args.limit,
                      finegrained_seed=args.finegrained_seed if args.finegrained else None,
                      rerank=args.rerank, fine_weight=args.fine_weight,
                      fine_dim=args.fine_dim)
    print(f"mAP {result['mAP']:.4f}  P@1 {result['P@1']:.4f}  P@5 {result['P@5']:.4f}  "
          f"P@10 {result['P@10']:.4f}  ({result['queries']} queries, {result['database']} database)"
          f" -> {args.out}")
    fine = result.get("finegrained")
    if fine:
        held_out, spread = fine["copy"]["query splits"], fine["spread"]
        own = fine["own_patient_first"]["rate"]
        print(f"fine-grained: copy finds original first {held_out['top1']:.3f} (median rank "
              f"{held_out['median_rank']:g}), own patient first "
              f"{'n/a' if own is None else f'{own:.3f}'}"
              + (f", median same-type cosine {spread['median_same_type_cosine']:.4f}, top-10 span "
                 f"{spread['median_top10_span']:.4f}" if spread else ""))
    for row in result.get("reranking", []):
        copy = row.get("copy") or {}
        print(f"re-ranking {row['variant']}: mAP {row['mAP']:.4f}  P@10 {row['P@10']:.4f}"
              + (f"  copy first {copy['top1']:.3f}" if copy else ""))
    return 0
