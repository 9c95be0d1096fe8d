"""Cluster mode (`CBMIR.Store: "postgresql"`): several Orthanc nodes, one index.

Why a subclass and a few hooks rather than changes all over the engine: the one-node
SQLite mode must behave exactly as before, and the engine, worker and follower are
shared. What differs lives here and in its parts:
- the store is PostgreSQL (cbmir.vectors.pg_store), shared by every node;
- the queue is claimed in PostgreSQL (cbmir.service.claims): each instance is embedded
  once cluster-wide, whichever node heard of it, and a dead node's claims expire;
- each node's answering index is a replica fed from the shared table
  (cbmir.service.replica), which also follows the cluster's generation state;
- the /changes follower reads Orthanc's shared log from a shared checkpoint, a window
  behind it (changes may commit out of Seq order), and a reconciliation against
  Orthanc's shared index runs at start and every `CBMIR.ReconcileSeconds` (deletes whose
  node died before recording them; anything the log missed).
"""
from __future__ import annotations

import json
import time

from cbmir.service.claims import Claims, ClusterQueue
from cbmir.service.engine import Engine
from cbmir.service.follower import CHECKPOINT, PAGE, ChangeFollower
from cbmir.service.notify import Listener
from cbmir.service.replica import Replica

NODES_SWITCH_SECONDS = 120.0  # longest wait for the other nodes before old rows are dropped
REPLAY_WINDOW = 1000  # /changes re-read behind the checkpoint (Seq commits out of order)


def make_engine(config, log=print, gateway=None) -> Engine:
    """The engine the configuration asks for (the store factory)."""
    if config.store != "postgresql":
        return Engine(config, log=log)
    return ClusterEngine(config, log=log, gateway=gateway)


def make_follower(gateway, engine) -> ChangeFollower:
    cls = ClusterFollower if isinstance(engine, ClusterEngine) else ChangeFollower
    return cls(gateway, engine)


def start(engine) -> None:
    """After ORTHANC_STARTED: the claimer and the replica (nothing in SQLite mode)."""
    if isinstance(engine, ClusterEngine):
        engine.queue.start()
        engine.replica.start()
        engine.listener.start()


def stop(engine) -> None:
    if isinstance(engine, ClusterEngine):
        engine.queue.stop()
        engine.queue.join(5)
        engine.replica.stop(5)
        engine.listener.stop(3)


