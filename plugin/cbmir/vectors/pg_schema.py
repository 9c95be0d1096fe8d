"""The cluster store's PostgreSQL schema, its migrations and the connection settings.

Why its own module: the schema is the contract every node shares (several plugin versions
may meet one database during an upgrade), so it is versioned here, in one place, and
`migrate` brings a database up to `SCHEMA_VERSION` under an advisory lock (nodes starting
together) or refuses one written by a newer plugin.
"""
from __future__ import annotations

import psycopg

from cbmir.vectors.store import META_FIELDS

SCHEMA_VERSION = 5
MIGRATION_LOCK = 0x43424D52  # 'CBMR': serialises schema creation by nodes starting together
SEQ_LOCK = 0x43424D53  # held by every transaction that takes a replica-visible seq

_COLUMNS = ", ".join(f"{name} {'INTEGER' if name == 'frame' else 'TEXT'}" for name in META_FIELDS)
MIGRATIONS = {
    1: f"""
CREATE SEQUENCE IF NOT EXISTS cbmir_index.seq;
CREATE TABLE cbmir_index.vectors (
  id BIGSERIAL PRIMARY KEY, seq BIGINT NOT NULL DEFAULT nextval('cbmir_index.seq'),
  generation INTEGER NOT NULL, {_COLUMNS}, vector BYTEA NOT NULL,
  created DOUBLE PRECISION NOT NULL, UNIQUE (generation, instance, frame));
CREATE INDEX vectors_seq ON cbmir_index.vectors (seq);
CREATE INDEX vectors_sop ON cbmir_index.vectors (sop_uid);
CREATE INDEX vectors_instance ON cbmir_index.vectors (instance);
CREATE INDEX vectors_study ON cbmir_index.vectors (orthanc_study);
CREATE INDEX vectors_series ON cbmir_index.vectors (orthanc_series);
CREATE INDEX vectors_patient ON cbmir_index.vectors (orthanc_patient);
CREATE TABLE cbmir_index.tombstones (
  seq BIGINT PRIMARY KEY DEFAULT nextval('cbmir_index.seq'), row_id BIGINT NOT NULL,
  generation INTEGER NOT NULL, level TEXT NOT NULL, resource TEXT NOT NULL,
  node TEXT, at DOUBLE PRECISION NOT NULL);
CREATE TABLE cbmir_index.rejected (
  instance TEXT PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, sop_uid TEXT,
  orthanc_patient TEXT, orthanc_study TEXT, orthanc_series TEXT, at DOUBLE PRECISION NOT NULL);
CREATE INDEX rejected_sop ON cbmir_index.rejected (sop_uid);
CREATE TABLE cbmir_index.attempts (instance TEXT PRIMARY KEY, count INTEGER NOT NULL,
  at DOUBLE PRECISION NOT NULL);
CREATE TABLE cbmir_index.queue (
  instance TEXT NOT NULL, generation INTEGER NOT NULL, force BOOLEAN NOT NULL DEFAULT false,
  arrival BOOLEAN NOT NULL DEFAULT false, enqueued TIMESTAMPTZ NOT NULL DEFAULT now(),
  claimed_by TEXT, claimed_until TIMESTAMPTZ, attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT, PRIMARY KEY (instance, generation));
CREATE INDEX queue_claim ON cbmir_index.queue (claimed_until NULLS FIRST, enqueued);
CREATE TABLE cbmir_index.nodes (name TEXT PRIMARY KEY, seen TIMESTAMPTZ NOT NULL,
  replica JSONB);
""",
    # 2: deletions by resource (any node), and when a queue row was claimed: a vector insert
    # for an instance deleted after its claim (on another node) is refused (PgStore.add).
    2: """
CREATE TABLE cbmir_index.deleted (level TEXT NOT NULL, resource TEXT NOT NULL,
  at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX deleted_at ON cbmir_index.deleted (at);
ALTER TABLE cbmir_index.queue ADD COLUMN claimed_at TIMESTAMPTZ;
""",
    # 3: the fingerprint of the file a vector was made from (as the SQLite store, issue 11).
    3: """
ALTER TABLE cbmir_index.vectors ADD COLUMN IF NOT EXISTS fingerprint TEXT;
""",
    # 4: and of the file a rejection was decided on.
    4: """
ALTER TABLE cbmir_index.rejected ADD COLUMN IF NOT EXISTS fingerprint TEXT;
""",
    # 5: which node deleted (its own deletes are handled by its engine: Engine.deleted_since).
    5: """
ALTER TABLE cbmir_index.deleted ADD COLUMN IF NOT EXISTS node TEXT;
""",
}
NOTIFY = "SELECT pg_notify('cbmir_index', %s)"  # cbmir.service.notify (sent at commit)
DELETED_KEPT = "1 day"  # how long the resource deletion log is kept


def conninfo(settings: dict) -> str:
    """{"Host", "Port", "Database", "Username", "Password"} (or a "ConnectionUri", as in
    Orthanc's PostgreSQL section) -> a libpq connection string."""
    if settings.get("ConnectionUri"):
        return str(settings["ConnectionUri"])
    parts = {"host": settings.get("Host", "localhost"), "port": settings.get("Port", 5432),
             "dbname": settings.get("Database", "orthanc"), "user": settings.get("Username", ""),
             "password": settings.get("Password", ""), "application_name": "cbmir"}
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v != ""})




def migrate(conn) -> int:
    """Create or upgrade the schema to SCHEMA_VERSION in one transaction; returns the
    version found."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS cbmir_index")
        conn.execute("CREATE TABLE IF NOT EXISTS cbmir_index.state "
                     "(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM cbmir_index.state WHERE key='schema_version'").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"the CBMIR schema in PostgreSQL is version {found}, newer "
                               f"than this plugin's {SCHEMA_VERSION}: upgrade the plugin")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO cbmir_index.state (key, value) VALUES ('schema_version', %s)"
                         " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                         (str(version),))
    return found
