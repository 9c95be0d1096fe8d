"""The options that shape a run's search vector (networks.RetrievalNet's fine part), shared by
`cbmir export`, `cbmir evaluate` and `cbmir benchmark`; argparse only, so no torch to import."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fine-weight", type=float, default=0.0,
                        help="append a run's GeM-pooled inception4e features x W to its search "
                             "vector (orders images within a type; no trained weights); 0 = off")
    parser.add_argument("--fine-dim", type=int, default=0,
                        help="keep only their first N principal axes, fitted on the run's "
                             "training images (a smaller vector); 0 = all 832")
