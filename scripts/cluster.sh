#!/usr/bin/env bash
# `make cluster`: a private PostgreSQL and CBMIR_NODES Orthanc nodes, in the foreground
# (Ctrl-C/SIGTERM stops everything). Environment and layout: scripts/cluster.py, docs/cluster.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# exec: the supervisor itself receives SIGTERM/SIGINT and stops the nodes, then PostgreSQL.
exec "$repo/.venv/bin/python" "$repo/scripts/cluster.py" "$@"
