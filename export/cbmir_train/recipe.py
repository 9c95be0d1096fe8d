"""The shipped training recipe, defined once.

`TrainConfig`, `cbmir train` and `cbmir benchmark` take their defaults from
`RECIPE`, so running either command without options reproduces the model in
`models/default.onnx`; a test compares `RECIPE` with that model card's
`training_config`, so shipping a model trained otherwise means updating it here.
"""
from __future__ import annotations

RECIPE = {
    "epochs": 16,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "input_size": 128,
    "dim": 128,
    "gem_p": 3.0,
    "loss": "proxy",
    "augment": True,
    "seed": 0,
    "precise_bn": True,
}
