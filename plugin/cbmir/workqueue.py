"""A de-duplicating work queue of Orthanc instance IDs.

Why not queue.Queue: the same instance arrives from OnStoredInstance, from the
/changes catch-up and from a re-index; it must be processed once, and the
catch-up must be able to wait until *its* instances are done (queued or in
flight) before it moves its persisted checkpoint.
"""
from __future__ import annotations

import collections
import threading
import time


class WorkQueue:
    def __init__(self):
        self._cond = threading.Condition()
        self._order: collections.deque[str] = collections.deque()
        self._queued: dict[str, bool] = {}   # instance -> force
        self._in_flight: set[str] = set()
        self.stopped = False

    def put(self, instance: str, force: bool = False) -> None:
        with self._cond:
            if not force and instance in self._in_flight:
                return  # being processed now; waiters see it pending until done()
            if instance in self._queued:
                self._queued[instance] = self._queued[instance] or force
                return
            self._queued[instance] = force
            self._order.append(instance)
            self._cond.notify_all()

    def get_batch(self, size: int, timeout: float) -> list[tuple[str, bool]]:
        """Up to `size` (instance, force) items, waiting at most `timeout` for the first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._order and not self.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            batch = []
            while self._order and len(batch) < size:
                instance = self._order.popleft()
                batch.append((instance, self._queued.pop(instance)))
                self._in_flight.add(instance)
            return batch

    def done(self, instances) -> None:
        with self._cond:
            self._in_flight.difference_update(instances)
            self._cond.notify_all()

    def is_pending(self, instance: str) -> bool:
        with self._cond:
            return instance in self._queued or instance in self._in_flight

    def pending(self) -> int:
        with self._cond:
            return len(self._queued) + len(self._in_flight)

    def wait_done(self, instances, timeout: float | None = None) -> bool:
        """Block until none of `instances` is queued or in flight; False on timeout/stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wanted = set(instances)
        with self._cond:
            while True:
                if not (wanted & self._in_flight) and not any(i in self._queued for i in wanted):
                    return True
                if self.stopped:
                    return False
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._cond.wait(left)

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()
