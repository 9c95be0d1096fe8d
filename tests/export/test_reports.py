"""What researchers look at: training curves, evaluation figures, the model card inside the
ONNX file, and `--limit` as a stratified sample. Tiny smoke runs on real images (seconds)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cbmir.tools.cli import main
from support.figshare_data import requires_figshare

pytestmark = requires_figshare
PNG = b"\x89PNG\r\n\x1a\n"


def png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG, f"{path} is not a PNG"
    return np.asarray(Image.open(path).convert("RGB"))


def colour_pixels(image: np.ndarray, hex_colour: str, tolerance: int = 12) -> int:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image.astype(int) - rgb).max(axis=2) <= tolerance).sum())


def test_train_writes_curves_and_limit_is_stratified(tiny_manifest, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(tiny_manifest), "--out", str(run), "--train-splits",
                 "train", "--val-splits", "test", "--epochs", "2", "--batch-size", "8",
                 "--input-size", "64", "--dim", "8", "--threads", "2", "--limit", "9",
                 "--no-augment", "--quiet"]) == 0
    summary = json.loads((run / "train.json").read_text())
    # 20 train images, 7/7/6 per label (every third manifest row is 'test'): 9 -> 3 per label.
    assert summary["train_images"] == 9
    assert summary["train_label_counts"] == {"glioma": 3, "meningioma": 3, "pituitary": 3}
    curves = png(run / "training_curves.png")
    assert curves.shape == (400, 1000, 3)  # two panels, 10 x 4 inches at 100 dpi
    assert curves.std() > 10, "an empty figure"


def test_stratified_sample_keeps_every_label():
    from cbmir_train.datasets import Record, stratified_sample

    records = [Record(path=f"/x/{i}.png", label=label, patient_id="", split="s")
               for i, label in enumerate(["a"] * 90 + ["b"] * 9 + ["c"])]
    counts = {n: [r.label for r in stratified_sample(records, n)] for n in (3, 10, 50)}
    assert [counts[3].count(x) for x in "abc"] == [1, 1, 1]
    assert [counts[10].count(x) for x in "abc"] == [8, 1, 1]
    assert [counts[50].count(x) for x in "abc"] == [45, 4, 1]
    assert stratified_sample(records, 0) == records
    picked = stratified_sample(records, 10)
    assert picked == sorted(picked, key=records.index), "manifest order kept"


def test_evaluate_writes_chance_per_label_and_example_grid(tiny_onnx, tiny_manifest, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_onnx), "--manifest", str(tiny_manifest),
                 "--queries", "test", "--database", "train", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    # Queries 3/3/4 and database 7/7/6 per label (glioma, meningioma, pituitary): a random
    # ranking's precision is the share of the query's label in the database.
    assert result["chance_precision"] == pytest.approx((3 * 7 + 3 * 7 + 4 * 6) / 10 / 20)
    assert result["per_label"]["pituitary"]["chance_precision"] == pytest.approx(6 / 20)
    for row in result["per_label"].values():
        assert len(row["pr_curve"]["precision"]) == len(result["pr_curve"]["recall"])
    assert "Chance" in (out / "evaluation.md").read_text()

    overall = png(out / "precision_recall.png")
    assert overall.shape == (480, 600, 3)
    assert colour_pixels(overall, "#808080", 2) > 250, "no grey chance line"  # ~80 without
    per_label = png(out / "precision_recall_per_label.png")
    assert per_label.shape == (504, 660, 3)
    for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"):  # one curve per label (C0, C1, C2)
        assert colour_pixels(per_label, colour) > 100, colour
    grid = png(out / "example_retrievals.png")
    assert grid.shape == (1008, 912, 3)  # 6 queries x (query + top 5)
    assert colour_pixels(grid, "#1a9850") + colour_pixels(grid, "#d73027") > 1000
    assert png(out / "embedding_map.png").size


def test_the_grid_marks_correct_and_wrong_results(tiny_manifest, tmp_path):
    from cbmir_train import datasets
    from cbmir_train.report_plots import retrieval_grid

    records = datasets.read_manifest(tiny_manifest)
    queries = [r for r in records if r.label == "glioma"][:2]
    same = [r for r in records if r.label == "glioma"][2:7]
    other = [r for r in records if r.label != "glioma"][:5]
    similarities = np.tile(np.linspace(1, 0.5, 10), (2, 1))  # database order = rank order
    excluded = np.zeros((2, 10), bool)
    right = png(retrieval_grid(queries, same + other, similarities, excluded,
                               tmp_path / "right.png", progress=False))
    wrong = png(retrieval_grid(queries, other + same, similarities, excluded,
                               tmp_path / "wrong.png", progress=False))
    assert colour_pixels(right, "#1a9850") > 500 and colour_pixels(right, "#d73027") == 0
    assert colour_pixels(wrong, "#d73027") > 500 and colour_pixels(wrong, "#1a9850") == 0


def test_evaluate_limit_is_a_stratified_sample(tiny_onnx, tiny_manifest, tmp_path):
    assert main(["evaluate", "--model", str(tiny_onnx), "--manifest", str(tiny_manifest),
                 "--queries", "test", "--database", "train", "--out", str(tmp_path),
                 "--limit", "15", "--quiet"]) == 0
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert result["queries"] + result["database"] == 15 and result["limit"] == 15
    assert set(result["per_label"]) == {"glioma", "meningioma", "pituitary"}


def test_the_card_travels_inside_the_onnx_file_with_the_evaluation(tiny_run, tiny_manifest,
                                                                    tmp_path):
    import onnx

    from cbmir.core.embed import CARD_METADATA_KEY, Embedder, load_card

    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_run), "--manifest", str(tiny_manifest),
                 "--queries", "test", "--database", "train", "--out", str(evaluation),
                 "--quiet"]) == 0
    model = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_run), "--out", str(model),
                 "--evaluation", str(evaluation)]) == 0
    beside = json.loads(model.with_suffix(".json").read_text())
    scored = json.loads((evaluation / "evaluation.json").read_text())
    assert beside["metrics"]["evaluation"]["mAP"] == scored["mAP"]
    assert beside["metrics"]["evaluation"]["chance_precision"] == scored["chance_precision"]
    assert "pr_curve" not in json.dumps(beside["metrics"]), "curves stay in evaluation.json"
    inside = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(inside[CARD_METADATA_KEY]) == beside

    model.with_suffix(".json").unlink()  # the plugin still knows the model without its JSON
    assert load_card(model) == beside
    assert Embedder(model).version == beside["version"]

    # Without --evaluation, RUN/evaluation.json is used when it exists.
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").symlink_to(tiny_run / "model.pt")
    shutil.copy(evaluation / "evaluation.json", run / "evaluation.json")
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "again.onnx")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["metrics"]["evaluation"]["mAP"] == scored["mAP"]


def test_quantize_embeds_the_int8_card(tiny_onnx, tiny_manifest, tmp_path):
    import onnxruntime as ort

    from cbmir.core.embed import CARD_METADATA_KEY

    out = tmp_path / "int8.onnx"
    assert main(["quantize", "--model", str(tiny_onnx), "--out", str(out), "--manifest",
                 str(tiny_manifest), "--calibration-splits", "train",
                 "--calibration-images", "4"]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    card = json.loads(session.get_modelmeta().custom_metadata_map[CARD_METADATA_KEY])
    assert card["precision"] == "int8" and card["quantization"]["calibration_images"] == 4
