"""SQLite store: idempotent inserts, deletions per Orthanc level, generations, rejections."""
import sqlite3

import numpy as np
import pytest

from cbmir.vectors.store import Record, Store


def record(instance, frame=0, study="st1", patient="pa1", series="se1", value=1.0):
    vector = np.full(4, value, dtype=np.float32)
    return Record(instance=instance, frame=frame, vector=vector / np.linalg.norm(vector),
                  sop_uid=f"1.2.{instance}", study_uid=f"1.3.{study}", patient_id=patient,
                  orthanc_study=study, orthanc_patient=patient, orthanc_series=series,
                  modality="MR", label="glioma", model_version="m1")


def test_a_re_sent_instance_is_stored_once(tmp_path):
    store = Store(tmp_path)
    first = store.add([record("a"), record("a", 1)], 1)
    again = store.add([record("a"), record("a", 1)], 1)
    assert all(i is not None for i in first) and again == [None, None]
    assert store.counts(1) == {"indexed": 1, "frames": 2, "failed": 0, "skipped": 0}


def test_vectors_round_trip_in_id_order(tmp_path):
    store = Store(tmp_path)
    store.add([record("a", value=1.0), record("b", value=2.0)], 1)
    ids, matrix = store.vectors(1)
    assert list(ids) == sorted(ids) and matrix.shape == (2, 4)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0)
    rows = store.instance_rows("a", 1)
    assert rows[0]["label"] == "glioma" and rows[0]["vector"].shape == (4,)


def test_deleting_a_study_removes_its_vectors_and_rejections_only(tmp_path):
    store = Store(tmp_path)
    store.add([record("a", study="s1"), record("b", study="s1"), record("c", study="s2")], 1)
    store.reject("d", "failed", "truncated", {"orthanc_study": "s1"})
    removed = store.delete_resource("study", "s1")
    assert len(removed) == 2
    assert store.instances(1) == ["c"] and store.rejection("d") is None
    assert len(store.delete_resource("patient", "pa1")) == 1


def test_activating_a_generation_drops_the_others(tmp_path):
    store = Store(tmp_path)
    store.add([record("a")], 1)
    store.add([record("a"), record("b")], 2)
    assert store.active_generation == 1
    store.activate_generation(2)
    assert store.active_generation == 2 and store.counts(2)["indexed"] == 2
    assert store.counts(1)["indexed"] == 0


def test_storing_an_instance_clears_its_old_rejection(tmp_path):
    store = Store(tmp_path)
    store.reject("a", "failed", "decoder crashed")
    assert store.counts(1)["failed"] == 1
    store.add([record("a")], 1)
    assert store.rejection("a") is None and store.counts(1)["failed"] == 0


def test_sop_uids_resolve_to_instances_including_rejected_ones(tmp_path):
    store = Store(tmp_path)
    store.add([record("a")], 1)
    store.reject("sr", "skipped", "no pixel data", {"sop_uid": "9.9"})
    assert store.instances_for_sop("1.2.a") == ["a"]
    assert store.instances_for_sop("9.9") == ["sr"]
    assert store.instances_for_sop("7.7") == []


def test_row_ids_are_never_reused_after_a_delete(tmp_path):
    store = Store(tmp_path)
    (first,) = store.add([record("a")], 1)
    store.delete_resource("instance", "a")
    (second,) = store.add([record("b")], 1)
    assert second > first


def test_state_survives_reopening(tmp_path):
    Store(tmp_path).set_state("changes_checkpoint", 42)
    assert Store(tmp_path).get_state("changes_checkpoint") == "42"


def test_the_row_cache_answers_like_sqlite_and_forgets_deleted_rows(tmp_path):
    store = Store(tmp_path)
    store.add([record("a"), record("a", 1), record("b", study="s2")], 1)
    cached = store.instance_rows("a", 1)
    assert [r["frame"] for r in cached] == [0, 1]
    fresh = Store(tmp_path)  # a new store reads SQLite until warmed
    from_sql = fresh.instance_rows("a", 1)
    assert [{k: v for k, v in r.items() if k != "vector"} for r in from_sql] == \
        [{k: v for k, v in r.items() if k != "vector"} for r in cached]
    assert all(np.array_equal(x["vector"], y["vector"]) for x, y in zip(from_sql, cached))
    fresh.warm_cache(1)
    assert len(fresh.cache) == 3 and fresh.instance_rows("b", 1)[0]["study_uid"] == "1.3.s2"
    ids = [r["id"] for r in cached]
    store.delete_resource("instance", "a")
    assert store.instance_rows("a", 1) == [] and store.metadata(ids) == {}


