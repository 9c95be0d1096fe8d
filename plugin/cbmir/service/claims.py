"""Cluster work queue: instances to embed, claimed in PostgreSQL by one node at a time.

Why in PostgreSQL: every node hears of different instances (OnChange fires only on
the node that stored it; /changes is shared), yet each instance must be embedded
once cluster-wide. Any node enqueues (`INSERT ... ON CONFLICT DO NOTHING`, skipping
work already done); a node's claimer takes a batch with `FOR UPDATE SKIP LOCKED`
and a lease (`CBMIR.ClaimSeconds`) it renews while the work is pending here, so a
killed node's claims expire and another node takes them. The vectors insert deletes
the queue row in the same transaction (PgStore.add); a rejection deletes it too.

`ClusterQueue` is the engine's WorkQueue in cluster mode: `put` enqueues in
PostgreSQL, the claimer feeds the local in-memory queue the worker already reads,
`done` removes (or releases) this node's claims.
"""
from __future__ import annotations

import threading
import time

from cbmir.service.workqueue import WorkQueue

MAX_CLAIMS = 5  # claims of one row that ended with nothing recorded (deleted instance...)
NOTIFY = "SELECT pg_notify('cbmir_index', %s)"  # as cbmir.vectors.pg_store (notify.py)
BUSY_WINDOW = 0.15  # seconds since this node's last stored image: still storing (as Pacer)


