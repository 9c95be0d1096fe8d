"""Training, `cbmir embed` and the plugin's embedder all go through cbmir.core.preprocess.preprocess."""
import numpy as np
import pytest

import cbmir.core.preprocess
from cbmir.core.decode import read_image_file
from cbmir.core.embed import Embedder
from cbmir.tools.cli import main
from cbmir_train import datasets
from support.figshare_data import FIGSHARE, pick_rows, requires_figshare

pytestmark = requires_figshare


@pytest.fixture
def spy(monkeypatch):
    calls = []
    original = cbmir.core.preprocess.preprocess

    def counting(pixels, size=cbmir.core.preprocess.DEFAULT_INPUT_SIZE):
        calls.append(np.shape(pixels))
        return original(pixels, size)

    monkeypatch.setattr(cbmir.core.preprocess, "preprocess", counting)
    return calls


def test_training_inputs_come_from_the_shared_function(spy, tiny_manifest):
    records = datasets.read_manifest(tiny_manifest)[:4]
    inputs = datasets.load_inputs(records, 48, progress=False)
    assert len(spy) == 4 and inputs.shape == (4, 1, 48, 48)


def test_training_loop_uses_it(spy, tiny_manifest, tmp_path):
    from cbmir_train.training import TrainConfig, fit

    fit(TrainConfig(manifest=str(tiny_manifest), out=str(tmp_path), train_splits=["test"],
                    epochs=1, batch_size=5, input_size=48, dim=8, progress=False, threads=2))
    assert len(spy) == 10  # every 'test' image, once


def test_cbmir_embed_and_the_plugin_embedder_use_it(spy, tiny_onnx, tiny_manifest, tmp_path):
    assert main(["embed", "--model", str(tiny_onnx), "--manifest", str(tiny_manifest),
                 "--out", str(tmp_path / "v.npy"), "--quiet"]) == 0
    assert len(spy) == 30
    spy.clear()
    Embedder(tiny_onnx).embed_images([read_image_file(FIGSHARE / pick_rows(1)[0]["path"])])
    assert len(spy) == 1
