"""Fixture of the cluster tests: `make_cluster(n, cbmir=...)` starts n real Orthanc nodes with
the real plugin (tiny test model, `"Store": "postgresql"`) on the test's fresh PostgreSQL
database (Orthanc's index there too) and one shared storage folder; all stopped at the end.
What a test can ask the cluster: tests/support/cluster.py."""
from __future__ import annotations

import shutil

import pytest

from orthanc_server import OrthancServer, cluster_overrides, needs_orthanc
from support.cluster import Cluster


@pytest.fixture
def make_cluster(tmp_path, tiny_model, postgres, pg_database):
    needs_orthanc()
    nodes: list[OrthancServer] = []

    def make(count: int = 2, cbmir: dict | None = None) -> Cluster:
        for i in range(count):
            overrides, settings = cluster_overrides(pg_database, tmp_path / "storage", f"node-{i}")
            settings.update({"RebuildThreshold": 16, "CatchUpSeconds": 1,
                             "IndexDelaySeconds": 0.3}, **(cbmir or {}))
            node = OrthancServer(tmp_path / f"node-{i}", model_path=tiny_model, cbmir=settings,
                                 overrides=overrides)
            nodes.append(node)
            node.start(timeout=90)
        return Cluster(postgres, pg_database, nodes)

    yield make
    for node in nodes:
        try:
            node.stop(timeout=30)
        except Exception:
            node.kill()
    shutil.rmtree(tmp_path, ignore_errors=True)
