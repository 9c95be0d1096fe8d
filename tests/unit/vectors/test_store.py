"""Both stores (SQLite; PostgreSQL of the cluster mode, on a real private server): idempotent
inserts, deletions per Orthanc level, generations, rejections, the row cache."""
import sqlite3

import numpy as np
import pytest

from cbmir.vectors.store import Record, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """A factory: each call opens the same store again (SQLite folder or PG database)."""
    opened = []
    if request.param == "sqlite":
        def make():
            return Store(tmp_path)
    else:
        settings = request.getfixturevalue("pg_database")
        from cbmir.vectors.pg_store import PgStore

        def make():
            opened.append(PgStore(settings, pool_size=2))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


def record(instance, frame=0, study="st1", patient="pa1", series="se1", value=1.0):
    vector = np.full(4, value, dtype=np.float32)
    return Record(instance=instance, frame=frame, vector=vector / np.linalg.norm(vector),
                  sop_uid=f"1.2.{instance}", study_uid=f"1.3.{study}", patient_id=patient,
                  orthanc_study=study, orthanc_patient=patient, orthanc_series=series,
                  modality="MR", label="glioma", model_version="m1")


def test_a_re_sent_instance_is_stored_once(make_store):
    store = make_store()
    first = store.add([record("a"), record("a", 1)], 1)
    again = store.add([record("a"), record("a", 1)], 1)
    assert all(i is not None for i in first) and again == [None, None]
    assert store.counts(1) == {"indexed": 1, "frames": 2, "failed": 0, "skipped": 0}


def test_vectors_round_trip_in_id_order(make_store):
    store = make_store()
    store.add([record("a", value=1.0), record("b", value=2.0)], 1)
    ids, matrix = store.vectors(1)
    assert list(ids) == sorted(ids) and matrix.shape == (2, 4)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0)
    rows = store.instance_rows("a", 1)
    assert rows[0]["label"] == "glioma" and rows[0]["vector"].shape == (4,)


def test_deleting_a_study_removes_its_vectors_and_rejections_only(make_store):
    store = make_store()
    store.add([record("a", study="s1"), record("b", study="s1"), record("c", study="s2")], 1)
    store.reject("d", "failed", "truncated", {"orthanc_study": "s1"})
    removed = store.delete_resource("study", "s1")
    assert len(removed) == 2
    assert store.instances(1) == ["c"] and store.rejection("d") is None
    assert len(store.delete_resource("patient", "pa1")) == 1


def test_activating_a_generation_drops_the_others(make_store):
    store = make_store()
    store.add([record("a")], 1)
    store.add([record("a"), record("b")], 2)
    assert store.active_generation == 1
    store.activate_generation(2)
    assert store.active_generation == 2 and store.counts(2)["indexed"] == 2
    assert store.counts(1)["indexed"] == 0


def test_storing_an_instance_clears_its_old_rejection(make_store):
    store = make_store()
    store.reject("a", "failed", "decoder crashed")
    assert store.counts(1)["failed"] == 1
    store.add([record("a")], 1)
    assert store.rejection("a") is None and store.counts(1)["failed"] == 0


def test_sop_uids_resolve_to_instances_including_rejected_ones(make_store):
    store = make_store()
    store.add([record("a")], 1)
    store.reject("sr", "skipped", "no pixel data", {"sop_uid": "9.9"})
    assert store.instances_for_sop("1.2.a") == ["a"]
    assert store.instances_for_sop("9.9") == ["sr"]
    assert store.instances_for_sop("7.7") == []


def test_row_ids_are_never_reused_after_a_delete(make_store):
    store = make_store()
    (first,) = store.add([record("a")], 1)
    store.delete_resource("instance", "a")
    (second,) = store.add([record("b")], 1)
    assert second > first


def test_state_survives_reopening(make_store):
    make_store().set_state("changes_checkpoint", 42)
    assert make_store().get_state("changes_checkpoint") == "42"


def test_the_row_cache_answers_like_sqlite_and_forgets_deleted_rows(make_store):
    store = make_store()
    store.add([record("a"), record("a", 1), record("b", study="s2")], 1)
    cached = store.instance_rows("a", 1)
    assert [r["frame"] for r in cached] == [0, 1]
    fresh = make_store()  # a new store reads SQLite until warmed
    from_sql = fresh.instance_rows("a", 1)
    assert [{k: v for k, v in r.items() if k != "vector"} for r in from_sql] == \
        [{k: v for k, v in r.items() if k != "vector"} for r in cached]
    assert all(np.array_equal(x["vector"], y["vector"]) for x, y in zip(from_sql, cached))
    fresh.warm_cache(1)
    assert len(fresh.cache) == 3 and fresh.instance_rows("b", 1)[0]["study_uid"] == "1.3.s2"
    ids = [r["id"] for r in cached]
    store.delete_resource("instance", "a")
    assert store.instance_rows("a", 1) == [] and store.metadata(ids) == {}


def test_the_row_cache_keeps_whole_instances_within_its_limit(make_store):
    store = make_store()
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


def test_the_fingerprint_of_each_instance_is_kept_per_generation(make_store):
    store = make_store()
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


def test_the_postgresql_schema_is_migrated_and_a_newer_one_refused(request):
    settings = request.getfixturevalue("pg_database")
    from cbmir.vectors.pg_schema import SCHEMA_VERSION
    from cbmir.vectors.pg_store import PgStore
    store = PgStore(settings, pool_size=1)
    store.add([record("a")], 1)
    with store.connection() as conn:  # the schema of version 2 (before fingerprints)
        conn.execute("ALTER TABLE cbmir_index.vectors DROP COLUMN fingerprint")
        conn.execute("ALTER TABLE cbmir_index.rejected DROP COLUMN fingerprint")
        conn.execute("UPDATE cbmir_index.state SET value='2' WHERE key='schema_version'")
    store.close()
    store = PgStore(settings, pool_size=1)
    assert store.get_state("schema_version") == str(SCHEMA_VERSION) == "5"
    assert store.fingerprint("a", 1) is None and store.counts(1)["indexed"] == 1
    store.reject("r", "skipped", "modality CT", {"fingerprint": "file-1"})
    assert store.rejection("r")["fingerprint"] == "file-1"
    store.set_state("schema_version", SCHEMA_VERSION + 1)
    store.close()
    with pytest.raises(RuntimeError, match="newer than this plugin"):
        PgStore(settings, pool_size=1)


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
