"""Cluster mode on a real PostgreSQL (private server of the tests): work claims, the
ClusterQueue the worker reads, and a node's replica fed from the shared vector table."""
from __future__ import annotations

import collections
import threading
import time
import types

import numpy as np
import pytest

from cbmir.vectors.store import Record

psycopg = pytest.importorskip("psycopg", reason="psycopg is the cluster mode's driver")


def record(instance, frame=0, value=1.0, study="st1"):
    vector = np.zeros(4, dtype=np.float32)
    vector[int(value) % 4] = 1.0
    return Record(instance=instance, frame=frame, vector=vector, sop_uid=f"1.2.{instance}",
                  orthanc_study=study, orthanc_patient="pa1", orthanc_series="se1",
                  modality="MR", model_version="m1")


@pytest.fixture
def pg_store(pg_database):
    from cbmir.vectors.pg_store import PgStore
    stores = []

    def make(node="node-a"):
        stores.append(PgStore(pg_database, pool_size=4, node=node))
        return stores[-1]
    yield make
    for store in stores:
        store.close()


def claims_for(store, node, lease=30.0):
    from cbmir.service.claims import Claims
    return Claims(store, node, lease)


def test_two_claimers_never_get_the_same_instance(pg_store):
    store = pg_store()
    a, b = claims_for(store, "a"), claims_for(store, "b")
    assert a.enqueue([f"i{n}" for n in range(20)], 1) == 20
    assert a.enqueue([f"i{n}" for n in range(20)], 1) == 0  # idempotent
    got_a, got_b = a.claim(8), b.claim(100)
    names_a, names_b = {r[0] for r in got_a}, {r[0] for r in got_b}
    assert len(names_a) == 8 and len(names_b) == 12 and not names_a & names_b
    assert a.claim(5) == [] and b.claim(5) == []


