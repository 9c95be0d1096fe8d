"""SQLite (WAL) store of vectors, their metadata, rejected instances and plugin state.

The store is the source of truth; the Annoy file is a disposable cache built
from it. Rows carry a `generation` so that a re-index can write a complete new
set beside the one that keeps answering, then switch in one transaction.
UNIQUE(generation, instance, frame) makes indexing idempotent: a re-sent or
replayed instance is never stored twice.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cbmir.vectors.row_cache import RowCache

META_FIELDS = ("instance", "frame", "sop_uid", "study_uid", "series_uid", "patient_id",
               "modality", "series_description", "study_date", "label", "orthanc_patient",
               "orthanc_study", "orthanc_series", "model_version")
LEVEL_COLUMNS = {"instance": "instance", "series": "orthanc_series",
                 "study": "orthanc_study", "patient": "orthanc_patient"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS vectors (
  id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER NOT NULL,
  {", ".join(f"{name} {'INTEGER' if name == 'frame' else 'TEXT'}" for name in META_FIELDS)},
  vector BLOB NOT NULL, created REAL NOT NULL, fingerprint TEXT,
  UNIQUE (generation, instance, frame));
CREATE INDEX IF NOT EXISTS vectors_sop ON vectors (sop_uid);
CREATE INDEX IF NOT EXISTS vectors_instance ON vectors (instance);
CREATE INDEX IF NOT EXISTS vectors_study ON vectors (orthanc_study);
CREATE INDEX IF NOT EXISTS vectors_series ON vectors (orthanc_series);
CREATE INDEX IF NOT EXISTS vectors_patient ON vectors (orthanc_patient);
CREATE TABLE IF NOT EXISTS rejected (
  instance TEXT PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, sop_uid TEXT,
  orthanc_patient TEXT, orthanc_study TEXT, orthanc_series TEXT, at REAL NOT NULL,
  fingerprint TEXT);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (instance TEXT PRIMARY KEY, count INTEGER NOT NULL,
  at REAL NOT NULL);
"""


