"""MRI-appropriate augmentation on batches of preprocessed inputs.

Acts after `cbmir.core.preprocess.preprocess` (so the shared function is still the
only pixel -> input path) and on whole batches with `grid_sample`, which costs
little next to the network. Geometry: left-right flip (brains are roughly
symmetric, tumours occur on either side), small rotation/scale/shift (head
position). Intensity: gamma and contrast jitter (scanner, sequence and windowing
differences). No colour, no up-down flips, no elastic warps that invent anatomy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cbmir.core.preprocess import MEAN, STD


@dataclass(frozen=True)
class AugmentSettings:
    flip_probability: float = 0.5
    max_rotation_degrees: float = 10.0
    max_scale_change: float = 0.10
    max_shift_fraction: float = 0.06
    max_log_gamma: float = 0.3
    max_contrast_change: float = 0.10  # percentile-estimate jitter; no brightness shift, since
    # preprocessing always maps the background to 0 and a shift would make it grey.


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator) * (high - low) + low


def random_affine(count: int, settings: AugmentSettings, generator: torch.Generator) -> torch.Tensor:
    """(count, 2, 3) sampling matrices for `affine_grid`: flip, rotate, scale, shift."""
    angle = _uniform(count, -1, 1, generator) * math.radians(settings.max_rotation_degrees)
    scale = 1 + _uniform(count, -1, 1, generator) * settings.max_scale_change
    flip = torch.where(torch.rand(count, generator=generator) < settings.flip_probability, -1.0, 1.0)
    shift = _uniform(2 * count, -1, 1, generator).view(count, 2) * 2 * settings.max_shift_fraction
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, :, 2] = shift
    return theta


def augment_batch(batch: torch.Tensor, generator: torch.Generator,
                  settings: AugmentSettings = AugmentSettings()) -> torch.Tensor:
    """Randomly transformed copy of an (N, 1, S, S) batch of model inputs."""
    count = batch.shape[0]
    unit = (batch.float() * STD + MEAN).clamp(0, 1)  # back to [0, 1]; 0 = background
    gamma = torch.exp(_uniform(count, -1, 1, generator) * settings.max_log_gamma)
    contrast = 1 + _uniform(count, -1, 1, generator) * settings.max_contrast_change
    gamma, contrast = (t.to(batch.device).view(-1, 1, 1, 1) for t in (gamma, contrast))
    unit = unit.clamp_min(1e-6).pow(gamma)
    unit = (unit * contrast).clamp(0, 1)
    theta = random_affine(count, settings, generator).to(batch.device)
    grid = F.affine_grid(theta, list(unit.shape), align_corners=False)
    unit = F.grid_sample(unit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return ((unit - MEAN) / STD).to(batch.dtype)
