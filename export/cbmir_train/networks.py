"""GoogLeNet (Inception v1) trunk -> GeM -> linear embedding -> L2 normalisation.

The trunk is defined here (not imported from torchvision, which does not
install beside this torch) with torchvision's module names, so a torchvision
ImageNet state dict loads into it directly. Like torchvision, the "5x5" branch
uses a 3x3 convolution; keeping that quirk is what makes those weights fit.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GeM, gem

TRUNK_CHANNELS = 1024
MID_CHANNELS = 832  # inception4e: the layer of the fine descriptor (RetrievalNet)
MID_GEM_P = 3.0

# name -> (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj), torchvision's table.
INCEPTION_TABLE = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels."""

    def __init__(self, in_ch, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_ch, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNetTrunk(nn.Module):
    """Inception v1 up to inception5b (1024 channels), without auxiliary heads or classifier."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(*INCEPTION_TABLE["inception3a"])
        self.inception3b = Inception(*INCEPTION_TABLE["inception3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            setattr(self, name, Inception(*INCEPTION_TABLE[name]))
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(*INCEPTION_TABLE["inception5a"])
        self.inception5b = Inception(*INCEPTION_TABLE["inception5b"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_mid(self.to_mid(x))

    def to_mid(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> inception4e output (MID_CHANNELS), the fine descriptor's features."""
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        return x

    def from_mid(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception5b(self.inception5a(self.maxpool4(x)))


class RetrievalNet(nn.Module):
    """Single-channel slice (N, 1, S, S) -> (N, self.dim) unit-length search vector.

    The loss trains `label_embedding` (dim): same-type images close together, which
    squeezes each type towards a point. With `fine_weight` > 0 the search vector also
    carries the GeM-pooled inception4e features (mid-level, less squeezed by the label
    loss; no extra weights): [embedding, fine_weight x unit(GeM(inception4e))], unit
    length, so the cosine orders images within a type too (export/figshare-notes.md).
    """

    def __init__(self, dim: int = 128, gem_p: float = 3.0, dropout: float = 0.0,
                 fine_weight: float = 0.0, fine_dim: int = 0):
        super().__init__()
        self.label_dim = dim
        self.fine_weight = float(fine_weight)
        self.fine_dim = int(fine_dim) if self.fine_weight > 0 else 0
        self.dim = dim + ((self.fine_dim or MID_CHANNELS) if self.fine_weight > 0 else 0)
        # fine_dim > 0: the mid-level features are centred and projected on their first
        # fine_dim principal axes (set_fine_projection: fitted on the run's training images,
        # not saved in checkpoints), so the search vector stays small (Annoy, REST latency).
        self.register_buffer("fine_mean", torch.zeros(MID_CHANNELS), persistent=False)
        self.register_buffer("fine_basis", torch.eye(MID_CHANNELS)[:, :self.fine_dim],
                             persistent=False)
        self.trunk = GoogLeNetTrunk(in_channels=1)
        self.pool = GeM(p=gem_p)
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Linear(TRUNK_CHANNELS, dim)

    def label_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) unit vectors: what the training losses see."""
        return self._embed(self.trunk(x))

    def _embed(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedding(self.dropout(self.pool(features))), dim=1)

    @staticmethod
    def fine_features(mid: torch.Tensor) -> torch.Tensor:
        """Unit GeM-pooled inception4e features (MID_CHANNELS)."""
        return F.normalize(gem(mid, MID_GEM_P), dim=1)

    def set_fine_projection(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        self.fine_mean.copy_(mean)
        self.fine_basis.copy_(basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fine_weight <= 0:
            return self.label_embedding(x)
        mid = self.trunk.to_mid(x)
        fine = self.fine_features(mid)
        if self.fine_dim:
            fine = F.normalize((fine - self.fine_mean) @ self.fine_basis, dim=1)
        vector = torch.cat([self._embed(self.trunk.from_mid(mid)), self.fine_weight * fine], 1)
        return F.normalize(vector, dim=1)


def trunk_state_from(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision GoogLeNet (or our own) state dict onto `GoogLeNetTrunk` names.

    Drops aux heads and the classifier; turns an RGB conv1 into a grey one by
    summing the colour filters, which equals feeding the grey image as R=G=B.
    """
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    trunk = {}
    for name, tensor in state.items():
        for prefix in ("module.", "trunk."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if name.startswith(("aux1.", "aux2.", "fc.", "embedding.", "pool.")):
            continue
        trunk[name] = tensor
    conv1 = trunk.get("conv1.conv.weight")
    if conv1 is not None and conv1.shape[1] == 3:
        trunk["conv1.conv.weight"] = conv1.sum(dim=1, keepdim=True)
    return trunk


def load_trunk_weights(model: RetrievalNet, path: str | Path) -> list[str]:
    """Load trunk weights from FILE; returns the trunk keys that stayed uninitialised."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = model.trunk.load_state_dict(trunk_state_from(state), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{path}: keys that do not belong to a GoogLeNet trunk: "
                         f"{result.unexpected_keys[:5]}")
    return list(result.missing_keys)


def build_model(dim: int = 128, gem_p: float = 3.0, dropout: float = 0.0,
                weights: str | Path | None = None, fine_weight: float = 0.0,
                fine_dim: int = 0) -> RetrievalNet:
    model = RetrievalNet(dim=dim, gem_p=gem_p, dropout=dropout, fine_weight=fine_weight,
                         fine_dim=fine_dim)
    if weights:
        missing = load_trunk_weights(model, weights)
        if missing:
            raise ValueError(f"{weights}: trunk weights missing for {missing[:5]}")
    return model
