"""cbmir.service.follower (the ChangeFollower) on the fake orthanc module: /changes replayed from
the persisted checkpoint, which moves only once its instances are done; deletions; start-up
reconciliation; an Orthanc error is a logged retry, not a dead thread."""
from __future__ import annotations

import threading
import time

import numpy as np

from cbmir.service.follower import CHECKPOINT, ChangeFollower
from cbmir.service.gateway import Gateway
from cbmir.vectors.store import Record
from support.fake_embedder import fake_engine
from support.fake_orthanc import FakeOrthanc, OrthancException


def setup(tmp_path, **config):
    orthanc, lines = FakeOrthanc(), []
    engine = fake_engine(tmp_path, lines, **config)
    return orthanc, engine, ChangeFollower(Gateway(orthanc), engine), lines


def take_all(engine) -> list[str]:
    """What a worker would do: take every queued instance and mark it done."""
    batch = engine.queue.get_batch(1000, timeout=0)
    engine.queue.done([instance for instance, _ in batch])
    return [instance for instance, _ in batch]


def checkpoint(engine) -> int:
    return int(engine.store.get_state(CHECKPOINT, "0"))


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_checkpoint_moves_only_once_the_instances_of_a_page_are_done(tmp_path):
    orthanc, engine, follower, _ = setup(tmp_path)
    for n in range(3):
        orthanc.store(f"i{n}")
    poll = threading.Thread(target=follower.poll, daemon=True)
    poll.start()
    wait_for(lambda: engine.queue.pending() == 3)
    time.sleep(0.2)
    assert checkpoint(engine) == 0 and poll.is_alive()  # waiting for the worker
    assert sorted(take_all(engine)) == ["i0", "i1", "i2"]
    poll.join(5)
    assert not poll.is_alive() and checkpoint(engine) == 3


def test_a_poll_replays_only_what_came_after_the_checkpoint(tmp_path):
    orthanc, engine, follower, _ = setup(tmp_path)
    orthanc.store("old")
    engine.store.set_state(CHECKPOINT, 1)
    orthanc.store("new")
    threading.Timer(0.2, lambda: take_all(engine)).start()
    follower.poll()
    assert checkpoint(engine) == 2 and orthanc.calls == ["/changes?since=1&limit=200"]


def test_deleted_changes_and_callbacks_remove_the_vectors(tmp_path):
    orthanc, engine, follower, lines = setup(tmp_path)
    for instance, series in (("a", "se1"), ("b", "se2")):
        ids = engine.store.add([Record(instance=instance, frame=0, vector=np.ones(8, np.float32),
                                       orthanc_series=series)], engine.answering_generation)
        engine.added(engine.active, ids, np.ones((1, 8), np.float32))
    orthanc.seq += 1
    orthanc.changes.append({"Seq": orthanc.seq, "ChangeType": "Deleted", "ResourceType": "Series",
                            "ID": "se1"})
    follower.poll()
    assert engine.indexed_rows("a") == [] and engine.indexed_rows("b") != []
    follower.on_deleted("instance", "b")  # the DELETED callback
    assert engine.indexed_rows("b") == [] and engine.status()["deletions"] == 2
    assert any("series se1 deleted, 1 vector(s) removed" in line.lower() for line in lines)


def test_the_thread_reconciles_at_start_and_survives_orthanc_errors(tmp_path):
    orthanc, engine, follower, lines = setup(tmp_path, catch_up_seconds=0.1)
    orthanc.store("in-orthanc")
    engine.store.add([Record(instance="only-in-index", frame=0, vector=np.ones(8, np.float32))],
                     engine.answering_generation)
    orthanc.fail = OrthancException("database busy")
    follower.start()
    wait_for(lambda: any("change follower error" in line for line in lines))
    assert any("reconciliation failed" in line for line in lines)  # Orthanc was down at start
    orthanc.fail = None
    wait_for(lambda: engine.queue.is_pending("in-orthanc"))  # the next poll finds it
    take_all(engine)
    wait_for(lambda: checkpoint(engine) == 1)
    engine.stop()
    follower.join(5)
    assert not follower.thread.is_alive()
