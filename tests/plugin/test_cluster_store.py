"""The PostgreSQL store with 2 real Orthanc nodes on one real PostgreSQL (issue 15): what node B
knows of what only node A saw (stored, deleted), B's status, and the reconciliation that removes rows
of an instance whose deleting node died before recording the delete. The big end-to-end scenarios
(kill -9 mid-ingest, re-index, restart) are in tests/cluster/."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import generate_uid

from orthanc_server import OrthancServer, cluster_overrides, needs_orthanc, wait_for
from support.dicom_factory import mr_image

pytestmark = pytest.mark.orthanc
ALL = {"exclude_same_patient": "false", "group_by": "instance", "k": 10}


@pytest.fixture
def two_nodes(tmp_path, tiny_model, pg_database):
    needs_orthanc()
    nodes = []
    for i in range(2):
        overrides, cbmir = cluster_overrides(pg_database, tmp_path / "storage", f"node-{i}")
        cbmir.update({"RebuildThreshold": 16, "CatchUpSeconds": 1, "IndexDelaySeconds": 0.3})
        nodes.append(OrthancServer(tmp_path / f"node-{i}", model_path=tiny_model, cbmir=cbmir,
                                   overrides=overrides))
    try:
        for node in nodes:
            node.start(timeout=90)
        yield nodes
    finally:
        for node in nodes:
            try:
                node.stop(timeout=30)
            except Exception:  # noqa: BLE001
                node.kill()


def sql(postgres, database, statement):
    return postgres.psql(statement, database=database["Database"])


def test_stored_on_a_found_on_b_deleted_on_a_gone_from_b(two_nodes, postgres, pg_database):
    a, b = two_nodes
    rng = np.random.default_rng(5)
    study, series = generate_uid(), generate_uid()
    data = [mr_image((rng.random((32, 32)) * 4000).astype(np.uint16), "P15", study, series,
                     instance_number=n + 1) for n in range(5)]
    ids = [a.upload(d)["ID"] for d in data]

    def on_b():
        return all(b.get(f"/cbmir/similar/{i}", params=ALL).status_code == 200 for i in ids)
    wait_for(on_b, timeout=120, step=0.3)
    answer = b.get(f"/cbmir/similar/{ids[0]}", params=ALL).json()
    assert {r["instance"] for r in answer["results"]} == set(ids[1:])
    sop = answer["query"]["sop_instance_uid"]  # B resolves a SOP UID it never saw from PostgreSQL
    assert b.get(f"/cbmir/similar/{sop}", params=ALL).json()["query"]["instance"] == ids[0]

    status = b.status()
    assert status["indexed"] == 5 and status["cluster"]["node"] == "node-1"
    assert status["replica"]["generation"] == 1 and status["replica"]["size"] == 5
    assert {n["name"] for n in status["cluster"]["nodes"]} == {"node-0", "node-1"}
    rows = sql(postgres, pg_database, "SELECT count(*) FROM cbmir_index.vectors").strip()
    assert rows == "5"

    assert a.delete(f"/instances/{ids[0]}").status_code == 200  # OnChange DELETED only on A
    wait_for(lambda: b.get(f"/cbmir/similar/{ids[0]}", params=ALL).status_code == 404,
             timeout=60, step=0.3)
    wait_for(lambda: ids[0] not in {r["instance"] for r in b.get(
        f"/cbmir/similar/{ids[1]}", params=ALL).json()["results"]}, timeout=30, step=0.3)

    # A node that died between Orthanc's delete and its own: rows of an instance Orthanc lacks.
    ghost = "0badc0de-0badc0de-0badc0de-0badc0de-0badc0de"
    sql(postgres, pg_database,
        f"INSERT INTO cbmir_index.vectors (generation, instance, frame, sop_uid, vector, created) "
        f"SELECT 1, '{ghost}', 0, '1.2.3', vector, 0 FROM cbmir_index.vectors LIMIT 1")
    result = b.post("/cbmir/reconcile").json()
    assert result["removed"] == 1 and result["queued"] == 0, result
    assert sql(postgres, pg_database, "SELECT count(*) FROM cbmir_index.vectors WHERE "
               f"instance = '{ghost}'").strip() == "0"
    assert a.status()["indexed"] == 4
