"""The fine part of the search vector (networks.RetrievalNet, `--fine-weight`, `--fine-dim`):
its principal axes, fitted on the run's own training images.

Why a projection: the GeM-pooled inception4e features have 832 values; appended whole, the
search vector grows from 128 to 960 values and `GET /cbmir/similar` slows with it
(export/figshare-notes.md). Centred and projected on their first principal axes they keep
most of what orders images within a type in a fraction of the size. Fitted on the training
images only, so an evaluation's query fold never shapes it.
"""
from __future__ import annotations

import numpy as np
import torch

from . import datasets


@torch.no_grad()
def mid_features(model, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, MID_CHANNELS) unit mid-level features of preprocessed inputs."""
    model = model.eval()
    device = next(model.parameters()).device
    parts = [model.fine_features(model.trunk.to_mid(torch.from_numpy(
        np.ascontiguousarray(inputs[start:start + batch_size])).to(device))).float().cpu().numpy()
        for start in range(0, len(inputs), batch_size)]
    return np.concatenate(parts)


def principal_axes(features: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, (C, dim) basis): the first `dim` principal axes of `features` (rows)."""
    if dim > min(features.shape):
        raise ValueError(f"--fine-dim {dim} needs at least {dim} training images and channels")
    mean = features.mean(axis=0)
    _, _, axes = np.linalg.svd(features - mean, full_matrices=False)
    return mean.astype(np.float32), np.ascontiguousarray(axes[:dim].T, dtype=np.float32)


def fit_fine_projection(model, config: dict, progress: bool = False) -> None:
    """Set the model's fine projection from the training images its run config names."""
    records = datasets.training_records(datasets.read_manifest(config["manifest"]),
                                        config.get("train_splits") or [], config.get("limit", 0))
    inputs = datasets.load_inputs(records, config["input_size"], config.get("cache_dir"), progress)
    mean, basis = principal_axes(mid_features(model, inputs), model.fine_dim)
    model.set_fine_projection(torch.from_numpy(mean), torch.from_numpy(basis))
