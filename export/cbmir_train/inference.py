"""Torch-side loading of trained models and embedding of preprocessed inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .networks import RetrievalNet, build_model

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "last.pt"


def pick_device(name: str = "auto") -> torch.device:
    """'auto' = CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_weights_file(path: str | Path) -> Path:
    """A run folder (model.pt, else last.pt) or a .pt file."""
    path = Path(path)
    if path.is_dir():
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} holds neither {MODEL_FILE} nor {CHECKPOINT_FILE}")
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_trained(path: str | Path, fine_weight: float = 0.0,
                 fine_dim: int = 0) -> tuple[RetrievalNet, dict]:
    """(model in eval mode, saved payload without tensors) from a run folder or file.
    `fine_weight`, `fine_dim`: the search vector's fine part (networks.RetrievalNet); it adds
    no trained weights, so any run can be exported or evaluated with it; a projection
    (`fine_dim`) is fitted on the run's own training images (descriptor.py)."""
    payload = torch.load(resolve_weights_file(path), map_location="cpu", weights_only=False)
    config = payload["config"]
    model = build_model(dim=config["dim"], gem_p=config.get("gem_p", 3.0),
                        fine_weight=fine_weight, fine_dim=fine_dim)
    model.load_state_dict(payload["model"])
    model.eval()
    if model.fine_dim:
        from .descriptor import fit_fine_projection

        fit_fine_projection(model, config)
    info = {k: v for k, v in payload.items() if k not in ("model", "loss", "optimizer", "scheduler")}
    return model, info


@torch.no_grad()
def embed_inputs(model: RetrievalNet, inputs: np.ndarray, batch_size: int = 64,
                 device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """(N, 1, S, S) preprocessed inputs -> (N, D) float32 unit vectors, in fp32."""
    from tqdm import tqdm

    from cbmir.core.embed import embed_in_batches

    device = torch.device(device)
    model = model.to(device).eval()

    def embed(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(batch)).to(device)).float().cpu().numpy()

    with tqdm(total=-(-len(inputs) // batch_size), desc="embed", unit="batch",
              disable=not progress, leave=False) as bar:
        return embed_in_batches(embed, inputs, batch_size, model.dim,
                                lambda count, seconds: bar.update())
