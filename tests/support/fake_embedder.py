"""A model stand-in for unit tests of the service (engine, worker, follower), and an engine on it.

Why not the tiny ONNX model: exporting it needs torch and seconds; these tests check plumbing
(what is queued, stored, skipped, answered), not vectors. The vectors are still a function of the
pixels (band means, L2-normalised), so the same picture gives the same vector.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cbmir.core.preprocess import preprocess
from cbmir.service.config import Config
from cbmir.service.engine import Engine

INPUT_SIZE = 16
DIM = 8


class FakeEmbedder:
    """The parts of cbmir.core.embed.Embedder the service uses."""

    def __init__(self, version: str = "fake-1", model_path: str | Path = "fake.onnx"):
        self.version, self.model_path = version, Path(model_path)
        self.input_size, self.dim, self.providers = INPUT_SIZE, DIM, ["Fake"]
        self.batches: list[int] = []  # size of every embed_inputs call

    def embed_inputs(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        bands = batch.reshape(len(batch), DIM, -1).mean(axis=2) + 1e-3
        return (bands / np.linalg.norm(bands, axis=1, keepdims=True)).astype(np.float32)

    def embed_images(self, images) -> np.ndarray:
        return self.embed_inputs(np.stack([preprocess(i, INPUT_SIZE) for i in images]))

    def describe(self) -> dict:
        return {"version": self.version, "dim": DIM, "input_size": INPUT_SIZE}


def fake_engine(directory: Path, lines: list | None = None, embedder=None, **config) -> Engine:
    """An Engine over a fresh index in `directory`, its model already 'loaded' (FakeEmbedder);
    log lines go to `lines`. The model file does not exist, so nothing reloads it."""
    config.setdefault("model_path", Path(directory) / "absent.onnx")
    engine = Engine(Config(index_directory=Path(directory), **config),
                    log=(lines if lines is not None else []).append)
    engine.embedder = embedder or FakeEmbedder()
    engine.model_error = None
    return engine
