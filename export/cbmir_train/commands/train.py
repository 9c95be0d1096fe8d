"""`cbmir train`: train the retrieval network on manifest splits."""
from __future__ import annotations

import argparse

from cbmir.core.manifest import parse_splits

from ..losses import LOSSES
from ..recipe import RECIPE
from ..training import TrainConfig, fit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="CSV path,label,patient_id,split")
    parser.add_argument("--out", required=True, help="run folder: last.pt, model.pt, train.json")
    parser.add_argument("--train-splits", default="", help="comma-separated split names (default: all)")
    parser.add_argument("--val-splits", default="", help="splits scored (mAP within them) each epoch")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--lr", type=float, default=RECIPE["lr"], help="peak learning rate (one-cycle)")
    parser.add_argument("--weight-decay", type=float, default=RECIPE["weight_decay"])
    parser.add_argument("--input-size", type=int, default=RECIPE["input_size"])
    parser.add_argument("--dim", type=int, default=RECIPE["dim"], help="embedding dimension D")
    parser.add_argument("--loss", choices=LOSSES, default=RECIPE["loss"])
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--instance-weight", type=float, default=0.0,
                        help="lambda of an instance-level NT-Xent term (two augmented views of an "
                             "image must match each other more than other images); 0 = off")
    parser.add_argument("--instance-temperature", type=float, default=0.1)
    parser.add_argument("--data-device", choices=("auto", "cpu"), default="auto",
                        help="keep the preloaded inputs on the training device (auto) or in RAM")
    parser.add_argument("--weights", help="state dict for the GoogLeNet trunk (e.g. torchvision ImageNet)")
    parser.add_argument("--seed", type=int, default=RECIPE["seed"])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--cache-dir", help="keep preprocessed inputs here between runs")
    parser.add_argument("--limit", type=int, default=0, help="train on N images only, stratified by label")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        manifest=args.manifest, out=args.out, train_splits=parse_splits(args.train_splits),
        val_splits=parse_splits(args.val_splits), epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, input_size=args.input_size, dim=args.dim,
        loss=args.loss, augment=args.augment, seed=args.seed, weights=args.weights,
        device=args.device, precision=args.precision, threads=args.threads,
        cache_dir=args.cache_dir, limit=args.limit, progress=not args.quiet,
        instance_weight=args.instance_weight, instance_temperature=args.instance_temperature,
        data_device=args.data_device)


def run(args: argparse.Namespace) -> int:
    summary = fit(config_from_args(args), resume=args.resume)
    last = summary["history"][-1] if summary["history"] else {}
    print(f"trained {summary['train_images']} images for {len(summary['history'])} epochs "
          f"in {summary['train_seconds']} s on {summary['hardware']}; last epoch {last}")
    return 0
