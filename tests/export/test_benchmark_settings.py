"""What `cbmir benchmark` hands its steps (BenchmarkSettings, made once from the options) and the
INT8 card block shared with `cbmir quantize` (quantization.int8_card)."""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from cbmir_train.benchmark_steps import BenchmarkSettings
from cbmir_train.commands import benchmark
from cbmir_train.quantization import int8_card


def _parsed(*extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    return parser.parse_args(["--manifest", "m.csv", "--out", "o", *extra])


def test_the_options_are_converted_once_with_the_dataclass_defaults():
    settings = benchmark.settings_of(_parsed())
    defaults = {f.name: f.default for f in fields(BenchmarkSettings) if f.name in
                ("name", "model_version", "max_int8_map_drop")}
    assert {key: getattr(settings, key) for key in defaults} == defaults
    assert settings.manifest == "m.csv" and settings.cache == Path("runs/benchmark/cache")


def test_every_option_the_steps_use_reaches_them():
    settings = benchmark.settings_of(_parsed("--runs", "r", "--input-size", "64", "--seed", "7",
                                             "--name", "n", "--model-version", "2.0.0",
                                             "--max-int8-map-drop", "0.01",
                                             "--fine-weight", "3", "--fine-dim", "64"))
    assert settings == BenchmarkSettings(manifest="m.csv", runs=Path("r"), input_size=64, seed=7,
                                         name="n", model_version="2.0.0", max_int8_map_drop=0.01,
                                         fine_weight=3.0, fine_dim=64)


def test_the_int8_card_keeps_the_fp32_card_and_says_how_it_was_quantized():
    fp32 = {"embedding_dim": 8, "input_size": 64, "precision": "fp32", "version": "x"}
    card = int8_card(fp32, "minmax", 256, ["fold1", "fold2"])
    assert card == {**fp32, "precision": "int8",
                    "quantization": {"format": "QDQ", "per_channel": True, "method": "minmax",
                                     "calibration_images": 256,
                                     "calibration_splits": ["fold1", "fold2"]}}
    assert fp32["precision"] == "fp32"  # the FP32 card is not changed
