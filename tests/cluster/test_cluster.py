"""Several real Orthanc nodes on one real PostgreSQL (issue 15): every node answers for the
whole archive, each stored instance is embedded once cluster-wide, deletes and re-indexes
reach every node, a node killed or restarted loses nothing.

Each test gets a fresh database and its own nodes (tiny model, small images); the counts
come from PostgreSQL itself and from every node's log, not from the nodes' own claims.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from pydicom.uid import generate_uid

from orthanc_server import wait_for
from support.dicom_factory import mr_image

from support.cluster import ALL, ALL_HEADERS

pytestmark = pytest.mark.orthanc


def images(count: int, patient: str, seed: int, size: int = 32) -> list[bytes]:
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    return [mr_image((rng.random((size, size)) * 4000).astype(np.uint16), patient, study, series,
                     instance_number=i + 1) for i in range(count)]


def query(node, data: bytes) -> list[dict]:
    response = node.post("/cbmir/query", data=data, headers=ALL_HEADERS)
    assert response.status_code == 200, response.text[:500]
    return response.json()["results"]


def assert_each_once(cluster, instances, generation: int) -> None:
    """Exactly one row per (instance, frame) of `generation` for every instance, and none else."""
    rows = cluster.vector_rows(generation)
    doubles = {key: n for key, n in rows.items() if n != 1}
    assert not doubles, f"instances with several rows for one frame: {doubles}"
    have = {instance for _, instance, _ in rows}
    assert have == set(instances), (f"missing: {sorted(set(instances) - have)[:5]}, "
                                     f"unexpected: {sorted(have - set(instances))[:5]}")


def test_stored_on_one_node_found_on_the_other(make_cluster):
    cluster = make_cluster(2)
    a, b = cluster.nodes
    data = images(6, "ON-A", 1)
    ids = [a.upload(d)["ID"] for d in data]
    cluster.wait_searchable(ids, nodes=[1])
    found = query(b, data[2])
    assert found[0]["instance"] == ids[2], found[:3]
    similar = b.get(f"/cbmir/similar/{ids[0]}", params=ALL).json()["results"]
    assert {r["instance"] for r in similar} == set(ids[1:])
    assert_each_once(cluster, ids, generation=1)
    assert all(cluster.indexed_lines()[i] == 1 for i in ids), cluster.indexed_lines()
    for node in cluster.nodes:
        assert node.status()["indexed"] == len(ids), node.status()


def test_a_node_killed_during_an_ingest_loses_nothing(make_cluster):
    """300 images sent to all three nodes; one is killed -9 a third of the way: the two others
    index every stored instance exactly once (its claims expire, its stores are caught up)."""
    cluster = make_cluster(3, cbmir={"ClaimSeconds": 5})
    data = images(300, "INGEST", 2, size=24)
    killed = threading.Event()
    stored: list[str] = []
    lock = threading.Lock()

    def sender(worker: int) -> None:
        for n in range(worker, len(data), 3):
            node = cluster.nodes[n % 3]
            if n % 3 == 2 and killed.is_set():
                node = cluster.nodes[n % 2]
            try:
                answer = node.upload(data[n])
            except Exception:  # the node was killed under this request: send it elsewhere
                answer = cluster.nodes[0].upload(data[n])
            with lock:
                stored.append(answer["ID"])

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(stored) >= 100, timeout=120, step=0.01)
    cluster.nodes[2].kill()
    killed.set()
    for thread in threads:
        thread.join(180)
    everything = cluster.stored()
    assert set(stored) <= everything and len(everything) == 300
    cluster.wait_indexed(everything, timeout=300)
    cluster.wait_searchable(everything, nodes=[0, 1], timeout=300)
    assert_each_once(cluster, everything, generation=1)
    lines = cluster.indexed_lines()
    assert max(lines.values()) == 1, {i: n for i, n in lines.items() if n > 1}
    for node in cluster.nodes[:2]:
        status = node.status()
        assert status["indexed"] == 300 and status["failed"] == 0, status


def test_a_delete_on_one_node_leaves_every_answer(make_cluster):
    cluster = make_cluster(2)
    a, b = cluster.nodes
    data = images(5, "DELETE-ME", 3)
    keep = images(3, "KEEP", 4)
    ids = [b.upload(d)["ID"] for d in data]
    kept = [b.upload(d)["ID"] for d in keep]
    cluster.wait_searchable(ids + kept)
    gone = ids[1]
    assert a.delete(f"/instances/{gone}").status_code == 200
    patient = a.get(f"/instances/{ids[0]}/patient").json()["ID"]
    assert a.delete(f"/patients/{patient}").status_code == 200  # the rest of that patient

    def left_everywhere():
        return all(node.get(f"/cbmir/similar/{i}", params=ALL).status_code == 404
                   for node in cluster.nodes for i in ids)
    wait_for(left_everywhere, timeout=60, step=0.3)
    for node in cluster.nodes:
        answered = {r["instance"] for r in query(node, data[1])}
        assert not answered & set(ids), answered
        assert answered == set(kept)
        assert node.status()["indexed"] == len(kept)
    assert {instance for _, instance, _ in cluster.vector_rows()} == set(kept)


def test_a_re_index_runs_once_for_the_cluster(make_cluster):
    cluster = make_cluster(3)
    data = images(24, "REINDEX", 5)
    ids = [cluster.nodes[n % 3].upload(d)["ID"] for n, d in enumerate(data)]
    cluster.wait_searchable(ids)
    assert cluster.nodes[1].post("/cbmir/reindex").status_code == 200

    def switched():
        states = [node.status() for node in cluster.nodes]
        return all(s["index"]["generation"] == 2 and not s["reindex"]["running"] for s in states)
    wait_for(switched, timeout=240, step=0.5)
    assert_each_once(cluster, ids, generation=2)
    lines = cluster.indexed_lines()
    assert all(lines[i] == 2 for i in ids), lines  # once per generation, cluster-wide
    cluster.wait_searchable(ids)
    for node in cluster.nodes:
        assert query(node, data[7])[0]["instance"] == ids[7]


def test_a_restarted_node_catches_up(make_cluster):
    cluster = make_cluster(2)
    a, b = cluster.nodes
    before = [a.upload(d)["ID"] for d in images(4, "BEFORE", 6)]
    cluster.wait_searchable(before)
    b.stop()
    data = images(10, "WHILE-DOWN", 7)
    during = [a.upload(d)["ID"] for d in data]
    cluster.wait_searchable(during, nodes=[0])
    b.start(timeout=90)
    cluster.wait_indexed(before + during)
    cluster.wait_searchable(before + during, nodes=[1])
    assert query(b, data[4])[0]["instance"] == during[4]
    assert_each_once(cluster, before + during, generation=1)
    assert all(n == 1 for n in cluster.indexed_lines().values())
    assert b.status()["indexed"] == 14


def test_a_node_killed_before_indexing_its_stores_is_caught_up_by_the_others(make_cluster):
    """Images stored on a node that dies before its plugin processed them (its OnChange never
    ran): another node finds them (shared /changes or reconciliation) and indexes them once."""
    cluster = make_cluster(2, cbmir={"ClaimSeconds": 5})
    a, b = cluster.nodes
    b.stop()
    b.cbmir["IndexDelaySeconds"] = 30  # b holds its work back long enough to die with it
    b.start(timeout=90)
    ids = [b.upload(d)["ID"] for d in images(8, "ORPHANS", 8)]
    b.kill()
    cluster.wait_indexed(ids, timeout=120)
    cluster.wait_searchable(ids, nodes=[0], timeout=120)
    assert_each_once(cluster, ids, generation=1)
    assert a.status()["indexed"] == len(ids)


def test_images_stored_through_a_node_without_the_plugin_are_caught_up(make_cluster, tmp_path):
    """An Orthanc on the same database without CBMIR (e.g. a gateway node): nobody's OnChange
    hears of its stores, so the CBMIR nodes must find them in the shared /changes."""
    from orthanc_server import OrthancServer, cluster_overrides
    cluster = make_cluster(2)
    overrides, _ = cluster_overrides(cluster.database, tmp_path / "storage")
    overrides["Plugins"] = [p for p in overrides["Plugins"] if "Python" not in p]
    gateway = OrthancServer(tmp_path / "gateway", overrides=overrides)
    cluster.nodes.append(gateway)  # stopped with the others; it logs no "indexed" line
    gateway.start(timeout=60, wait_plugin=False)
    data = images(8, "GATEWAY", 9)
    ids = [gateway.upload(d)["ID"] for d in data]
    cluster.wait_indexed(ids, timeout=120)
    cluster.wait_searchable(ids, nodes=[0, 1], timeout=120)
    assert_each_once(cluster, ids, generation=1)
    assert all(n == 1 for n in cluster.indexed_lines().values())
    assert query(cluster.nodes[1], data[3])[0]["instance"] == ids[3]
