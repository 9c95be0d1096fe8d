"""The instance-level (NT-Xent) term and the training step that feeds it two views."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cbmir_train import training
from cbmir_train.losses import InstanceContrastLoss, ProxyLoss
from cbmir_train.training import TrainConfig, data_device_for, training_step

REAL_AUGMENT = training.augment_batch


def test_nt_xent_matches_hand_computation():
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    loss = InstanceContrastLoss(temperature=0.5)(first, second)
    views = F.normalize(torch.cat([first, second]), dim=1)
    sims = (views @ views.t() / 0.5).tolist()
    partner = [2, 3, 0, 1]
    expected = 0.0
    for i in range(4):
        others = [math.exp(sims[i][j]) for j in range(4) if j != i]
        expected += -math.log(math.exp(sims[i][partner[i]]) / sum(others))
    assert float(loss) == pytest.approx(expected / 4, rel=1e-5)


def test_nt_xent_prefers_matching_views():
    torch.manual_seed(0)
    first = F.normalize(torch.randn(8, 16), dim=1)
    matched = first + 0.01 * torch.randn(8, 16)
    shuffled = matched.roll(1, dims=0)  # every view paired with another image
    loss = InstanceContrastLoss()
    assert float(loss(first, matched)) < 0.1 < float(loss(first, shuffled))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16 * 16, 8)

    def forward(self, batch):
        return F.normalize(self.linear(batch.flatten(1)), dim=1)

    def label_embedding(self, batch):  # what training_step calls (RetrievalNet's interface)
        return self(batch)


def step(weight: float, monkeypatch, calls: list):
    def counting(batch, generator, *args):
        calls.append(batch.device)
        return REAL_AUGMENT(batch, generator, *args)

    monkeypatch.setattr(training, "augment_batch", counting)
    torch.manual_seed(0)
    model, criterion = Tiny(), ProxyLoss(3, 8)
    config = TrainConfig(manifest="m.csv", out="o", instance_weight=weight)
    batch = torch.randn(6, 1, 16, 16)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    instance = InstanceContrastLoss() if weight > 0 else None
    return training_step(model, criterion, batch, labels, torch.Generator().manual_seed(1),
                         config, False, instance), model


def test_training_step_adds_the_instance_term_on_a_second_view(monkeypatch):
    plain_calls, both_calls = [], []
    plain, _ = step(0.0, monkeypatch, plain_calls)
    both, model = step(1.0, monkeypatch, both_calls)
    assert len(plain_calls) == 1 and len(both_calls) == 2
    assert float(both) > float(plain)  # same label loss draw, plus a positive NT-Xent term
    both.backward()
    assert model.linear.weight.grad.abs().sum() > 0


def test_data_device():
    config = TrainConfig(manifest="m.csv", out="o")
    assert data_device_for(config, torch.device("cpu")) == torch.device("cpu")
    config.data_device = "cpu"
    assert data_device_for(config, torch.device("cuda")) == torch.device("cpu")
    config.data_device = "auto"
    assert data_device_for(config, torch.device("cuda")) == torch.device("cuda")
    config.data_device = "gpu0"
    with pytest.raises(ValueError):
        data_device_for(config, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentation_runs_on_the_training_device(monkeypatch):
    calls = []
    monkeypatch.setattr(training, "augment_batch", lambda batch, generator: calls.append(
        batch.device) or REAL_AUGMENT(batch, generator))
    model, criterion = Tiny().cuda(), ProxyLoss(3, 8).cuda()
    config = TrainConfig(manifest="m.csv", out="o")
    training_step(model, criterion, torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0]).cuda(),
                  torch.Generator().manual_seed(0), config, False)
    assert calls and all(device.type == "cuda" for device in calls)