def test_the_row_cache_keeps_whole_instances_within_its_limit(tmp_path):
    store = Store(tmp_path)
    store.cache.limit = 3
    store.add([record("a"), record("a", 1)], 1)
    store.add([record("b"), record("b", 1)], 1)  # would pass the limit: read from SQLite
    assert len(store.cache) == 2 and store.cache.instance("b", 1) is None
    assert [r["frame"] for r in store.instance_rows("b", 1)] == [0, 1]
    store.warm_cache(1)
    assert len(store.cache) == 2


def test_attempt_counters_survive_until_cleared(tmp_path):
    store = Store(tmp_path)
    store.begin_attempt(["a", "b"])
    store.begin_attempt(["a"])
    assert Store(tmp_path).attempts(["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}
    store.end_attempt(["a"])
    assert store.attempts(["a", "b"]) == {"a": 0, "b": 1}
    assert [r["instance"] for r in store.in_progress()] == ["b"]


class _FailingCommit:
    """A connection whose COMMIT fails the way SQLITE_FULL can: transaction already gone."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self.conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)


def test_a_failed_write_raises_its_own_error_not_a_rollback_error(tmp_path, monkeypatch):
    store = Store(tmp_path)
    real = store._conn()
    monkeypatch.setattr(store, "_conn", lambda: _FailingCommit(real))
    record = Record(instance="a", frame=0, vector=np.ones(4, np.float32))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        store.add([record], 1)
def test_the_fingerprint_of_each_instance_is_kept_per_generation(tmp_path):
    store = Store(tmp_path)
    first = record("a")
    first.fingerprint = "file-1"
    store.add([first, record("b")], 1)
    second = record("a")
    second.fingerprint = "file-2"
    store.add([second], 2)
    assert (store.fingerprint("a", 1), store.fingerprint("a", 2)) == ("file-1", "file-2")
    assert store.fingerprint("b", 1) is None  # not recorded: unknown
    assert store.fingerprint("a", 3) is None  # not indexed there


def test_an_index_written_before_fingerprints_is_migrated_in_place(tmp_path):
    import sqlite3

    store = Store(tmp_path)
    store.add([record("a")], 1)
    store.close()
    conn = sqlite3.connect(tmp_path / "cbmir.sqlite")  # the schema an earlier release wrote
    conn.execute("ALTER TABLE vectors DROP COLUMN fingerprint")
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    assert store.fingerprint("a", 1) is None and store.instance_rows("a", 1)[0]["label"] == "glioma"
    new = record("b")
    new.fingerprint = "file-9"
    store.add([new], 1)
    assert store.fingerprint("b", 1) == "file-9" and store.counts(1)["indexed"] == 2
    Store(tmp_path)  # opening a migrated index again changes nothing


def test_a_rejection_keeps_the_fingerprint_of_its_file_and_old_indexes_gain_the_column(tmp_path):
    import sqlite3

    store = Store(tmp_path)
    store.reject("a", "skipped", "modality CT", {"fingerprint": "file-1"})
    store.reject("b", "failed", "cut short")
    assert (store.rejection("a")["fingerprint"], store.rejection("b")["fingerprint"]) == (
        "file-1", None)
    store.close()
    conn = sqlite3.connect(tmp_path / "cbmir.sqlite")  # the schema an earlier release wrote
    conn.execute("ALTER TABLE rejected DROP COLUMN fingerprint")
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    assert store.rejection("a")["fingerprint"] is None and store.rejection("a")["kind"] == "skipped"
    store.reject("c", "skipped", "no pixels", {"fingerprint": "file-3"})
    assert store.rejection("c")["fingerprint"] == "file-3"
