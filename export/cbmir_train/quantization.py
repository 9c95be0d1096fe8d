"""Static INT8 quantization of the exported ONNX model, and a CPU latency probe.

onnxruntime's static QDQ quantization with per-channel weights, calibrated on
real (preprocessed) training images, keeps GeM's pow/mean and the L2 norm in
float while convolutions run in INT8, the part that dominates the cost.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cbmir.core.embed import INPUT_NAME, load_card

from . import datasets
from .evaluation import embed_records, score_splits


class _Calibration:
    """onnxruntime CalibrationDataReader over an (N, 1, S, S) array, in small batches."""

    def __init__(self, inputs: np.ndarray, batch_size: int = 16):
        self.batches = [inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)]
        self.position = 0

    def get_next(self):
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {INPUT_NAME: np.ascontiguousarray(self.batches[self.position - 1], np.float32)}

    def rewind(self):
        self.position = 0


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration_inputs: np.ndarray,
                  method: str = "minmax") -> Path:
    """Write a QDQ INT8 model (per-channel weights) calibrated on `calibration_inputs`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantize the raw graph then
            shutil.copy(fp32_path, prepared)
        quantize_static(str(prepared), str(int8_path), _Calibration(calibration_inputs),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method])
    return int8_path


def latency_ms(model_path: str | Path, input_size: int, threads: int = 2, batch: int = 1,
               repeats: int = 30, warmup: int = 5) -> float:
    """Median milliseconds per image on CPU for `batch`-sized runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    data = np.random.default_rng(0).standard_normal((batch, 1, input_size, input_size),
                                                    dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {INPUT_NAME: data})
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        session.run(None, {INPUT_NAME: data})
        timings.append(time.perf_counter() - began)
    return float(np.median(timings) * 1000 / batch)


def calibration_inputs(manifest, splits, count, size, cache_dir=None, seed=0) -> np.ndarray:
    """Preprocessed inputs of `count` random images of `splits`."""
    records = datasets.select(datasets.read_manifest(manifest), splits)
    chosen = np.random.default_rng(seed).permutation(len(records))[:count]
    return datasets.load_inputs([records[i] for i in sorted(chosen)], size, cache_dir,
                                progress=False)


def int8_card(card: dict, method: str, calibration_images: int, calibration_splits) -> dict:
    """The INT8 model's card: the FP32 card, precision int8 and how it was quantized."""
    return {**card, "precision": "int8",
            "quantization": {"format": "QDQ", "per_channel": True, "method": method,
                             "calibration_images": calibration_images,
                             "calibration_splits": calibration_splits}}


def quantize_with_card(fp32: Path, int8: Path, card: dict, manifest, splits: list[str], count: int,
                       cache_dir=None, seed: int = 0, method: str = "minmax",
                       recorded_splits=None) -> dict:
    """Calibrate on `count` images of `splits`, write the INT8 model and its card (beside and
    inside it); the card is returned. `recorded_splits`: what the card says (default `splits`)."""
    from .onnx_export import write_card  # torch: only when a model is written

    inputs = calibration_inputs(manifest, splits, count, int(card["input_size"]), cache_dir, seed)
    quantize_int8(fp32, int8, inputs, method)
    recorded = splits if recorded_splits is None else recorded_splits
    card = int8_card(card, method, len(inputs), recorded)
    write_card(int8, card)
    return card


def score_precisions(models: dict[str, Path], records, queries: list[str], database: list[str],
                     input_size: int, cache_dir=None, threads: int = 2,
                     embed_threads: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """The FP32-vs-INT8 report ({"fp32": {mAP, P@10, ms_per_image}, "int8": ..., mAP_change,
    P@10_change, speedup}; latency on `threads` CPU threads) and each model's vectors."""
    report, vectors = {}, {}
    for name, path in models.items():
        vectors[name], _ = embed_records(path, records, cache_dir=cache_dir, threads=embed_threads,
                                         progress=False)
        scores = score_splits(vectors[name], records, queries, database)
        report[name] = {"mAP": scores["mAP"], "P@10": scores["P@10"],
                        "ms_per_image": latency_ms(path, input_size, threads)}
    report["mAP_change"] = report["int8"]["mAP"] - report["fp32"]["mAP"]
    report["P@10_change"] = report["int8"]["P@10"] - report["fp32"]["P@10"]
    report["speedup"] = report["fp32"]["ms_per_image"] / report["int8"]["ms_per_image"]
    return report, vectors


def compare_precisions(fp32: Path, int8: Path, manifest, queries, database, cache_dir=None,
                       threads: int = 2) -> dict:
    """Held-out retrieval scores and CPU latency of both models (`cbmir quantize`)."""
    records = datasets.select(datasets.read_manifest(manifest), sorted(set(queries + database)))
    report, _ = score_precisions({"fp32": fp32, "int8": int8}, records, queries, database,
                                 int(load_card(fp32)["input_size"]), cache_dir, threads, threads)
    report["queries"], report["database"], report["threads"] = queries, database, threads
    return report