class Claims:
    """SQL of the queue table (cbmir_index.queue, created by PgStore's migration)."""

    def __init__(self, store, node: str, lease: float):
        self.store, self.node, self.lease = store, node, float(lease)

    def enqueue(self, instances, generation: int, force: bool = False,
                arrival: bool = False) -> int:
        """Queue work not done yet (no vectors in `generation`; not rejected unless `force`);
        returns how many rows are new. Idempotent: one row per (instance, generation)."""
        instances = list(dict.fromkeys(instances))
        if not instances:
            return 0
        with self.store.connection() as conn, conn.transaction():
            cursor = conn.execute(
                "INSERT INTO cbmir_index.queue (instance, generation, force, arrival) "
                "SELECT i, %s, %s, %s FROM unnest(%s::text[]) AS i WHERE NOT EXISTS "
                "(SELECT 1 FROM cbmir_index.vectors v WHERE v.instance=i AND v.generation=%s) AND "
                "(%s OR NOT EXISTS (SELECT 1 FROM cbmir_index.rejected r WHERE r.instance=i)) "
                "ON CONFLICT (instance, generation) DO UPDATE SET force=true "
                "WHERE excluded.force AND NOT cbmir_index.queue.force",
                (generation, force, arrival, instances, generation, force))
            if cursor.rowcount:
                conn.execute(NOTIFY, ("queue",))
            return cursor.rowcount

    def claim(self, limit: int, min_age: float = 0.0) -> list[tuple]:
        """Up to `limit` (instance, generation, force, arrival, age) rows nobody holds (or whose
        lease expired) queued at least `min_age` seconds ago, just-stored images first; now
        held by this node."""
        with self.store.connection() as conn:
            return conn.execute(
                "WITH picked AS (SELECT instance, generation FROM cbmir_index.queue "
                " WHERE (claimed_until IS NULL OR claimed_until < now()) "
                " AND enqueued <= now() - make_interval(secs => %s) "
                " ORDER BY arrival DESC, enqueued LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE cbmir_index.queue q SET claimed_by=%s, attempts=q.attempts+1, claimed_at=now(), "
                " claimed_until=now() + make_interval(secs => %s) FROM picked "
                "WHERE q.instance=picked.instance AND q.generation=picked.generation "
                "RETURNING q.instance, q.generation, q.force, q.arrival, "
                " EXTRACT(EPOCH FROM now() - q.enqueued)::float8",
                (min_age, limit, self.node, self.lease)).fetchall()

    def renew(self, instances) -> int:
        instances = list(instances)
        if not instances:
            return 0
        with self.store.connection() as conn:
            return conn.execute(
                "UPDATE cbmir_index.queue SET claimed_until=now() + make_interval(secs => %s) "
                "WHERE claimed_by=%s AND instance = ANY(%s)",
                (self.lease, self.node, instances)).rowcount

    def finish(self, instances) -> int:
        """After the worker is done with `instances`: rows whose outcome is recorded (vectors
        in the row's generation, or a rejection) go; the others are released with a short
        delay, and dropped after MAX_CLAIMS claims (instance deleted meanwhile...)."""
        instances = list(instances)
        if not instances:
            return 0
        with self.store.connection() as conn, conn.transaction():
            done = conn.execute(
                "DELETE FROM cbmir_index.queue q WHERE claimed_by=%s AND instance = ANY(%s) AND ("
                " EXISTS (SELECT 1 FROM cbmir_index.vectors v WHERE v.instance=q.instance AND "
                "  v.generation=q.generation) OR "
                " EXISTS (SELECT 1 FROM cbmir_index.rejected r WHERE r.instance=q.instance) OR "
                " attempts >= %s)", (self.node, instances, MAX_CLAIMS)).rowcount
            conn.execute(
                "UPDATE cbmir_index.queue SET claimed_by=NULL, last_error='released without outcome', "
                "claimed_until=now() + make_interval(secs => attempts) "
                "WHERE claimed_by=%s AND instance = ANY(%s)", (self.node, instances))
        return done

    def release(self, instances, error: str | None = None) -> None:
        """Give claims back at once (this node stops; a store error)."""
        instances = list(instances)
        if instances:
            with self.store.connection() as conn:
                conn.execute("UPDATE cbmir_index.queue SET claimed_by=NULL, claimed_until=NULL, "
                             "last_error=COALESCE(%s, last_error) WHERE claimed_by=%s AND "
                             "instance = ANY(%s)", (error, self.node, instances))

    def pending(self, instances) -> set[str]:
        """Which of `instances` still have queue rows (any generation, any node)."""
        instances = list(instances)
        found: set[str] = set()
        with self.store.connection() as conn:
            for start in range(0, len(instances), 10_000):
                found.update(r[0] for r in conn.execute(
                    "SELECT DISTINCT instance FROM cbmir_index.queue WHERE instance = ANY(%s)",
                    (instances[start:start + 10_000],)))
        return found

    def summary(self) -> dict:
        """Per generation: queued (nobody holds it), claimed (a live lease), by node."""
        with self.store.connection() as conn:
            rows = conn.execute(
                "SELECT generation, claimed_by, claimed_until > now() AS live, COUNT(*) "
                "FROM cbmir_index.queue GROUP BY 1, 2, 3").fetchall()
        result: dict = {}
        for generation, node, live, count in rows:
            entry = result.setdefault(str(generation), {"queued": 0, "claimed": 0, "by_node": {}})
            if node is not None and live:
                entry["claimed"] += count
                entry["by_node"][node] = entry["by_node"].get(node, 0) + count
            else:
                entry["queued"] += count
        return result


