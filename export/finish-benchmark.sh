#!/bin/bash
# Check or complete the figshare benchmark and the shipped default model, then show what to commit.
# Everything is resumable: finished folds, the trained default model and an unchanged shipped model
# are skipped, so this is cheap when the benchmark is complete and finishes it when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f runs/benchmark.pid ] && kill -0 "$(cat runs/benchmark.pid)" 2>/dev/null; then
    echo "benchmark still running (pid $(cat runs/benchmark.pid)); see runs/benchmark.log" >&2
    exit 1
fi
export/run-benchmark.sh
.venv/bin/python -m pytest tests/export tests/unit -q
.venv/bin/python -c "
from cbmir.embed import Embedder
card = Embedder('models/default.onnx').card
print(card['precision'], card['version'], card['metrics'])"
git status --short models docs/benchmarks
echo "commit: git add models/default.onnx models/default.json docs/benchmarks/figshare-16-epochs.md docs/benchmarks/figshare-16-epochs.json && git commit -m 'Update default model and figshare benchmark' -- models docs/benchmarks"
