#!/bin/bash
# After (or instead of waiting for) the background benchmark: finish whatever is left, check, show
# what to commit. Safe to run while nothing else trains; it resumes from runs/benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f runs/benchmark.pid ] && kill -0 "$(cat runs/benchmark.pid)" 2>/dev/null; then
    echo "benchmark still running (pid $(cat runs/benchmark.pid)); see runs/benchmark.log" >&2
    exit 1
fi
export/run-benchmark.sh                      # no-op for the parts already done
.venv/bin/python -m pytest tests/export tests/unit -q
.venv/bin/python -c "
from cbmir.embed import Embedder; e = Embedder('models/default.onnx'); print(e.describe()['card']['metrics'])"
echo "then: git add models/default.onnx models/default.json docs/benchmarks/figshare.md docs/benchmarks/figshare.json"
echo "      git commit -m 'Ship default model and figshare benchmark' -- models docs/benchmarks"
