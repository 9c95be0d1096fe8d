"""Durability: follow Orthanc's /changes log from a persisted checkpoint.

Why: OnStoredInstance is lost when Orthanc is killed before the worker finishes,
or when instances arrive while the plugin is off. The /changes log is Orthanc's
own durable record, so replaying it from the last checkpoint (stored in our
SQLite) catches up everything. The checkpoint only moves after every instance of
a page has been processed (or recorded as rejected), so a kill -9 at any moment
replays, and the store's uniqueness makes the replay idempotent.

Deletions are not in Orthanc's /changes log (deleting a resource also removes
its changes), so they arrive through the OnChange DELETED callback
(`on_deleted`), and `cbmir.service.reconcile` drops, at every start, whatever was deleted
while the plugin was off or killed, and queues whatever the index lacks.
"""
from __future__ import annotations

import threading

from cbmir.service.reconcile import reconcile

CHECKPOINT = "changes_checkpoint"
PAGE = 200


class ChangeFollower:
    """Daemon thread: reconcile once, then `poll` every CatchUpSeconds (Orthanc via `gateway`)."""

    def __init__(self, gateway, engine):
        self.gateway = gateway
        self.engine = engine
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cbmir-changes", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10) -> None:
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def on_deleted(self, level: str, resource: str) -> None:
        removed = self.engine.delete(level, resource)
        if removed:
            self.engine.log.info(f"CBMIR: {level} {resource} deleted, {removed} vector(s) removed")

    def _run(self) -> None:
        queue = self.engine.queue
        try:  # both ways: the missing are queued, the deleted removed
            reconcile(self.engine, self.gateway.list_instances)
        except Exception as error:
            self.engine.log.error(f"CBMIR: start-up reconciliation failed: {error!r}")
        while not queue.stopped:
            try:
                self.poll()
            except Exception as error:  # Orthanc busy or shutting down: try again later
                self.engine.log.warning(f"CBMIR: change follower error: {error!r}")
            self.wake.wait(self.engine.config.catch_up_seconds)
            self.wake.clear()

    def poll(self) -> None:
        """Replay /changes since the checkpoint until Orthanc says Done."""
        store, queue = self.engine.store, self.engine.queue
        since = int(store.get_state(CHECKPOINT, "0"))
        while not queue.stopped:
            answer = self.gateway.changes(since, PAGE)
            page: list[str] = []
            for change in answer.get("Changes", []):
                kind, level, resource = change["ChangeType"], change["ResourceType"], change["ID"]
                if kind == "NewInstance":
                    queue.put(resource)
                    page.append(resource)
                elif kind == "Deleted" and level.lower() in ("instance", "series", "study", "patient"):
                    if not self._wait(page):
                        return
                    self.on_deleted(level, resource)
            if not self._wait(page):
                return
            last = int(answer.get("Last", since))
            if last > since:
                since = last
                store.set_state(CHECKPOINT, since)
            if answer.get("Done", True) or not answer.get("Changes"):
                return

    def _wait(self, instances: list[str]) -> bool:
        queue = self.engine.queue
        while not queue.stopped:
            if queue.wait_done(instances, timeout=1.0):
                return True
        return False
