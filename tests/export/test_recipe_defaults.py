"""`cbmir train` and `cbmir benchmark` without options train the shipped model's recipe."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from cbmir_train.commands import benchmark, train
from cbmir_train.recipe import RECIPE
from cbmir_train.training import TrainConfig

CARD = Path(__file__).resolve().parents[2] / "models" / "default.json"


def shipped_recipe() -> dict:
    config = json.loads(CARD.read_text())["training_config"]
    return {key: config[key] for key in RECIPE}


def parsed(module, *extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(["--manifest", "m.csv", "--out", "o", *extra])


def test_recipe_is_the_shipped_models():
    assert RECIPE == shipped_recipe()


def test_train_config_defaults_are_the_recipe():
    config = asdict(TrainConfig(manifest="m.csv", out="o"))
    assert {key: config[key] for key in RECIPE} == shipped_recipe()


def test_cbmir_train_defaults_are_the_recipe():
    config = asdict(train.config_from_args(parsed(train)))
    assert {key: config[key] for key in RECIPE} == shipped_recipe()


def test_cbmir_benchmark_defaults_are_the_recipe():
    config = asdict(benchmark.base_config(parsed(benchmark), Path("o"), ["fold1"]))
    assert {key: config[key] for key in RECIPE} == shipped_recipe()