def test_simultaneous_claims_never_overlap(pg_store):
    """Claimers released together by a barrier, round after round: no row twice."""
    store = pg_store()
    claims_for(store, "loader").enqueue([f"r{n:03d}" for n in range(240)], 1)
    nodes = [claims_for(pg_store(f"n{k}"), f"n{k}") for k in range(4)]
    barrier = threading.Barrier(len(nodes))
    taken = collections.Counter()
    lock = threading.Lock()

    def run(claims):
        for _ in range(12):
            barrier.wait()
            rows = claims.claim(5)
            with lock:
                taken.update(r[0] for r in rows)

    threads = [threading.Thread(target=run, args=(c,)) for c in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(taken) == 240 and set(taken.values()) == {1}, taken.most_common(3)


def test_an_expired_claim_is_taken_by_another_node(pg_store):
    store = pg_store()
    a, b = claims_for(store, "a", lease=0.5), claims_for(store, "b")
    a.enqueue(["x"], 1)
    assert [r[0] for r in a.claim(1)] == ["x"]
    assert b.claim(1) == []  # a's lease holds
    time.sleep(0.7)  # a "died": nobody renewed its lease
    assert [r[0] for r in b.claim(1)] == ["x"]
    assert a.renew(["x"]) == 0  # a's claim is gone for good


def test_done_work_is_not_queued_again_and_a_rejection_ends_it(pg_store):
    store = pg_store()
    claims = claims_for(store, "a")
    store.add([record("done")], 1)
    store.reject("bad", "failed", "truncated")
    assert claims.enqueue(["done", "bad", "new"], 1) == 1
    assert claims.enqueue(["bad"], 1, force=True) == 1  # a re-index retries rejections
    assert claims.enqueue(["done"], 1, only_new=False) == 1  # a first-seen change: overwrite?
    with store.connection() as conn:
        conn.execute("DELETE FROM cbmir_index.queue WHERE instance='done'")
    claims.claim(10)
    store.reject("new", "skipped", "not an image")
    assert claims.pending(["done", "bad", "new"]) == {"bad"}


def test_vectors_of_an_instance_deleted_on_another_node_after_its_claim_are_refused(pg_store):
    a, b = pg_store("a"), pg_store("b")
    claims = claims_for(a, "a")
    claims.enqueue(["x", "y", "z"], 1)
    claims.claim(3)  # A starts embedding x, y and z
    a.delete_resource("series", "other")  # A's own deletes are its engine's business
    b.delete_resource("instance", "x")  # B deletes x and the study of y: no rows yet
    b.delete_resource("study", "st-y")
    ids = a.add([record("x"), record("y", study="st-y"), record("z")], 1)
    assert ids[0] is None and ids[1] is None and ids[2] is not None
    assert a.instances(1) == ["z"] and claims.pending(["x", "y", "z"]) == {"x", "y"}
    a.delete_resource("instance", "z")  # A itself (an overwrite it found): not refused
    assert a.add([record("z")], 1)[0] is not None
    with a.connection() as conn:  # stored again later (overwrite): a new claim embeds it
        conn.execute("UPDATE cbmir_index.queue SET claimed_until=NULL")
    claims.claim(3)
    assert a.add([record("x")], 1)[0] is not None


def test_a_claim_without_outcome_is_released_then_dropped(pg_store):
    from cbmir.service.claims import MAX_CLAIMS
    store = pg_store()
    claims = claims_for(store, "a")
    claims.enqueue(["gone"], 1)
    for attempt in range(MAX_CLAIMS):
        with store.connection() as conn:  # skip the release delay
            conn.execute("UPDATE cbmir_index.queue SET claimed_until=NULL WHERE claimed_by IS NULL")
        assert [r[0] for r in claims.claim(1)] == ["gone"], attempt
        claims.finish(["gone"])
    assert claims.pending(["gone"]) == set()


def test_each_instance_is_embedded_exactly_once_by_concurrent_claimers(pg_store):
    """Four nodes (threads, each with its own pool) drain one queue the way the worker does:
    claim, insert the vectors (which deletes the queue row), finish."""
    instances = [f"inst-{n:03d}" for n in range(120)]
    claims_for(pg_store(), "loader").enqueue(instances, 1)
    processed = collections.Counter()
    lock = threading.Lock()
    errors = []

    def node(name):
        store = pg_store(name)
        claims = claims_for(store, name)
        try:
            while True:
                rows = claims.claim(3)
                if not rows:
                    if not claims.pending(instances):
                        return
                    time.sleep(0.01)
                    continue
                for instance, generation, *_ in rows:
                    with lock:
                        processed[instance] += 1
                    store.add([record(instance), record(instance, 1)], generation)
                claims.finish([r[0] for r in rows])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=node, args=(f"node-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert set(processed) == set(instances) and set(processed.values()) == {1}
    store = pg_store()
    assert store.counts(1) == {"indexed": 120, "frames": 240, "failed": 0, "skipped": 0}


def test_the_cluster_queue_feeds_the_local_queue_and_finishes_claims(pg_store):
    from cbmir.service.claims import ClusterQueue
    store = pg_store()
    queue = ClusterQueue(claims_for(store, "a"), lambda: 1, batch_size=2, log=lambda m: None)
    for name in ("p", "q", "r"):
        queue.put(name, arrival=True)
    assert queue.claim_once() == 3 and queue.claim_once() == 0  # room: 2 batches
    batch = queue.get_batch(10, timeout=0)
    assert sorted(i for i, _ in batch) == ["p", "q", "r"]
    store.add([record("p")], 1)
    store.reject("q", "failed", "bad")
    queue.done(["p", "q", "r"])  # r: no outcome (deleted meanwhile?): released, not lost
    assert queue.claims.pending(["p", "q", "r"]) == {"r"}
    assert not queue.wait_done(["r"], timeout=0.2) and queue.wait_done(["p", "q"], timeout=0.2)


# -- replicas ---------------------------------------------------------------------------------
@pytest.fixture
def make_engine(pg_database, tmp_path):
    from cbmir.service.cluster import ClusterEngine
    from cbmir.service.config import Config
    engines = []

    def make(node, list_instances=None, poll=0.25):
        config = Config(index_directory=tmp_path / node, store="postgresql",
                        postgresql=pg_database, node_name=node, rebuild_threshold=1000,
                        replica_poll_seconds=poll)
        gateway = None if list_instances is None else types.SimpleNamespace(
            list_instances=list_instances, instance_exists=lambda i: i in list_instances())
        engines.append(ClusterEngine(config, log=lambda message: None, gateway=gateway))
        return engines[-1]
    yield make
    for engine in engines:
        engine.replica.stop()
        engine.queue.stop()
        engine.store.close()


def found(engine, vector):
    return {row_id for row_id, _ in engine.active.search(np.asarray(vector, np.float32), 10)}


def test_a_replica_sees_inserts_and_tombstones_of_another_node(make_engine):
    a, b = make_engine("a"), make_engine("b")
    ids = a.store.add([record("x", value=0), record("y", value=1)], 1)
    a.added(a.active, ids, np.eye(4, dtype=np.float32)[:2])
    assert b.replica.poll() == 2
    assert set(ids) <= found(b, [1, 0, 0, 0]) | found(b, [0, 1, 0, 0])
    assert b.store.instance_rows("x", 1)[0]["id"] == ids[0]  # metadata of a row B never wrote
    assert b.replica.poll() == 0  # nothing new
    a.delete("instance", "x")
    b.replica.poll()
    assert ids[0] not in found(b, [1, 0, 0, 0]) and b.store.instance_rows("x", 1) == []
    assert b.replica.describe()["seq_applied"] == b.store.last_seq()


def test_a_replica_switches_when_the_active_generation_row_flips(make_engine):
    a, b = make_engine("a"), make_engine("b")
    a.store.add([record("x", value=0)], 1)
    b.replica.poll()
    (new_id,) = a.store.add([record("x", value=2)], 2)
    a.store.switch_generation(2)
    b.replica.poll()
    assert b.active.generation == 2 and found(b, [0, 0, 1, 0]) == {new_id}


def test_a_re_index_started_on_one_node_is_joined_by_the_others(make_engine):
    listed = ["x"]
    a, b = make_engine("a", lambda: listed), make_engine("b", lambda: listed)
    a.store.add([record("x")], 1)
    assert a.start_reindex(lambda: listed)
    assert not b.start_reindex(lambda: listed)  # once for the cluster: a 409 on B
    b.replica.poll()
    assert b.target is not None and b.target.generation == 2
    deadline = time.monotonic() + 20  # A's re-index thread queues it
    while not a.claims.pending(["x"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    with a.store.connection() as conn:  # once, for generation 2, though both nodes drive it
        rows = conn.execute("SELECT instance, generation FROM cbmir_index.queue").fetchall()
    assert rows == [("x", 2)]


def test_reading_an_instance_the_replica_lacks_makes_it_catch_up_first(make_engine):
    """/cbmir/similar finds the rows in PostgreSQL before the next poll: it must not then
    search a replica without them (an empty answer)."""
    a, b = make_engine("a"), make_engine("b", poll=60)
    b.replica.start()
    b.replica.catch_up()  # its first poll is done
    (row_id,) = a.store.add([record("x", value=3)], 1)
    assert b.store.instance_rows("x", 1)[0]["id"] == row_id
    assert found(b, [0, 0, 0, 1]) == {row_id}  # without waiting for the 60 s poll


def test_a_node_that_is_storing_leaves_its_fresh_arrivals_to_the_others(pg_store):
    from cbmir.service.claims import ClusterQueue
    store = pg_store()
    storing = ClusterQueue(claims_for(store, "a"), lambda: 1, log=lambda m: None, hold=0.5)
    idle = ClusterQueue(claims_for(store, "b"), lambda: 1, log=lambda m: None, hold=0.5)
    storing.put("fresh", arrival=True)  # a NEW_INSTANCE on A
    assert storing.claim_once() == 0  # A is storing: not before it waited `hold`
    assert idle.claim_once() == 1  # B takes it at once
    storing.put("later", arrival=True)
    time.sleep(0.6)  # nobody else took it: A's own turn, as its pacer would have given it
    storing.last_arrival = storing.clock()
    assert storing.claim_once() == 1
    assert storing.oldest_age(arrivals_only=True) >= 0.5  # its pacer does not hold it again
    alone = ClusterQueue(claims_for(store, "c"), lambda: 1, log=lambda m: None, hold=0.5)
    alone.has_peers = lambda: False  # no other live node: it works as a single node does
    alone.put("solo", arrival=True)
    assert alone.claim_once() == 1


def test_notifications_wake_the_other_nodes(pg_database, pg_store):
    from cbmir.service.notify import Listener
    from cbmir.vectors.pg_schema import conninfo
    woken = {"vectors": threading.Event(), "queue": threading.Event()}
    listener = Listener(conninfo(pg_database), {k: e.set for k, e in woken.items()})
    listener.start()
    try:
        store = pg_store()
        deadline = time.monotonic() + 30
        while not woken["queue"].is_set() and time.monotonic() < deadline:
            claims_for(store, "a").enqueue([f"w{time.monotonic()}"], 1)  # until it listens
            woken["queue"].wait(0.2)
        store.add([record("v")], 1)
        assert woken["queue"].is_set() and woken["vectors"].wait(10)
    finally:
        listener.stop()


def test_old_rows_wait_for_every_live_node_to_switch(make_engine):
    a, b = make_engine("a"), make_engine("b")
    b.replica.heartbeat()  # b answers from generation 1
    assert not a.wait_nodes_switched(2, timeout=0.6)
    with a.store.connection() as conn:
        conn.execute("UPDATE cbmir_index.nodes SET replica = jsonb_set(replica, "
                     "'{generation}', '2') WHERE name = 'b'")
    assert a.wait_nodes_switched(2, timeout=5)
