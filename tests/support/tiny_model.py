"""A randomly initialised tiny ONNX embedder with a valid model card.

Why: plugin tests check plumbing (ingest, durability, REST), not retrieval
quality, so they must not depend on a trained model. A random conv net still
maps identical pixels to identical vectors and different images apart.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from cbmir.core.preprocess import PREPROCESS_VERSION

INPUT_SIZE = 64
DIM = 32


def export_tiny_model(directory: str | Path, seed: int = 0, version: str = "tiny-random-1") -> Path:
    """Write tiny.onnx + tiny.json into `directory`; returns the .onnx path."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(4))
            self.head = nn.Linear(16 * 16, DIM)

        def forward(self, image):
            vector = self.head(self.features(image).flatten(1))
            return nn.functional.normalize(vector, dim=1)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny.onnx"
    model = Tiny().eval()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, torch.zeros(2, 1, INPUT_SIZE, INPUT_SIZE), str(path),
                          input_names=["image"], output_names=["embedding"],
                          dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)
    card = {"name": "tiny-random", "version": version, "architecture": "tiny-conv (random init)",
            "embedding_dim": DIM, "input_size": INPUT_SIZE,
            "preprocess_version": PREPROCESS_VERSION, "precision": "fp32",
            "training_data": "none (random weights, for tests)", "metrics": {}, "created": "test"}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return path
