"""The shipped model itself: models/default.onnx loads, its card (models/default.json) agrees
with the code and the graph, and it still gives the vectors recorded when it was shipped
(models/default.reference.json, made by `make model-reference`).

Why here and not only through the plugin tests: those run whatever model `model_path` gives
them; these fail, with the reason, when the shipped model or its card is broken, and the
plugin tests then skip with the same reason (tests/conftest.py) instead of passing on a
stand-in model.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cbmir.core.embed import INPUT_NAME, OUTPUT_NAME, Embedder, card_path_for, load_card
from cbmir.core.preprocess import PREPROCESS_VERSION
from support import model_reference

MODEL = model_reference.DEFAULT_MODEL
REFERENCE = model_reference.reference_path(MODEL)
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)-(int8|fp32)\+([0-9a-f]{8})$")  # see models/README.md
REGENERATE = "after shipping a new model run `make model-reference` and commit the file"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(card_path_for(MODEL).read_text())


@pytest.fixture(scope="module")
def reference() -> dict:
    assert REFERENCE.is_file(), f"{REFERENCE} is missing: {REGENERATE}"
    return json.loads(REFERENCE.read_text())


def test_the_shipped_model_loads():
    embedder = Embedder(MODEL, threads=1, device="cpu")  # raises ModelUnavailable with the reason
    assert embedder.card == load_card(MODEL)


def test_the_card_matches_the_code(card):
    assert card["preprocess_version"] == PREPROCESS_VERSION, (
        "the model was trained with another preprocessing than cbmir.core.preprocess implements")
    assert card["onnx"] == {"opset": card["onnx"]["opset"], "input": INPUT_NAME,
                            "output": OUTPUT_NAME}


def test_the_card_matches_the_graph(card):
    import onnxruntime as ort

    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    (image,), (embedding,) = session.get_inputs(), session.get_outputs()
    assert (image.name, embedding.name) == (INPUT_NAME, OUTPUT_NAME)
    assert image.shape[1:] == [1, card["input_size"], card["input_size"]]
    size = card["input_size"]
    (out,) = session.run(None, {INPUT_NAME: np.zeros((2, 1, size, size), np.float32)})
    assert out.shape == (2, card["embedding_dim"])


def test_the_version_names_release_precision_and_file(card):
    match = VERSION.match(card["version"])
    assert match, f"version {card['version']!r} is not <release>-<precision>+<8 hex>"
    assert match.group(4) == card["precision"]
    assert match.group(5) == model_reference.file_sha256(MODEL)[:8], (
        "the version's hash is not this ONNX file's: a new file needs a new version "
        "(the plugin re-indexes only when the version changes)")


def test_the_reference_was_recorded_with_this_model(card, reference):
    assert reference["model_sha256"] == model_reference.file_sha256(MODEL), REGENERATE
    assert reference["model_version"] == card["version"], REGENERATE
    assert reference["preprocess_version"] == PREPROCESS_VERSION


def _assert_same_vectors(recorded: dict, images: dict):
    assert set(images) == set(recorded), "the reference images changed: " + REGENERATE
    found = model_reference.embed(MODEL, images)
    for name, vector in found.items():
        expected = np.asarray(recorded[name], dtype=np.float32)
        cosine = float(vector @ expected)
        worst = float(np.abs(vector - expected).max())
        assert cosine >= model_reference.MIN_COSINE and worst <= model_reference.MAX_ABS_DIFFERENCE, (
            f"{name}: cosine {cosine:.6f} to the recorded vector, largest difference {worst:.2e}: "
            "the model, its card or cbmir.core.preprocess changed since the reference was recorded")


def test_vectors_of_generated_images_equal_the_recorded_ones(reference):
    _assert_same_vectors(reference["vectors"]["synthetic"], model_reference.synthetic_images())


def test_vectors_of_figshare_images_equal_the_recorded_ones(reference):
    images = model_reference.figshare_images()
    if not images:
        pytest.skip(f"figshare test data absent ({model_reference.FIGSHARE})")
    _assert_same_vectors(reference["vectors"]["figshare"], images)
