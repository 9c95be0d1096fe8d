"""Reference vectors of the shipped model (models/default.reference.json), and the command
that records them.

Why: a model file, its card and the preprocessing code can each change without the others
(a new export, an edited card, a "harmless" tweak to `cbmir.core.preprocess`); retrieval then
degrades silently. tests/unit/core/test_default_model.py embeds the same images again and
compares with what was recorded when the model was shipped.

The images are made here from closed-form formulas (no random generator, whose streams may
change between numpy versions, and no shared data), in the layouts the plugin meets: 16-bit
512x512, 8-bit, 12-bit non-square, signed with an offset. When ../shared/data is present the
first figshare JPG of each class is recorded as well.

Regenerate after shipping a new model (then commit models/default.reference.json with it):

    PYTHONPATH=plugin:tests .venv/bin/python -m support.model_reference --write
    # or: make model-reference
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "default.onnx"
FIGSHARE = REPO.parent / "shared" / "data" / "figshare-cheng"
# Same machine, same onnxruntime: vectors repeat to 1e-7. The tolerance leaves room for other
# CPUs' INT8 kernels and summation order, yet catches the subtlest preprocessing change tried
# (low percentile 0.5 -> 1.0: cosine 0.999975, a component off by 3.1e-3; MEAN 0.5 -> 0.49:
# 0.99786; bicubic instead of bilinear resizing: 0.940). Two of the synthetic images are 0.9989
# apart for this model, so a looser cosine would not even tell images apart.
MIN_COSINE = 0.99999
MAX_ABS_DIFFERENCE = 2e-3


def reference_path(model_path: str | Path = DEFAULT_MODEL) -> Path:
    return Path(model_path).with_suffix(".reference.json")


def _phantom(height: int, width: int, tumour: tuple[float, float, float], skull: float = 0.9,
             texture: float = 8.0) -> np.ndarray:
    """A head-like slice in [0, 1]: bright skull ring, textured brain, one bright lesion."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    v = (y - height / 2) / (height / 2)
    u = (x - width / 2) / (width / 2)
    radius = np.sqrt((u / 0.8) ** 2 + (v / 0.92) ** 2)
    brain = (radius < skull) * (0.45 + 0.08 * np.sin(texture * u) * np.cos(texture * 1.3 * v)
                                + 0.05 * np.cos(3 * texture * (u + v)))
    ring = np.exp(-((radius - skull - 0.03) / 0.025) ** 2)
    ty, tx, size = tumour
    lesion = np.exp(-(((u - tx) ** 2 + (v - ty) ** 2) / size ** 2))
    ventricles = 0.25 * np.exp(-((u / 0.12) ** 2 + (v / 0.3) ** 2))
    return np.clip(brain + 0.9 * ring + 0.5 * lesion - ventricles * (radius < skull), 0, 1)


def synthetic_images() -> dict[str, np.ndarray]:
    """name -> raw pixel array, exactly as a decoder would hand it to `preprocess`."""
    return {
        "uint16-512-lesion-left": np.round(_phantom(512, 512, (-0.2, -0.35, 0.12)) * 4000
                                           ).astype(np.uint16),
        "uint8-256-lesion-right": np.round(_phantom(256, 256, (0.1, 0.4, 0.2), texture=5.0)
                                           * 255).astype(np.uint8),
        "uint16-12bit-240x320-sellar": np.round(_phantom(240, 320, (0.35, 0.0, 0.08), skull=0.85)
                                                * 4095).astype(np.uint16),
        "int16-offset-400-no-lesion": (np.round(_phantom(400, 400, (0.0, 0.0, 1e-3),
                                                         texture=11.0) * 3000) - 1024
                                       ).astype(np.int16),
    }


def figshare_images(limit_per_label: int = 1) -> dict[str, np.ndarray]:
    """The first JPG(s) of each class in the manifest; {} when the shared data is absent."""
    manifest = FIGSHARE / "manifest.csv"
    if not manifest.is_file():
        return {}
    from cbmir.core.decode import read_image_file

    chosen: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    with manifest.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if counts.get(row["label"], 0) < limit_per_label:
                counts[row["label"]] = counts.get(row["label"], 0) + 1
                chosen[row["path"]] = read_image_file(FIGSHARE / row["path"])
    return chosen


def embed(model_path: str | Path, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One image per call (batch 1, as the REST query path embeds)."""
    from cbmir.core.embed import Embedder

    embedder = Embedder(model_path, threads=1, device="cpu")
    return {name: embedder.embed_images([pixels])[0] for name, pixels in images.items()}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record(model_path: str | Path = DEFAULT_MODEL) -> dict:
    import onnxruntime

    from cbmir.core.embed import load_card
    from cbmir.core.preprocess import PREPROCESS_VERSION

    card = load_card(model_path)
    vectors = {"synthetic": embed(model_path, synthetic_images()),
               "figshare": embed(model_path, figshare_images())}
    return {
        "about": "Vectors of this model for images made by tests/support/model_reference.py; "
                 "checked by tests/unit/core/test_default_model.py. Regenerate with "
                 "`make model-reference` after shipping a new model.",
        "model_version": card.get("version"), "model_sha256": file_sha256(model_path),
        "preprocess_version": PREPROCESS_VERSION,
        "tolerance": {"min_cosine": MIN_COSINE, "max_abs_difference": MAX_ABS_DIFFERENCE},
        "recorded_with": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                          "python": platform.python_version(), "machine": platform.machine(),
                          "threads": 1, "provider": "CPUExecutionProvider"},
        "vectors": {group: {name: [round(float(x), 7) for x in vector]
                            for name, vector in found.items()}
                    for group, found in vectors.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--write", action="store_true",
                        help="write <model>.reference.json (else print it)")
    args = parser.parse_args(argv)
    reference = record(args.model)
    if not reference["vectors"]["figshare"]:
        print(f"note: {FIGSHARE} absent, only the synthetic images are recorded", file=sys.stderr)
    text = json.dumps(reference, indent=1) + "\n"
    if args.write:
        out = reference_path(args.model)
        out.write_text(text)
        print(f"wrote {out} ({sum(len(v) for v in reference['vectors'].values())} vectors, "
              f"model {reference['model_version']})")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
