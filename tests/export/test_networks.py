"""Network pieces: GeM maths, loading torchvision-style trunk weights, losses, augmentation."""
import numpy as np
import pytest
import torch

from cbmir.core.preprocess import MEAN, STD
from cbmir_train.augment import AugmentSettings, augment_batch
from cbmir_train.layers import GeM, gem
from cbmir_train.losses import MultiSimilarityLoss, ProxyLoss
from cbmir_train.networks import GoogLeNetTrunk, build_model, load_trunk_weights, trunk_state_from


def test_gem_limits():
    features = torch.rand(2, 3, 4, 4) + 0.1
    assert torch.allclose(gem(features, 1.0), features.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(gem(features, 200.0), features.amax(dim=(2, 3)), atol=2e-2)
    pool = GeM(3.0)
    assert pool.p.requires_grad and "p=3.0000" in repr(pool)


def test_model_output_is_unit_length():
    model = build_model(dim=24).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 64, 64))
    assert out.shape == (3, 24)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_torchvision_style_state_dict_loads_into_the_trunk(tmp_path):
    # Build a torchvision-named GoogLeNet state dict: RGB conv1, aux heads and fc to be dropped.
    trunk = GoogLeNetTrunk(in_channels=3)
    state = {name: torch.randn_like(t) if t.is_floating_point() else t
             for name, t in trunk.state_dict().items()}
    state["aux1.fc1.weight"] = torch.zeros(1024, 2048)
    state["fc.weight"] = torch.zeros(1000, 1024)
    path = tmp_path / "googlenet.pth"
    torch.save(state, path)
    model = build_model(dim=16)
    assert load_trunk_weights(model, path) == []
    loaded = model.trunk.state_dict()
    assert torch.equal(loaded["conv1.conv.weight"], state["conv1.conv.weight"].sum(1, keepdim=True))
    assert torch.equal(loaded["inception5b.branch4.1.conv.weight"],
                       state["inception5b.branch4.1.conv.weight"])
    # Summing colour filters == feeding the grey image as R=G=B.
    grey = torch.randn(1, 1, 32, 32)
    rgb_conv = torch.nn.functional.conv2d(grey.repeat(1, 3, 1, 1), state["conv1.conv.weight"])
    grey_conv = torch.nn.functional.conv2d(grey, loaded["conv1.conv.weight"])
    assert torch.allclose(rgb_conv, grey_conv, atol=1e-4)


def test_foreign_keys_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.layer1.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError):
        load_trunk_weights(build_model(dim=8), path)
    assert "fc.weight" not in trunk_state_from({"fc.weight": torch.zeros(1)})


@pytest.mark.parametrize("loss", [ProxyLoss(3, 8), MultiSimilarityLoss()])
def test_losses_prefer_clustered_embeddings(loss):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    if isinstance(loss, ProxyLoss):
        loss.proxies.data = centres.clone()
    clustered = centres[labels] + 0.01 * torch.randn(6, 8)
    scrambled = centres[torch.tensor([0, 1, 2, 0, 1, 2])] + 0.01 * torch.randn(6, 8)
    assert loss(clustered, labels) < loss(scrambled, labels)


def test_augmentation_is_seeded_and_keeps_background():
    batch = torch.full((4, 1, 32, 32), (0 - MEAN) / STD)
    batch[:, :, 8:24, 8:24] = (0.8 - MEAN) / STD
    first = augment_batch(batch, torch.Generator().manual_seed(1))
    again = augment_batch(batch, torch.Generator().manual_seed(1))
    other = augment_batch(batch, torch.Generator().manual_seed(2))
    assert first.shape == batch.shape and torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.allclose(first[:, :, 0, 0], torch.tensor((0 - MEAN) / STD))
    assert first.min() >= (0 - MEAN) / STD - 1e-5 and first.max() <= (1 - MEAN) / STD + 1e-5


def test_flip_only_augmentation_mirrors_left_right():
    batch = torch.rand(1, 1, 16, 16) * 2 - 1
    settings = AugmentSettings(flip_probability=1.0, max_rotation_degrees=0, max_scale_change=0,
                               max_shift_fraction=0, max_log_gamma=0, max_contrast_change=0)
    out = augment_batch(batch, torch.Generator().manual_seed(0), settings)
    np.testing.assert_allclose(out.numpy(), batch.flip(-1).numpy(), atol=1e-5)


def test_the_fine_descriptor_appends_unit_mid_level_features_to_the_label_embedding():
    torch.manual_seed(0)
    plain = build_model(dim=16).eval()
    fine = build_model(dim=16, fine_weight=2.0).eval()
    fine.load_state_dict(plain.state_dict())  # the descriptor adds no weights
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain.trunk.from_mid(plain.trunk.to_mid(x)), plain.trunk(x))
        label = plain(x)
        assert torch.allclose(plain.label_embedding(x), label) and plain.dim == 16
        vector = fine(x)
        mid = gem(fine.trunk.to_mid(x), 3.0)
        expected = torch.cat([label, 2.0 * mid / mid.norm(dim=1, keepdim=True)], 1)
        expected = expected / expected.norm(dim=1, keepdim=True)
    assert fine.dim == vector.shape[1] == 16 + 832
    assert torch.allclose(vector, expected, atol=1e-6)
    assert torch.allclose(fine.label_embedding(x), label, atol=1e-6)