class ClusterQueue(WorkQueue):
    """The engine's queue in cluster mode (see the module docstring)."""

    def __init__(self, claims: Claims, write_generation, batch_size: int = 8,
                 poll_seconds: float = 0.25, log=print, hold: float = 0.0):
        super().__init__()
        self.hold = hold  # CBMIR.IndexDelaySeconds: see claim_once
        self.claims = claims
        self.write_generation = write_generation  # () -> generation new work is for
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.log = log
        self.wake = threading.Event()
        self._remote: set[str] = set()  # pending elsewhere in the cluster (last wait_done)
        self._thread: threading.Thread | None = None
        self.claimed = 0  # rows claimed by this node since start
        self.can_work = lambda: True  # False (no model here): leave the work to other nodes

    # -- what the engine, follower and routes call --------------------------------------------
    def put(self, instance: str, force: bool = False, arrival: bool = False) -> None:
        if arrival:
            with self._cond:
                self.last_arrival = self.clock()
        self.claims.enqueue([instance], self.write_generation(), force=force, arrival=arrival)
        self.wake.set()

    def put_many(self, instances, force: bool = False) -> int:
        count = self.claims.enqueue(instances, self.write_generation(), force=force)
        self.wake.set()
        return count

    def done(self, instances) -> None:
        super().done(instances)
        finished = [i for i in instances if not WorkQueue.is_pending(self, i)]
        try:
            self.claims.finish(finished)
        except Exception as error:  # noqa: BLE001 - the lease expires; another claim finishes
            self.log(f"CBMIR: cannot finish claims: {error!r}")

    def wait_done(self, instances, timeout: float | None = None) -> bool:
        """Until no node has work queued for `instances` (cluster-wide)."""
        deadline = None if timeout is None else self.clock() + timeout
        wanted = list(instances)
        while True:
            local = [i for i in wanted if WorkQueue.is_pending(self, i)]
            try:
                self._remote = self.claims.pending(wanted) if wanted else set()
            except Exception as error:  # noqa: BLE001 - PostgreSQL away: still pending
                self.log(f"CBMIR: cannot read the cluster queue: {error!r}")
                self._remote = set(wanted)
            if not local and not self._remote:
                return True
            if self.stopped:
                return False
            left = 0.5 if deadline is None else min(0.5, deadline - self.clock())
            if left <= 0:
                return False
            time.sleep(left)

    def is_pending(self, instance: str) -> bool:
        return super().is_pending(instance) or instance in self._remote

    def stop(self) -> None:
        super().stop()
        self.wake.set()

    # -- the claimer ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cbmir-claims", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def held(self) -> list[str]:
        with self._cond:
            return list(self._queued) + list(self._in_flight)

    def _take(self, instance: str, force: bool, arrival: bool, age: float = 0.0) -> None:
        """Into the local queue; only a local store (OnChange) moves the pacer's clock, and
        the time the work already waited in PostgreSQL counts for the pacer's hold."""
        with self._cond:
            last = self.last_arrival
            WorkQueue.put(self, instance, force=force, arrival=arrival)
            self.last_arrival = last
            if instance in self._since:
                self._since[instance] = self.clock() - max(0.0, float(age or 0.0))

    def claim_once(self) -> int:
        """Claim what fits in two batches. While this node is storing images, it takes only
        work that waited `hold` seconds: the others (not storing) embed its arrivals at once,
        as the one-node pacer would have kept them waiting for `hold` anyway."""
        room = 2 * self.batch_size - WorkQueue.pending(self)
        if room <= 0 or not self.can_work():
            return 0
        storing = self.clock() - self.last_arrival < BUSY_WINDOW
        rows = self.claims.claim(room, min_age=self.hold if storing else 0.0)
        for instance, _generation, force, arrival, age in rows:
            self._take(instance, force, arrival, age)
        self.claimed += len(rows)
        return len(rows)

    def _run(self) -> None:
        renewed = time.monotonic()
        while not self.stopped:
            try:
                if time.monotonic() - renewed > self.claims.lease / 3:
                    self.claims.renew(self.held())
                    renewed = time.monotonic()
                if self.claim_once():
                    continue
            except Exception as error:  # noqa: BLE001 - PostgreSQL away: try again
                self.log(f"CBMIR: claiming work failed: {error!r}")
                time.sleep(1.0)
            self.wake.wait(self.poll_seconds)
            self.wake.clear()
        try:  # a clean stop hands this node's unfinished claims to the others at once
            with self._cond:
                left = list(self._queued)
            self.claims.release(left)
        except Exception:  # noqa: BLE001 - they expire anyway
            pass
