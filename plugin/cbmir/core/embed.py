"""ONNX embedder: model input batches -> L2-normalised float32 vectors.

The model card (JSON beside the .onnx file, same stem) tells the input size and
preprocessing version; a model trained with another preprocessing is refused,
because its vectors would silently disagree with the index.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cbmir.core.preprocess import PREPROCESS_VERSION, preprocess_batch

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
CARD_METADATA_KEY = "cbmir_model_card"  # the card's JSON inside the ONNX metadata_props


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded (missing file, bad card, wrong preprocessing)."""


def card_path_for(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".json")


def card_from_onnx(model_path: str | os.PathLike) -> str | None:
    """The card JSON text stored in the ONNX file's metadata_props, None if absent.
    Read through onnxruntime (the plugin has no `onnx` package); only used when the JSON
    beside the model is missing, so the extra session costs nothing in the usual case."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - not a loadable model: say the card is missing
        return None
    return session.get_modelmeta().custom_metadata_map.get(CARD_METADATA_KEY)


def load_card(model_path: str | os.PathLike) -> dict:
    """The JSON beside the model (MODEL.json) wins; else the copy inside the ONNX file."""
    path = card_path_for(model_path)
    if path.is_file():
        text = path.read_text()
    else:
        text = card_from_onnx(model_path) if Path(model_path).is_file() else None
        if text is None:
            raise ModelUnavailable(f"model card {path} not found beside the model, nor "
                                   f"inside {Path(model_path).name}")
        path = Path(f"{model_path} (metadata_props {CARD_METADATA_KEY})")
    try:
        card = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelUnavailable(f"model card {path} is not valid JSON: {error}") from error
    for key in ("embedding_dim", "input_size", "preprocess_version"):
        if key not in card:
            raise ModelUnavailable(f"model card {path} lacks '{key}'")
    if int(card["preprocess_version"]) != PREPROCESS_VERSION:
        raise ModelUnavailable(
            f"model {model_path} was made for preprocessing v{card['preprocess_version']}, "
            f"this code implements v{PREPROCESS_VERSION}")
    return card


def available_providers(device: str = "auto") -> list[str]:
    """CUDA first when present (device 'auto' or 'cuda'), CPU always as fallback."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    providers = []
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in have:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


class Embedder:
    """Loads one ONNX model and embeds preprocessed batches or raw pixel arrays."""

    def __init__(self, model_path: str | os.PathLike, threads: int = 0, device: str = "auto",
                 allow_spinning: bool = True):
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelUnavailable(f"model file {self.model_path} not found")
        self.card = load_card(self.model_path)
        self.input_size = int(self.card["input_size"])
        self.dim = int(self.card["embedding_dim"])
        self.version = str(self.card.get("version", self.model_path.stem))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not allow_spinning:  # idle pool threads sleep instead of burning a core
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.model_path), options,
                                                providers=available_providers(device))
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelUnavailable(f"cannot load {self.model_path}: {error}") from error
        self.providers = self.session.get_providers()

    def embed_inputs(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) preprocessed input -> (N, D) unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        (vectors,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch.astype(np.float32)})
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Raw 2-D pixel arrays -> (N, D) unit vectors, through the shared preprocessing."""
        return self.embed_inputs(preprocess_batch(images, self.input_size))

    def describe(self) -> dict:
        return {"path": str(self.model_path), "version": self.version, "dim": self.dim,
                "input_size": self.input_size, "providers": self.providers,
                "card": self.card}


def embed_in_batches(embed: Callable[[Sequence], np.ndarray], items: Sequence, batch_size: int,
                     dim: int, on_batch: Callable[[int, float], None] | None = None) -> np.ndarray:
    """(len(items), dim) float32: `embed` applied to consecutive slices of at most
    `batch_size` items, in order. Why one loop: the worker, `cbmir embed` and training's
    evaluation batch the same way; `items` may be model inputs or anything `embed` reads
    (file paths), so only one batch is in memory. `on_batch(count, seconds)` follows each
    batch (a progress bar, the worker's latency figures)."""
    chunks = []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        began = time.perf_counter()
        chunks.append(np.asarray(embed(batch), dtype=np.float32))
        if on_batch is not None:
            on_batch(len(batch), time.perf_counter() - began)
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
