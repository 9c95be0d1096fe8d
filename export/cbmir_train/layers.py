"""Generalized-mean (GeM) pooling.

GeM interpolates between average pooling (p=1) and max pooling (p->inf); a
learnable p lets the network decide how peaked the pooled tumour evidence is.
The pure function is kept apart so ONNX export and tests see the same maths.
"""
from __future__ import annotations

import torch
from torch import nn

GEM_EPS = 1e-6


def gem(features: torch.Tensor, p: torch.Tensor | float, eps: float = GEM_EPS) -> torch.Tensor:
    """(N, C, H, W) non-negative features -> (N, C): (mean(x^p))^(1/p)."""
    return features.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling with a learnable exponent p (initial 3, as in Radenovic et al.)."""

    def __init__(self, p: float = 3.0, eps: float = GEM_EPS, learnable: bool = True):
        super().__init__()
        value = torch.tensor([float(p)])
        self.p = nn.Parameter(value) if learnable else value
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return gem(features, self.p, self.eps)

    def __repr__(self) -> str:
        return f"GeM(p={float(self.p.detach()):.4f}, eps={self.eps})"
