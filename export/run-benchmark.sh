#!/bin/bash
# The figshare benchmark and the shipped default model, in one resumable command.
# Re-running it skips finished folds and resumes interrupted trainings (runs/benchmark-e16/*/last.pt).
# Usage: export/run-benchmark.sh [MANIFEST]   (or MANIFEST=... in the environment)
# MANIFEST: the figshare manifest.csv (path,label,patient_id,split); default
# ../shared/data/figshare-cheng/manifest.csv, beside the checkout (what `cbmir demo` and the tests use).
# EPOCHS, RUNS, OUT, NAME, MODELS, THREADS, COMPARE_LOSSES override the defaults below.
# CPU: ~50 min (5 folds + default model) on 2 cores at 16 epochs (the shipped recipe; EPOCHS=8 with
# RUNS=runs/benchmark NAME=figshare gives the first release's), + ~10 min per compared loss; a GPU takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
MANIFEST=${1:-${MANIFEST:-../shared/data/figshare-cheng/manifest.csv}}
if [ ! -f "$MANIFEST" ]; then
    echo "run-benchmark.sh: no manifest at $MANIFEST (pass its path, or set MANIFEST)" >&2
    exit 2
fi
EPOCHS=${EPOCHS:-16}
exec .venv/bin/cbmir benchmark \
    --manifest "$MANIFEST" \
    --out "${OUT:-docs/benchmarks}" --name "${NAME:-figshare-$EPOCHS-epochs}" \
    --runs "${RUNS:-runs/benchmark-e$EPOCHS}" \
    --models-dir "${MODELS:-models}" \
    --epochs "$EPOCHS" --input-size 128 --dim 128 --loss proxy --threads "${THREADS:-2}" \
    --compare-losses "${COMPARE_LOSSES-}" --notes export/figshare-notes.md --quiet
