"""`cbmir embed`: the images of a manifest -> float32 [N, D] unit vectors (.npy), no torch.

Rows keep manifest order; a DICOM file gives the vector of its first frame. Pixels
go through `cbmir.core.decode.read_image_file` (DICOM: `cbmir.core.decode.iter_frames`, the
decoding path the plugin indexes and answers `/cbmir/query` with) and
`Embedder.embed_images` (the shared `cbmir.core.preprocess.preprocess`). So for a DICOM
file and the same model this vector equals the one Orthanc stores for the file's
first frame (tests/plugin/test_same_vector.py checks it for every pixel layout and
way in; `cbmir verify` checks a running index); a JPG/PNG gives the vector
`POST /cbmir/query` computes for those bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cbmir.core import manifest
from cbmir.core.decode import read_image_file
from cbmir.core.embed import Embedder, embed_in_batches


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("A DICOM file gives the vector of its first frame, decoded like the plugin "
                     "decodes (cbmir.core.decode): with the model Orthanc runs it equals the vector "
                     "Orthanc stores for that frame. A JPG/PNG gives the vector POST "
                     "/cbmir/query computes for the same bytes.")
    parser.add_argument("--model", required=True, help="ONNX model (its .json card beside it)")
    parser.add_argument("--manifest", required=True, help="CSV with a `path` column, relative to it")
    parser.add_argument("--out", required=True, help=".npy file to write")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = default)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) or cpu")
    parser.add_argument("--quiet", action="store_true")


def embed_files(embedder: Embedder, paths: list[Path], batch_size: int = 32,
                progress: bool = True) -> np.ndarray:
    """(N, D) vectors of the files, read one batch at a time."""
    with tqdm(total=-(-len(paths) // batch_size), desc="embed", unit="batch",
              disable=not progress) as bar:
        return embed_in_batches(lambda chunk: embedder.embed_images([read_image_file(p)
                                                                     for p in chunk]),
                                paths, batch_size, embedder.dim, lambda n, seconds: bar.update())


def run(args: argparse.Namespace) -> int:
    try:
        paths = [row.path for row in manifest.read_manifest(args.manifest)]
    except manifest.ManifestError as error:
        print(f"cbmir embed: {error}", file=sys.stderr)
        return 2
    embedder = Embedder(args.model, threads=args.threads, device=args.device)
    vectors = embed_files(embedder, paths, args.batch_size, progress=not args.quiet)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {out}")
    return 0
