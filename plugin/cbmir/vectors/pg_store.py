"""PostgreSQL store of the cluster mode: the same interface as the SQLite `Store`.

Why a second store and not a shared SQLite file: several Orthanc nodes on one
PostgreSQL (orthanc-postgresql) must see one set of vectors, rejections and
state, and claim work in one place (cbmir.service.claims). Everything lives in
the `cbmir_index` schema of Orthanc's own database, created and migrated here
(`state.schema_version`). Not `cbmir`: with a database user of that name (the
tests' and `make cluster`'s) PostgreSQL's default search_path ("$user", public)
would put Orthanc's own unqualified tables into it ("Corrupted PostgreSQL database").

Rows that replicas must follow (vector inserts, tombstones of deleted rows) take
their `seq` from one sequence *under one transaction-level advisory lock*, so
they commit in `seq` order: a replica that has applied everything up to `seq` N
never meets a later commit with a smaller one (the problem of fact 8 with
Orthanc's own /changes). Those writes are a few ms each; nothing else waits.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict

import numpy as np
from psycopg import OperationalError
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from cbmir.vectors.pg_schema import DELETED_KEPT, NOTIFY, SEQ_LOCK, conninfo, migrate
from cbmir.vectors.row_cache import RowCache
from cbmir.vectors.store import LEVEL_COLUMNS, META_FIELDS, Record



def _sql(where: str) -> str:
    return where.replace("?", "%s")


class PgStore:
    """Thread-safe: a small connection pool; transactions where SQLite had BEGIN IMMEDIATE."""

    kind = "postgresql"
    # PostgreSQL away or the pool exhausted: the write is retried, nothing is lost
    retryable_errors: tuple[type[BaseException], ...] = (OperationalError, PoolTimeout)

    def __init__(self, settings: dict, pool_size: int = 8, node: str = ""):
        self.settings = dict(settings)
        self.node = node
        self.pool = ConnectionPool(conninfo(settings), min_size=1, max_size=pool_size,
                                   kwargs={"autocommit": True}, open=True, timeout=15,
                                   check=ConnectionPool.check_connection, name="cbmir")
        self.deletions = 0
        self.cache = RowCache()
        self.on_uncached_rows = None  # called when instance_rows read PostgreSQL, not the cache
        self.before_drop = None  # called with the new generation before an old one is dropped
        self._write_lock = threading.Lock()  # only for cache coherence, not for PG
        try:
            self.migrate()
        except BaseException:  # PostgreSQL away at start: the caller retries with a new store
            self.pool.close()
            raise

    def close(self) -> None:
        self.pool.close()

    def connection(self):
        return self.pool.connection()

    # -- schema ----------------------------------------------------------------------------
    def migrate(self) -> int:
        """Create or upgrade the schema (cbmir.vectors.pg_schema); returns the version found."""
        with self.connection() as conn:
            return migrate(conn)

    def warm_cache(self, generation: int) -> None:
        self.cache.clear()
        limit = self.cache.limit
        rows = self.rows("generation=? ORDER BY id LIMIT ?", (generation, limit + 1), True)
        if len(rows) > limit:
            last = rows[-1]["instance"]
            rows = [r for r in rows[:limit] if r["instance"] != last]
        self.cache.put(rows)

    # -- state -----------------------------------------------------------------------------
    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT value FROM cbmir_index.state WHERE key=%s", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO cbmir_index.state (key, value) VALUES (%s, %s) ON CONFLICT (key)"
                         " DO UPDATE SET value=excluded.value", (key, str(value)))

    def advance_state(self, key: str, value: int) -> int:
        """Set an integer state to max(current, value) (a checkpoint several nodes move)."""
        with self.connection() as conn:
            row = conn.execute(
                "INSERT INTO cbmir_index.state (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                " SET value=GREATEST(cbmir_index.state.value::bigint, excluded.value::bigint)::text"
                " RETURNING value", (key, str(int(value)))).fetchone()
        return int(row[0])

    def compare_and_set_state(self, key: str, expected: str, value) -> bool:
        """Atomic: set `key` to `value` only while it holds `expected` (absent = "0")."""
        with self.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO cbmir_index.state (key, value) VALUES (%s, '0') "
                         "ON CONFLICT (key) DO NOTHING", (key,))
            cursor = conn.execute("UPDATE cbmir_index.state SET value=%s WHERE key=%s AND value=%s",
                                  (str(value), key, expected))
            return cursor.rowcount == 1

    def begin_reindex(self, active: int, generation: int) -> bool:
        """Atomically: while no re-index runs and `active` answers, drop leftovers of other
        generations and record `generation` as the cluster's re-index target."""
        with self.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO cbmir_index.state (key, value) VALUES ('reindex_generation', '0'),"
                         " ('active_generation', '1') ON CONFLICT (key) DO NOTHING")
            state = dict(conn.execute("SELECT key, value FROM cbmir_index.state WHERE key IN "
                                      "('reindex_generation', 'active_generation') FOR UPDATE"))
            if int(state["reindex_generation"] or 0) != 0 or int(state["active_generation"]) != active:
                return False
            conn.execute("DELETE FROM cbmir_index.vectors WHERE generation<>%s", (active,))
            conn.execute("DELETE FROM cbmir_index.queue WHERE generation<>%s", (active,))
            conn.execute("UPDATE cbmir_index.state SET value=%s WHERE key='reindex_generation'",
                         (str(generation),))
        return True

    def states(self, *keys: str) -> dict[str, str]:
        """Several state values in one round trip (absent keys are left out)."""
        with self.connection() as conn:
            return dict(conn.execute("SELECT key, value FROM cbmir_index.state WHERE key = ANY(%s)",
                                     (list(keys),)).fetchall())

    @property
    def active_generation(self) -> int:
        return int(self.get_state("active_generation", "1"))

    # -- vectors ---------------------------------------------------------------------------
    def add(self, records: list[Record], generation: int) -> list[int | None]:
        """Insert in one transaction, which also removes the work-queue rows of these
        instances for `generation` (done exactly when the vectors are there)."""
        inserted: list[int | None] = []
        fresh: list[dict] = []
        now = time.time()
        columns = ("generation",) + META_FIELDS + ("fingerprint", "vector", "created")
        sql = (f"INSERT INTO cbmir_index.vectors ({', '.join(columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING RETURNING id")
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQ_LOCK,))
            stale = self._deleted_since_claim(conn, records)
            for record in records:
                if record.instance in stale:
                    inserted.append(None)
                    continue
                values = asdict(record)
                vector = np.asarray(values.pop("vector"), dtype=np.float32).tobytes()
                row = ([generation] + [values[name] for name in META_FIELDS]
                       + [values["fingerprint"], vector, now])
                found = conn.execute(sql, row).fetchone()
                row_id = found[0] if found else None
                inserted.append(row_id)
                if row_id is not None:
                    fresh.append({"id": row_id, "generation": generation,
                                  **{name: values[name] for name in META_FIELDS},
                                  "vector": np.frombuffer(vector, dtype=np.float32)})
            instances = sorted({r.instance for r in records} - stale)
            conn.execute("DELETE FROM cbmir_index.rejected WHERE instance = ANY(%s)", (instances,))
            conn.execute("DELETE FROM cbmir_index.queue WHERE instance = ANY(%s) AND generation=%s",
                         (instances, generation))
            if fresh:
                conn.execute(NOTIFY, ("vectors",))
        self.cache.put(fresh)
        return inserted

    def _deleted_since_claim(self, conn, records: list[Record]) -> set[str]:
        """Instances of `records` under a resource another node deleted after this instance's
        work was claimed: its vectors would outlive the delete (the deleting node found no
        rows yet). Their queue rows stay: the next claim finds the instance gone, or stored
        again (overwritten) and embeds the new content."""
        instances = sorted({r.instance for r in records})
        claimed = dict(conn.execute(
            "SELECT instance, MIN(claimed_at) FROM cbmir_index.queue WHERE instance = ANY(%s) "
            "AND claimed_at IS NOT NULL GROUP BY instance", (instances,)).fetchall())
        if not claimed:
            return set()
        deleted = conn.execute("SELECT level, resource, at FROM cbmir_index.deleted WHERE at >= %s"
                               " AND node IS DISTINCT FROM %s",  # own deletes: deleted_since
                               (min(claimed.values()), self.node)).fetchall()
        if not deleted:
            return set()
        stale = set()
        for record in records:
            since = claimed.get(record.instance)
            keys = {("instance", record.instance), ("series", record.orthanc_series),
                    ("study", record.orthanc_study), ("patient", record.orthanc_patient)}
            if since is not None and any((level, resource) in keys and at >= since
                                         for level, resource, at in deleted):
                stale.add(record.instance)
        return stale

    def has_instance(self, instance: str, generation: int) -> bool:
        with self.connection() as conn:
            return conn.execute("SELECT 1 FROM cbmir_index.vectors WHERE instance=%s AND generation=%s "
                                "LIMIT 1", (instance, generation)).fetchone() is not None

    def fingerprint(self, instance: str, generation: int) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT fingerprint FROM cbmir_index.vectors WHERE instance=%s "
                               "AND generation=%s LIMIT 1", (instance, generation)).fetchone()
        return row[0] if row else None

    def rows(self, where: str, args: tuple, with_vectors: bool = False) -> list[dict]:
        columns = "id, generation, " + ", ".join(META_FIELDS) + (", vector" if with_vectors else "")
        with self.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            result = cursor.execute(f"SELECT {columns} FROM cbmir_index.vectors WHERE {_sql(where)}",
                                    args).fetchall()
        if with_vectors:
            for item in result:
                item["vector"] = np.frombuffer(item["vector"], dtype=np.float32)
        return result

    def instance_rows(self, instance: str, generation: int) -> list[dict]:
        cached = self.cache.instance(instance, generation)
        if cached is not None:
            return cached
        rows = self.rows("instance=? AND generation=? ORDER BY frame", (instance, generation), True)
        if rows and self.on_uncached_rows is not None:
            self.on_uncached_rows()  # the cluster's replica catches up (cbmir.service.replica)
        return rows

    def instances_for_sop(self, sop_uid: str, limit: int = 10) -> list[str]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT instance FROM cbmir_index.vectors WHERE sop_uid=%s UNION "
                "SELECT instance FROM cbmir_index.rejected WHERE sop_uid=%s LIMIT %s",
                (sop_uid, sop_uid, limit)).fetchall()
        return sorted(row[0] for row in rows)

    def metadata(self, ids: list[int]) -> dict[int, dict]:
        result, missing = self.cache.lookup(ids)
        if missing:
            for row in self.rows("id = ANY(?)", (missing,)):
                result[row["id"]] = row
        return result

    def vectors(self, generation: int) -> tuple[np.ndarray, np.ndarray]:
        with self.connection() as conn:
            cursor = conn.cursor(binary=True)
            rows = cursor.execute("SELECT id, vector FROM cbmir_index.vectors WHERE generation=%s "
                                  "ORDER BY id", (generation,)).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows),
                               dtype=np.float32).reshape(len(rows), -1)
        return np.asarray([r[0] for r in rows], dtype=np.int64), matrix

    def instances(self, generation: int) -> list[str]:
        with self.connection() as conn:
            return [r[0] for r in conn.execute(
                "SELECT DISTINCT instance FROM cbmir_index.vectors WHERE generation=%s", (generation,))]

    def all_instances(self) -> set[str]:
        with self.connection() as conn:
            return ({r[0] for r in conn.execute("SELECT DISTINCT instance FROM cbmir_index.vectors")}
                    | {r[0] for r in conn.execute("SELECT instance FROM cbmir_index.rejected")})

    def delete_resource(self, level: str, orthanc_id: str) -> list[int]:
        """Remove every vector (all generations), rejection and queued work under a resource,
        leaving a tombstone per vector row for the other nodes' replicas."""
        column = LEVEL_COLUMNS[level.lower()]
        self.deletions += 1
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQ_LOCK,))
            removed = conn.execute(f"DELETE FROM cbmir_index.vectors WHERE {column}=%s "
                                   f"RETURNING id, generation", (orthanc_id,)).fetchall()
            if removed:
                now = time.time()
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO cbmir_index.tombstones (row_id, generation, level, resource, node,"
                        " at) VALUES (%s, %s, %s, %s, %s, %s)",
                        [(row_id, generation, level.lower(), orthanc_id, self.node, now)
                         for row_id, generation in removed])
            if removed:
                conn.execute(NOTIFY, ("vectors",))
            conn.execute(f"DELETE FROM cbmir_index.rejected WHERE {column}=%s", (orthanc_id,))
            conn.execute("INSERT INTO cbmir_index.deleted (level, resource, node) VALUES "
                         "(%s, %s, %s)", (level.lower(), orthanc_id, self.node))
            conn.execute(f"DELETE FROM cbmir_index.deleted WHERE at < now() - interval "
                         f"'{DELETED_KEPT}'")
            if column == "instance":
                conn.execute("DELETE FROM cbmir_index.queue WHERE instance=%s AND (claimed_by "
                             "IS NULL OR claimed_until < now())", (orthanc_id,))  # held: see add
        ids = [row_id for row_id, _ in removed]
        self.cache.drop(ids)
        return ids

    def activate_generation(self, generation: int) -> None:
        with self.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM cbmir_index.vectors WHERE generation<>%s", (generation,))
            conn.execute("DELETE FROM cbmir_index.queue WHERE generation<>%s", (generation,))
            conn.execute("INSERT INTO cbmir_index.state (key, value) VALUES ('active_generation', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (str(generation),))
        self.warm_cache(generation)

    def switch_generation(self, generation: int) -> None:
        with self.connection() as conn, conn.transaction():
            for key, value in (("active_generation", str(generation)), ("reindex_generation", "0")):
                conn.execute("INSERT INTO cbmir_index.state (key, value) VALUES (%s, %s) ON CONFLICT "
                             "(key) DO UPDATE SET value=excluded.value", (key, value))

    def drop_generations(self, keep: int, only: int | None = None) -> int:
        if only is not None and self.before_drop is not None:
            self.before_drop(keep)  # the other nodes' replicas leave `only` first (cluster.py)
        where, args = ("generation<%s", (keep,)) if only is None else ("generation=%s", (only,))
        with self.connection() as conn, conn.transaction():
            count = conn.execute(f"DELETE FROM cbmir_index.vectors WHERE {where}", args).rowcount
            conn.execute(f"DELETE FROM cbmir_index.queue WHERE {where}", args)
        if count:
            self.warm_cache(keep)
        return count

    def known_instances(self, generation: int) -> set[str]:
        with self.connection() as conn:
            return ({r[0] for r in conn.execute(
                "SELECT DISTINCT instance FROM cbmir_index.vectors WHERE generation=%s", (generation,))}
                    | {r[0] for r in conn.execute("SELECT instance FROM cbmir_index.rejected")})

    # -- attempts ----------------------------------------------------------------------------
    def attempts(self, instances) -> dict[str, int]:
        instances = list(instances)
        result = dict.fromkeys(instances, 0)
        with self.connection() as conn:
            result.update(conn.execute("SELECT instance, count FROM cbmir_index.attempts WHERE "
                                       "instance = ANY(%s)", (instances,)).fetchall())
        return result

    def begin_attempt(self, instances) -> None:
        with self.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO cbmir_index.attempts (instance, count, at) VALUES (%s, 1, %s) ON CONFLICT"
                " (instance) DO UPDATE SET count=cbmir_index.attempts.count+1, at=excluded.at",
                [(instance, time.time()) for instance in instances])

    def end_attempt(self, instances) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM cbmir_index.attempts WHERE instance = ANY(%s)", (list(instances),))

    def in_progress(self) -> list[dict]:
        with self.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            return cursor.execute("SELECT instance, count FROM cbmir_index.attempts ORDER BY at "
                                  "LIMIT 10").fetchall()

    # -- rejected --------------------------------------------------------------------------
    def reject(self, instance: str, kind: str, reason: str, meta: dict | None = None) -> None:
        """Recorded cluster-wide; the instance's queued work is done with it."""
        meta = meta or {}
        with self.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO cbmir_index.rejected (instance, kind, reason, sop_uid, orthanc_patient,"
                " orthanc_study, orthanc_series, at, fingerprint) VALUES (%s, %s, %s, %s, %s, %s,"
                " %s, %s, %s) ON CONFLICT (instance) DO UPDATE SET kind=excluded.kind,"
                " reason=excluded.reason, sop_uid=excluded.sop_uid,"
                " orthanc_patient=excluded.orthanc_patient, orthanc_study=excluded.orthanc_study,"
                " orthanc_series=excluded.orthanc_series, at=excluded.at,"
                " fingerprint=excluded.fingerprint",
                (instance, kind, reason[:2000], meta.get("sop_uid", ""),
                 meta.get("orthanc_patient", ""), meta.get("orthanc_study", ""),
                 meta.get("orthanc_series", ""), time.time(), meta.get("fingerprint")))
            conn.execute("DELETE FROM cbmir_index.queue WHERE instance=%s", (instance,))

    def rejection(self, instance: str) -> dict | None:
        with self.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            return cursor.execute("SELECT * FROM cbmir_index.rejected WHERE instance=%s",
                                  (instance,)).fetchone()

    def counts(self, generation: int) -> dict:
        with self.connection() as conn:
            instances, frames = conn.execute(
                "SELECT COUNT(DISTINCT instance), COUNT(*) FROM cbmir_index.vectors WHERE generation=%s",
                (generation,)).fetchone()
            by_kind = dict(conn.execute(
                "SELECT kind, COUNT(*) FROM cbmir_index.rejected GROUP BY kind").fetchall())
        return {"indexed": instances, "frames": frames, "failed": by_kind.get("failed", 0),
                "skipped": by_kind.get("skipped", 0)}

    def recent_failures(self, limit: int = 10) -> list[dict]:
        with self.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            return cursor.execute("SELECT instance, kind, reason FROM cbmir_index.rejected WHERE "
                                  "kind='failed' ORDER BY at DESC LIMIT %s", (limit,)).fetchall()

    # -- replica feed ------------------------------------------------------------------------
    def changes_since(self, seq: int, generations: list[int], limit: int = 5000) -> tuple:
        """(inserted rows with vectors, tombstones, new seq) after `seq`, read in one snapshot.
        Rows commit in seq order (SEQ_LOCK), so nothing below the answer's seq comes later."""
        if self.last_seq() <= seq:  # the idle poll: one round trip
            return [], [], seq
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            top = conn.execute(
                "SELECT GREATEST((SELECT MAX(seq) FROM cbmir_index.vectors),"
                " (SELECT MAX(seq) FROM cbmir_index.tombstones))").fetchone()[0]
            if top is None or top <= seq:
                return [], [], seq
            high = min(top, seq + limit)
            cursor = conn.cursor(row_factory=dict_row, binary=True)
            rows = cursor.execute(
                f"SELECT id, seq, generation, {', '.join(META_FIELDS)}, vector FROM cbmir_index.vectors"
                " WHERE seq > %s AND seq <= %s AND generation = ANY(%s) ORDER BY seq",
                (seq, high, list(generations))).fetchall()
            tombs = conn.execute("SELECT seq, row_id, generation FROM cbmir_index.tombstones WHERE "
                                 "seq > %s AND seq <= %s ORDER BY seq", (seq, high)).fetchall()
        for row in rows:
            row["vector"] = np.frombuffer(bytes(row.pop("vector")), dtype=np.float32)
        return rows, tombs, high

    def last_seq(self) -> int:
        with self.connection() as conn:
            row = conn.execute("SELECT GREATEST((SELECT MAX(seq) FROM cbmir_index.vectors),"
                               " (SELECT MAX(seq) FROM cbmir_index.tombstones))").fetchone()
        return int(row[0] or 0)
