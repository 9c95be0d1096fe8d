"""Tiny end-to-end run on real images: train -> export -> evaluate (ONNX) -> embed, via the CLI."""
import json

import numpy as np
import torch

from cbmir.core.decode import read_image_file
from cbmir.core.embed import Embedder
from cbmir.tools.cli import main
from cbmir_train import reranking
from support.figshare_data import TINY_INPUT_SIZE, requires_figshare

pytestmark = requires_figshare


def test_train_export_evaluate_embed(tiny_manifest, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(tiny_manifest), "--out", str(run), "--train-splits",
                 "train", "--val-splits", "test", "--epochs", "1", "--batch-size", "8",
                 "--input-size", str(TINY_INPUT_SIZE), "--dim", "16", "--threads", "2",
                 "--quiet"]) == 0
    summary = json.loads((run / "train.json").read_text())
    assert len(summary["history"]) == 1 and summary["train_images"] == 20
    assert 0.0 <= summary["history"][0]["val_mAP"] <= 1.0

    model = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(run), "--out", str(model)]) == 0
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["embedding_dim"] == 16 and card["input_size"] == TINY_INPUT_SIZE
    assert card["precision"] == "fp32"

    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--manifest", str(tiny_manifest), "--queries",
                 "test", "--database", "train", "--out", str(evaluation), "--rerank",
                 "--quiet"]) == 0
    result = json.loads((evaluation / "evaluation.json").read_text())
    assert result["queries"] == 10 and result["database"] == 20
    assert 0.0 < result["mAP"] <= 1.0
    assert set(result["per_label"]) == {"glioma", "meningioma", "pituitary"}
    assert "| **all** |" in (evaluation / "evaluation.md").read_text()
    fine = result["finegrained"]
    assert fine["copy"]["query splits"]["copies"] == result["queries"]
    assert 0 <= fine["copy"]["query splits"]["top1"] <= 1
    assert -1 <= fine["spread"]["median_same_type_cosine"] <= 1
    assert "Perturbed copy finds its original first" in (evaluation / "evaluation.md").read_text()
    # re-ranking: the "none" row is the evaluation itself; every variant scored both ways
    rows = {row["variant"]: row for row in result["reranking"]}
    assert rows["none"]["mAP"] == result["mAP"] and rows["none"]["P@10"] == result["P@10"]
    everything = fine["copy"]["query + database splits"]
    assert {k: rows["none"]["copy"][k] for k in ("top1", "median_rank", "mrr")} == {
        k: everything[k] for k in ("top1", "median_rank", "mrr")}
    assert len(rows) == 1 + len(reranking.DEFAULT_VARIANTS)
    assert all(0 < row["mAP"] <= 1 and 0 <= row["copy"]["top1"] <= 1 for row in rows.values())
    assert "## Re-ranking" in (evaluation / "evaluation.md").read_text()
    for plot in ("precision_recall.png", "embedding_map.png"):
        assert (evaluation / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    vectors_path = tmp_path / "vectors.npy"
    assert main(["embed", "--model", str(model), "--manifest", str(tiny_manifest), "--out",
                 str(vectors_path), "--quiet"]) == 0
    vectors = np.load(vectors_path)
    assert vectors.shape == (30, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Manifest row order: row 4 of the .npy is the 5th image of the manifest.
    lines = tiny_manifest.read_text().splitlines()[1:]
    fifth = tiny_manifest.parent / lines[4].split(",")[0]
    expected = Embedder(model).embed_images([read_image_file(fifth)])[0]
    np.testing.assert_allclose(vectors[4], expected, atol=1e-5)


def test_evaluate_a_checkpoint_with_torch(tiny_run, tiny_manifest, tmp_path):
    assert main(["evaluate", "--model", str(tiny_run), "--manifest", str(tiny_manifest),
                 "--queries", "test", "--database", "test", "--out", str(tmp_path), "--quiet"]) == 0
    result = json.loads((tmp_path / "evaluation.json").read_text())
    # Same split as queries and database: each query is left out of its own ranking.
    assert result["database"] == 10 and result["queries"] == 10
    assert result["finegrained"]["copy"]["query splits"]["copies"] == 10


def test_resume_continues_the_history(tiny_manifest, tmp_path):
    from cbmir_train.training import TrainConfig, fit

    config = TrainConfig(manifest=str(tiny_manifest), out=str(tmp_path), train_splits=["train"],
                         epochs=1, batch_size=8, input_size=64, dim=8, progress=False, threads=2)
    first = fit(config)
    config.epochs = 2
    second = fit(config, resume=True)
    assert len(second["history"]) == 2
    assert second["history"][0] == first["history"][0]
    # The one-cycle schedule was built for 1 epoch, the resumed one for 2: both must still load.
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 2


def test_evaluate_an_onnx_model_without_torch(tiny_onnx, tiny_manifest, tmp_path):
    """The ONNX path of `cbmir evaluate` must not need torch (plugin-side machines lack it)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch blocked for this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cbmir.tools.cli import main\n"
        f"sys.exit(main(['evaluate', '--model', r'{tiny_onnx}', '--manifest', r'{tiny_manifest}',"
        f" '--queries', 'test', '--database', 'train', '--out', r'{tmp_path}', '--quiet']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "evaluation.json").read_text())["queries"] == 10


def test_benchmark_runs_folds_and_ships_a_model(tmp_path):
    from support.figshare_data import pick_rows, write_manifest

    rows = pick_rows(6)
    manifest = write_manifest(tmp_path / "data", rows, [f"fold{i % 3 + 1}" for i in range(18)])
    arguments = ["benchmark", "--manifest", str(manifest), "--out", str(tmp_path / "docs"),
                 "--runs", str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models"),
                 "--epochs", "1", "--input-size", "64", "--dim", "8", "--batch-size", "6",
                 "--threads", "2", "--fine-weight", "3", "--fine-dim", "4", "--quiet"]
    assert main(arguments) == 0
    report = json.loads((tmp_path / "docs" / "figshare.json").read_text())
    assert [f["fold"] for f in report["folds"]] == ["fold1", "fold2", "fold3"]
    assert all(f["metrics"]["queries"] == 6 and f["metrics"]["database"] == 12
               for f in report["folds"])
    assert report["folds"][0]["onnx_parity_min_cosine"] >= 0.9999
    markdown = (tmp_path / "docs" / "figshare.md").read_text()
    assert "mean ± sd" in markdown and "Shipped default model" in markdown
    card = json.loads((tmp_path / "models" / "default.json").read_text())
    assert card["precision"] in ("fp32", "int8") and "cv_mAP" in card["metrics"]
    # the search vector's fine part reaches every fold's evaluation and the shipped model
    assert Embedder(tmp_path / "models" / "default.onnx").dim == 8 + 4 and card["fine_dim"] == 4
    assert "--fine-weight 3.0 --fine-dim 4" in markdown
    # Re-running skips finished folds and the shipped model: read back, not redone.
    done = [tmp_path / "runs" / "fold1" / "result.json", tmp_path / "models" / "default.onnx",
            tmp_path / "runs" / "full" / "model.pt"]
    stamps = [path.stat().st_mtime for path in done]
    assert main(arguments) == 0
    assert [path.stat().st_mtime for path in done] == stamps
    assert "Shipped default model" in (tmp_path / "docs" / "figshare.md").read_text()