class ClusterEngine(Engine):
    def __init__(self, config, log=print, gateway=None):
        """`gateway`: cbmir.service.gateway.Gateway (Orthanc), None in unit tests."""
        self.gateway = gateway
        list_instances = gateway.list_instances if gateway is not None else None
        super().__init__(config, log=log)
        self.replica = Replica(self, self.store, config.replica_poll_seconds, list_instances)
        self.replica.applied = self._seq_at_open  # read before the index was loaded
        self.store.on_uncached_rows = self.replica.catch_up
        self.queue.has_peers = lambda: self.replica.peers > 0  # alone: work as one node does
        self.store.before_drop = self.wait_nodes_switched
        from cbmir.vectors.pg_schema import conninfo
        self.listener = Listener(conninfo(config.postgresql), {
            "vectors": self.replica.wake, "queue": self.queue.wake.set}, log=self.log.warning)
        self.reconciliations: dict = {}

    def _open_store(self):
        from cbmir.vectors.pg_store import PgStore
        store = PgStore(self.config.postgresql, node=self.config.node_name)
        self._seq_at_open = store.last_seq()
        return store

    def _new_queue(self):
        c = self.config
        self.claims = Claims(self.store, c.node_name, c.claim_seconds)
        queue = ClusterQueue(self.claims, lambda: self.write_index().generation,
                             batch_size=c.batch_size, poll_seconds=c.replica_poll_seconds,
                             log=self.log.warning, hold=c.index_delay_seconds)
        queue.can_work = lambda: self.embedder is not None  # else other nodes embed
        return queue

    def start_reindex(self, list_instances, resume_generation: int | None = None) -> bool:
        """Once for the cluster: the re-index target is claimed in PostgreSQL; the other
        nodes' replicas see it and join (their workers claim its queue rows)."""
        if resume_generation is None:
            if self.target is not None:
                return False
            active = self.active.generation
            if not self.store.begin_reindex(active, active + 1):
                return False
            resume_generation = active + 1

        def listed():  # the whole list in a few statements, not one transaction per instance
            instances = list_instances()
            self.queue.put_bulk(instances, force=True)
            return instances
        return super().start_reindex(listed, resume_generation=resume_generation)

    def wait_nodes_switched(self, generation: int, timeout: float = NODES_SWITCH_SECONDS) -> bool:
        """Before the rows of the old generation go: wait until every live node (a heartbeat
        within the last 10 s) answers from `generation`, so none searches rows that vanish
        (a node still rebuilding its Annoy tier for the new one). False after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.store.connection() as conn:
                behind = conn.execute(
                    "SELECT count(*) FROM cbmir_index.nodes WHERE seen > now() - interval '10 s'"
                    " AND name <> %s AND COALESCE((replica->>'generation')::int, 0) < %s",
                    (self.config.node_name, generation)).fetchone()[0]
            if not behind:
                return True
            time.sleep(0.5)
        self.log.warning(f"CBMIR: some nodes still answer from an older generation after "
                         f"{timeout:g} s; dropping its rows anyway")
        return False

    def reconcile_cluster(self, list_instances) -> dict:
        """Queue what the shared index has and the store lacks; remove what Orthanc no
        longer has (checked one by one: it may have been stored after the listing)."""
        existing = list_instances()
        in_orthanc = set(existing)
        known = self.store.known_instances(self.active.generation)
        missing = [i for i in existing if i not in known]
        queued = self.queue.put_many(missing) if missing else 0
        gone = []
        for instance in self.store.all_instances() - in_orthanc:
            if not self.gateway.instance_exists(instance):
                gone.append(instance)
        for instance in gone:
            self.delete("instance", instance)
        if queued or gone:
            self.log(f"CBMIR: reconciliation: {queued} instance(s) missing from the index "
                     f"queued, {len(gone)} deleted from Orthanc removed")
        self.reconciliations = {"orthanc_instances": len(in_orthanc), "queued": queued,
                                "removed": len(gone), "pending": self.cluster_pending()}
        return dict(self.reconciliations)

    def cluster_pending(self) -> int:
        return sum(e["queued"] + e["claimed"] for e in self.claims.summary().values())

    def status(self) -> dict:
        import psycopg
        try:
            return self._status()
        except psycopg.OperationalError as error:
            from cbmir.vectors.search import ApiError
            raise ApiError(503, f"PostgreSQL unavailable: {error}", replica=self.replica.describe(),
                           node=self.config.node_name) from None

    def _status(self) -> dict:
        result = super().status()
        queue = self.claims.summary()
        with self.store.connection() as conn:
            generations = conn.execute(
                "SELECT generation, COUNT(DISTINCT instance), COUNT(*) FROM cbmir_index.vectors "
                "GROUP BY generation ORDER BY generation").fetchall()
            nodes = conn.execute(
                "SELECT name, EXTRACT(EPOCH FROM now() - seen), replica FROM cbmir_index.nodes "
                "ORDER BY name").fetchall()
        last_seq = self.store.last_seq()
        replica = dict(self.replica.describe(), seq_last=last_seq,
                       seq_lag=max(0, last_seq - self.replica.applied))
        # this node's local queue holds claimed rows only: they are in the cluster's count
        result["pending"] = sum(e["queued"] + e["claimed"] for e in queue.values())
        result["pending_here"] = self.queue.pending()
        result["cluster"] = {
            "store": "postgresql", "node": self.config.node_name,
            "active_generation": self.store.active_generation,
            "generations": {str(g): {"indexed": n, "frames": f, **queue.get(str(g), {})}
                            for g, n, f in generations},
            "queue": queue, "claimed_here": self.queue.claimed,
            "nodes": [{"name": name, "seen_seconds_ago": round(float(age), 1),
                       "replica": replica_state if isinstance(replica_state, dict)
                       else json.loads(replica_state or "null")}
                      for name, age, replica_state in nodes]}
        result["replica"] = replica
        return result


class ClusterFollower(ChangeFollower):
    """Orthanc's shared /changes, from the cluster's checkpoint; every node reads it (the
    enqueue is idempotent), so a node that restarts finds the others' progress."""

    def _run(self) -> None:
        queue, engine = self.engine.queue, self.engine
        last_reconcile = None
        while not queue.stopped:
            try:
                now = time.monotonic()
                if last_reconcile is None or now - last_reconcile > engine.config.reconcile_seconds:
                    last_reconcile = now
                    engine.reconcile_cluster(self.gateway.list_instances)
                self.poll()
            except Exception as error:  # Orthanc or PostgreSQL busy: try again later
                engine.log.warning(f"CBMIR: change follower error: {error!r}")
            self.wake.wait(engine.config.catch_up_seconds)
            self.wake.clear()

    def poll(self) -> None:
        store, queue = self.engine.store, self.engine.queue
        checkpoint = int(store.get_state(CHECKPOINT, "0"))
        since = max(0, checkpoint - REPLAY_WINDOW)
        while not queue.stopped:
            answer = self.gateway.changes(since, PAGE)
            stored = [c for c in answer.get("Changes", []) if c["ChangeType"] == "NewInstance"]
            # Seen for the first time (past the checkpoint): queued even when indexed, so the
            # worker can tell an overwrite it never saw by the file's fingerprint, as in
            # one-node mode; the window re-read behind it only fills gaps (fact 8).
            first = [c["ID"] for c in stored if int(c.get("Seq", 0)) > checkpoint]
            again = [c["ID"] for c in stored if int(c.get("Seq", 0)) <= checkpoint]
            if first:
                queue.put_many(first, only_new=False)
            if again:
                queue.put_many(again)
            last = int(answer.get("Last", since))
            if last > since:
                since = last
                store.advance_state(CHECKPOINT, last)
            if answer.get("Done", True) or not answer.get("Changes"):
                return

