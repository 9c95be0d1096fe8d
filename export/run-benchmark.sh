#!/bin/bash
# The figshare benchmark and the shipped default model, in one resumable command.
# Re-running it skips finished folds and resumes interrupted trainings (runs/benchmark/*/last.pt).
# EPOCHS, RUNS, OUT, MODELS, THREADS, COMPARE_LOSSES override the defaults below.
# CPU: ~75 min (5 folds + default model) on 2 shared cores at 8 epochs, + ~10 min loss comparison; on a GPU the same command takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-8}
exec .venv/bin/cbmir benchmark \
    --manifest ../shared/data/figshare-cheng/manifest.csv \
    --out "${OUT:-docs/benchmarks}" --name figshare --runs "${RUNS:-runs/benchmark}" \
    --models-dir "${MODELS:-models}" \
    --epochs "$EPOCHS" --input-size 128 --dim 128 --loss proxy --threads "${THREADS:-2}" \
    --compare-losses "${COMPARE_LOSSES-multisim}" --notes export/figshare-notes.md --quiet