def _rollback(conn: sqlite3.Connection) -> None:
    """ROLLBACK only when a transaction is open: SQLite ends some itself (SQLITE_FULL), and
    a second error from a bare ROLLBACK would hide the real one (disk full)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@dataclass
class Record:
    """One embedded frame and what the REST answers show about it."""
    instance: str
    frame: int
    vector: np.ndarray
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    patient_id: str = ""
    modality: str = ""
    series_description: str = ""
    study_date: str = ""
    label: str = ""
    orthanc_patient: str = ""
    orthanc_study: str = ""
    orthanc_series: str = ""
    model_version: str = ""
    fingerprint: str | None = None  # of the file the vector was made from (None: unknown)


class Store:
    """Thread-safe access: one SQLite connection per thread, WAL so readers never wait."""

    # a write that failed with one of these is retried (disk full, locked): nothing is lost
    retryable_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "cbmir.sqlite"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.deletions = 0  # bumped before every delete: lets the worker skip a re-check
        self.cache = RowCache()
        with self._write_lock:
            self._conn().executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring an index written by an earlier release up to this schema. `fingerprint`
        (added for overwrites the plugin never saw), in vectors and in rejected: NULL in old
        rows means unknown."""
        conn = self._conn()
        for table in ("vectors", "rejected"):
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if "fingerprint" not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN fingerprint TEXT")

    def warm_cache(self, generation: int) -> None:
        """Load up to the cache's limit of rows of `generation` (whole instances)."""
        self.cache.clear()
        limit = self.cache.limit
        rows = self.rows("generation=? ORDER BY id LIMIT ?", (generation, limit + 1), True)
        if len(rows) > limit:  # the last instance may be cut: leave it to SQLite
            last = rows[-1]["instance"]
            rows = [r for r in rows[:limit] if r["instance"] != last]
        self.cache.put(rows)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- state -----------------------------------------------------------------------------
    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self._conn().execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value) -> None:
        with self._write_lock:
            self._conn().execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                                 (key, str(value)))

    @property
    def active_generation(self) -> int:
        return int(self.get_state("active_generation", "1"))

    # -- vectors ---------------------------------------------------------------------------
    def add(self, records: list[Record], generation: int) -> list[int | None]:
        """Insert records in one transaction; ids aligned with `records` (None: already there)."""
        inserted: list[int | None] = []
        fresh: list[dict] = []
        now = time.time()
        columns = ("generation",) + META_FIELDS + ("fingerprint", "vector", "created")
        sql = (f"INSERT OR IGNORE INTO vectors ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for record in records:
                    values = asdict(record)
                    vector = np.asarray(values.pop("vector"), dtype=np.float32).tobytes()
                    row = ([generation] + [values[name] for name in META_FIELDS]
                           + [values["fingerprint"], vector, now])
                    cursor = conn.execute(sql, row)
                    row_id = cursor.lastrowid if cursor.rowcount else None
                    inserted.append(row_id)
                    if row_id is not None:
                        fresh.append({"id": row_id, "generation": generation,
                                      **{name: values[name] for name in META_FIELDS},
                                      "vector": np.frombuffer(vector, dtype=np.float32)})
                    conn.execute("DELETE FROM rejected WHERE instance=?", (record.instance,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        self.cache.put(fresh)
        return inserted

    def has_instance(self, instance: str, generation: int) -> bool:
        row = self._conn().execute("SELECT 1 FROM vectors WHERE instance=? AND generation=? LIMIT 1",
                                   (instance, generation)).fetchone()
        return row is not None

    def fingerprint(self, instance: str, generation: int) -> str | None:
        """The fingerprint of the file the instance's vectors in `generation` were made from
        (None: not indexed there, or indexed by a release that did not record it)."""
        row = self._conn().execute(
            "SELECT fingerprint FROM vectors WHERE instance=? AND generation=? LIMIT 1",
            (instance, generation)).fetchone()
        return row[0] if row else None

    def rows(self, where: str, args: tuple, with_vectors: bool = False) -> list[dict]:
        columns = "id, generation, " + ", ".join(META_FIELDS) + (", vector" if with_vectors else "")
        result = []
        for row in self._conn().execute(f"SELECT {columns} FROM vectors WHERE {where}", args):
            item = dict(row)
            if with_vectors:
                item["vector"] = np.frombuffer(item["vector"], dtype=np.float32)
            result.append(item)
        return result

    def instance_rows(self, instance: str, generation: int) -> list[dict]:
        cached = self.cache.instance(instance, generation)
        if cached is not None:
            return cached
        return self.rows("instance=? AND generation=? ORDER BY frame", (instance, generation), True)

    def instances_for_sop(self, sop_uid: str, limit: int = 10) -> list[str]:
        """Every Orthanc instance (indexed or rejected) with this SOPInstanceUID: more than one
        when two patients' objects share it (a broken or hostile sender)."""
        rows = self._conn().execute(
            "SELECT instance FROM vectors WHERE sop_uid=? UNION "
            "SELECT instance FROM rejected WHERE sop_uid=? LIMIT ?",
            (sop_uid, sop_uid, limit)).fetchall()
        return sorted(row[0] for row in rows)

    def metadata(self, ids: list[int]) -> dict[int, dict]:
        """Metadata (no vectors) for row ids, chunked below SQLite's variable limit."""
        result, ids = self.cache.lookup(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for row in self.rows(f"id IN ({', '.join('?' * len(chunk))})", tuple(chunk)):
                result[row["id"]] = row
        return result

    def vectors(self, generation: int) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, float32 matrix) of one generation, in id order."""
        cursor = self._conn().execute(
            "SELECT id, vector FROM vectors WHERE generation=? ORDER BY id", (generation,))
        ids, blobs = [], []
        for row_id, blob in cursor:
            ids.append(row_id)
            blobs.append(blob)
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        # one join + one frombuffer: no per-row array objects for millions of rows
        matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
        return np.asarray(ids, dtype=np.int64), matrix

    def instances(self, generation: int) -> list[str]:
        return [r[0] for r in self._conn().execute(
            "SELECT DISTINCT instance FROM vectors WHERE generation=?", (generation,))]

    def all_instances(self) -> set[str]:
        """Every instance the store knows, in any generation or as rejected."""
        conn = self._conn()
        return ({r[0] for r in conn.execute("SELECT DISTINCT instance FROM vectors")}
                | {r[0] for r in conn.execute("SELECT instance FROM rejected")})

    def delete_resource(self, level: str, orthanc_id: str) -> list[int]:
        """Remove every vector (all generations) and rejection under an Orthanc resource."""
        column = LEVEL_COLUMNS[level.lower()]
        self.deletions += 1
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [r[0] for r in conn.execute(f"SELECT id FROM vectors WHERE {column}=?",
                                                  (orthanc_id,))]
                conn.execute(f"DELETE FROM vectors WHERE {column}=?", (orthanc_id,))
                conn.execute(f"DELETE FROM rejected WHERE {column}=?", (orthanc_id,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        self.cache.drop(ids)
        return ids

    def activate_generation(self, generation: int) -> None:
        """Make `generation` the answering one and drop every other, atomically."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM vectors WHERE generation<>?", (generation,))
                conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES "
                             "('active_generation', ?)", (str(generation),))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        self.warm_cache(generation)

    def switch_generation(self, generation: int) -> None:
        """Make `generation` the answering one, keeping the others' rows: queries that
        started on the old generation still find its rows until `drop_generations`."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                                 (("active_generation", str(generation)),
                                  ("reindex_generation", "0")))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    def drop_generations(self, keep: int, only: int | None = None) -> int:
        """Delete the rows of the generations older than `keep` (or only those of `only`);
        returns how many. (A range on UNIQUE(generation, ...)'s leading column: no scan.)"""
        where, args = ("generation<?", (keep,)) if only is None else ("generation=?", (only,))
        with self._write_lock:
            count = self._conn().execute(f"DELETE FROM vectors WHERE {where}", args).rowcount
        if count:
            self.warm_cache(keep)
        return count

    def known_instances(self, generation: int) -> set[str]:
        """Instances with vectors in `generation` or recorded as skipped/failed."""
        conn = self._conn()
        return ({r[0] for r in conn.execute(
            "SELECT DISTINCT instance FROM vectors WHERE generation=?", (generation,))}
                | {r[0] for r in conn.execute("SELECT instance FROM rejected")})

    # -- attempts: an instance that kills the process is not replayed forever ----------------
    def attempts(self, instances) -> dict[str, int]:
        """How many started attempts of each instance never finished (killed process)."""
        instances = list(instances)
        result = dict.fromkeys(instances, 0)
        for start in range(0, len(instances), 500):
            chunk = instances[start:start + 500]
            result.update(self._conn().execute(
                f"SELECT instance, count FROM attempts WHERE instance IN "
                f"({', '.join('?' * len(chunk))})", chunk).fetchall())
        return result

    def begin_attempt(self, instances) -> None:
        """Written (and committed) before the work starts, so a crash leaves a trace."""
        with self._write_lock:
            self._conn().executemany(
                "INSERT INTO attempts (instance, count, at) VALUES (?, 1, ?) ON CONFLICT(instance)"
                " DO UPDATE SET count=count+1, at=excluded.at",
                [(instance, time.time()) for instance in instances])

    def end_attempt(self, instances) -> None:
        with self._write_lock:
            self._conn().executemany("DELETE FROM attempts WHERE instance=?",
                                     [(instance,) for instance in instances])

    def in_progress(self) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT instance, count FROM attempts ORDER BY at LIMIT 10")]

    # -- rejected --------------------------------------------------------------------------
    def reject(self, instance: str, kind: str, reason: str, meta: dict | None = None) -> None:
        """kind 'skipped' (not an image, other modality) or 'failed' (could not decode/embed);
        meta["fingerprint"]: the file it was decided on (an unseen overwrite is tried again)."""
        meta = meta or {}
        with self._write_lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO rejected (instance, kind, reason, sop_uid, orthanc_patient,"
                " orthanc_study, orthanc_series, at, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (instance, kind, reason[:2000], meta.get("sop_uid", ""),
                 meta.get("orthanc_patient", ""), meta.get("orthanc_study", ""),
                 meta.get("orthanc_series", ""), time.time(), meta.get("fingerprint")))

    def rejection(self, instance: str) -> dict | None:
        row = self._conn().execute("SELECT * FROM rejected WHERE instance=?", (instance,)).fetchone()
        return dict(row) if row else None

    def counts(self, generation: int) -> dict:
        conn = self._conn()
        instances, frames = conn.execute(
            "SELECT COUNT(DISTINCT instance), COUNT(*) FROM vectors WHERE generation=?",
            (generation,)).fetchone()
        by_kind = dict(conn.execute("SELECT kind, COUNT(*) FROM rejected GROUP BY kind").fetchall())
        return {"indexed": instances, "frames": frames, "failed": by_kind.get("failed", 0),
                "skipped": by_kind.get("skipped", 0)}

    def recent_failures(self, limit: int = 10) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT instance, kind, reason FROM rejected WHERE kind='failed' ORDER BY at DESC "
            "LIMIT ?", (limit,))]
