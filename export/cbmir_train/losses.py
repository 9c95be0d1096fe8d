"""Metric-learning losses for unit-length embeddings.

`proxy` (normalised softmax with an additive cosine margin, CosFace/NormSoftmax
style) is the default: one learnable proxy per label, no pair mining, and it
converges in few epochs from scratch, which matters on a 2-core CPU.
`multisim` (Wang et al. 2019, multi-similarity with pair mining) is the pair-based
alternative, kept for comparison.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProxyLoss(nn.Module):
    """Cross-entropy over scaled cosines to per-class proxies, minus a margin on the true class."""

    def __init__(self, num_classes: int, dim: int, scale: float = 16.0, margin: float = 0.1):
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(num_classes, dim) / dim ** 0.5)
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(embeddings, dim=1) @ F.normalize(self.proxies, dim=1).t()
        margins = F.one_hot(labels, cosines.shape[1]).to(cosines.dtype) * self.margin
        return F.cross_entropy(self.scale * (cosines - margins), labels)

    def extra_repr(self) -> str:
        return f"classes={self.proxies.shape[0]}, scale={self.scale}, margin={self.margin}"


class MultiSimilarityLoss(nn.Module):
    """Multi-similarity loss with its hard-pair mining, over all pairs in the batch."""

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 mining_margin: float = 0.1):
        super().__init__()
        self.alpha, self.beta, self.base, self.mining_margin = alpha, beta, base, mining_margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = F.normalize(embeddings.float(), dim=1)
        sims = embeddings @ embeddings.t()
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive, negative = same & ~eye, ~same
        losses = []
        for i in range(len(labels)):
            pos, neg = sims[i][positive[i]], sims[i][negative[i]]
            if len(pos) == 0 or len(neg) == 0:
                continue
            # Mining: keep negatives harder than the easiest positive, and vice versa.
            neg = neg[neg + self.mining_margin > pos.min()]
            pos = pos[pos - self.mining_margin < sims[i][negative[i]].max()]
            if len(pos) == 0 or len(neg) == 0:
                continue
            pos_term = torch.log1p(torch.exp(-self.alpha * (pos - self.base)).sum()) / self.alpha
            neg_term = torch.log1p(torch.exp(self.beta * (neg - self.base)).sum()) / self.beta
            losses.append(pos_term + neg_term)
        if not losses:
            return embeddings.sum() * 0.0
        return torch.stack(losses).mean()


LOSSES = ("proxy", "multisim")


def build_loss(name: str, num_classes: int, dim: int) -> nn.Module:
    if name == "proxy":
        return ProxyLoss(num_classes, dim)
    if name == "multisim":
        return MultiSimilarityLoss()
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")


class InstanceContrastLoss(nn.Module):
    """NT-Xent / InfoNCE (SimCLR): two augmented views of one image must match each other
    more than any other image in the batch, same label included.

    Used beside the label loss (`TrainConfig.instance_weight`) so that images of one type
    are not squeezed to one point: the order within a type is what "most alike case" means.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        views = F.normalize(torch.cat([first, second]).float(), dim=1)
        count = first.shape[0]
        logits = views @ views.t() / self.temperature
        logits = logits.masked_fill(torch.eye(2 * count, dtype=torch.bool, device=logits.device),
                                    float("-inf"))
        partner = torch.arange(2 * count, device=logits.device).roll(count)
        return F.cross_entropy(logits, partner)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
