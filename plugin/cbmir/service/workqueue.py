"""A de-duplicating work queue of Orthanc instance IDs, and the worker's pacing.

Why not queue.Queue: the same instance arrives from NEW_INSTANCE, from the
/changes catch-up and from a re-index; it must be processed once, and the
catch-up must be able to wait until *its* instances are done (queued or in
flight) before it moves its persisted checkpoint. The queue also remembers when
the last image *arrived* (NEW_INSTANCE), so the worker can yield while storing
is busy (see `Pacer`), and keeps two lanes: images just stored, which are
promised to be searchable within seconds, and backlog (catch-up, re-index),
which is not and can wait for storing to pause.
"""
from __future__ import annotations

import collections
import threading
import time


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        """`clock`: seconds, monotonic; injected by unit tests so timing is deterministic."""
        self.clock = clock
        self._cond = threading.Condition()
        self._lanes = {True: collections.deque(), False: collections.deque()}  # arrival? -> order
        self._queued: dict[str, bool] = {}   # instance -> force
        self._since: dict[str, float] = {}    # instance -> monotonic time it was queued
        self._in_flight: set[str] = set()
        self._again: dict[str, bool] = {}  # put while in flight -> arrival? (queued at done())
        self.stopped = False
        self.last_arrival = float("-inf")  # monotonic time of the last stored image

    def put(self, instance: str, force: bool = False, arrival: bool = False) -> None:
        """`arrival`: the instance was just stored (not catch-up or re-index work)."""
        with self._cond:
            if arrival:
                self.last_arrival = self.clock()
            if not force and instance in self._in_flight:
                # Being processed now; waiters see it pending until done(), which queues it
                # once more: it may have been overwritten (deleted and stored again) meanwhile.
                self._again[instance] = self._again.get(instance, False) or arrival
                return
            if instance in self._queued:
                self._queued[instance] = self._queued[instance] or force
                if arrival:  # queued as backlog first (a 409 query came before NEW_INSTANCE):
                    self._lanes[True].append(instance)  # promote it; get_batch skips the stale one
                    self._cond.notify_all()
                return
            self._queued[instance] = force
            self._since[instance] = self.clock()
            self._lanes[arrival].append(instance)
            self._cond.notify_all()

    def _any(self) -> bool:
        self._drop_stale_heads()
        return bool(self._lanes[True] or self._lanes[False])

    def _drop_stale_heads(self) -> None:
        """An instance promoted to the arrival lane leaves a stale entry in the backlog (or
        the other way round); drop such entries at the heads (callers hold the lock)."""
        for order in self._lanes.values():
            while order and order[0] not in self._queued:
                order.popleft()

    def get_batch(self, size: int, timeout: float,
                  arrivals_only: bool = False) -> list[tuple[str, bool]]:
        """Up to `size` (instance, force) items, just-stored images first, waiting at most
        `timeout` for the first; `arrivals_only` leaves the backlog queued."""
        deadline = self.clock() + timeout
        with self._cond:
            while not self._any() and not self.stopped:
                left = deadline - self.clock()
                if left <= 0:
                    return []
                self._cond.wait(left)
            batch = []
            for lane in (True, False) if not arrivals_only else (True,):
                order = self._lanes[lane]
                while order and len(batch) < size:
                    instance = order.popleft()
                    if instance not in self._queued:
                        continue  # taken already through the other lane
                    batch.append((instance, self._queued.pop(instance)))
                    self._since.pop(instance, None)
                    self._in_flight.add(instance)
            return batch

    def done(self, instances) -> None:
        with self._cond:
            self._in_flight.difference_update(instances)
            for instance in instances:
                if instance in self._again:
                    self._add(instance, False, self._again.pop(instance))
            self._cond.notify_all()

    def requeue(self, items) -> None:
        """Put (instance, force) items taken by get_batch back, atomically, so they never
        look done (the /changes checkpoint and re-index wait for them)."""
        with self._cond:
            for instance, force in items:
                self._in_flight.discard(instance)
                self._again.pop(instance, None)
                if instance in self._queued:
                    self._queued[instance] = self._queued[instance] or force
                else:
                    self._add(instance, force, False)
            self._cond.notify_all()

    def _add(self, instance: str, force: bool, arrival: bool) -> None:
        if instance in self._queued:
            return
        self._queued[instance] = force
        self._since[instance] = time.monotonic()
        self._lanes[arrival].append(instance)

    def wait_for_work(self, timeout: float) -> bool:
        """Wait (without taking anything) until an item is queued; False on timeout/stop."""
        deadline = self.clock() + timeout
        with self._cond:
            while not self._any() and not self.stopped:
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._any() and not self.stopped

    def oldest_age(self, arrivals_only: bool = False) -> float:
        """Seconds since the oldest queued item (of the arrival lane) was queued; 0 when none."""
        with self._cond:
            self._drop_stale_heads()
            heads = [lane[0] for arrival, lane in self._lanes.items()
                     if lane and (arrival or not arrivals_only)]
            if not heads:
                return 0.0
            now = self.clock()
            return max(now - self._since.get(head, now) for head in heads)

    def is_pending(self, instance: str) -> bool:
        with self._cond:
            return instance in self._queued or instance in self._in_flight

    def pending(self) -> int:
        with self._cond:
            return len(self._queued) + len(self._in_flight)

    def wait_done(self, instances, timeout: float | None = None) -> bool:
        """Block until none of `instances` is queued or in flight; False on timeout/stop."""
        deadline = None if timeout is None else self.clock() + timeout
        wanted = set(instances)
        with self._cond:
            while True:
                if not (wanted & self._in_flight) and not any(i in self._queued for i in wanted):
                    return True
                if self.stopped:
                    return False
                left = 0.5 if deadline is None else min(0.5, deadline - self.clock())
                if left <= 0:
                    return False
                self._cond.wait(left)

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()


class Pacer:
    """Makes the ingest worker stay off the CPU while images arrive, for a bounded time.

    Why: the worker embeds inside Orthanc's process; on a small server any
    computing it does while an upload runs makes that upload slower, even at a
    low thread priority (bench/README.md: a worker that computed a quarter of
    the time during uploads raised REST p95 by 15-25 %). So while images
    arrived within `window` seconds the worker holds back until the oldest
    just-stored image has waited `hold` seconds, and then takes only a small
    batch of just-stored images, so each is searchable about `hold` seconds
    after it was stored even while storing never pauses; backlog (catch-up,
    re-index) waits until storing pauses. When arrivals stop it runs full
    batches at full speed. `hold` is CBMIR.IndexDelaySeconds: a long import
    that outlasts it shares the CPU with indexing; a larger value keeps them
    apart for longer, 0 indexes at once.
    """

    def __init__(self, queue: WorkQueue, hold: float, window: float = 0.15,
                 busy_batch: int = 2, sleep=time.sleep):
        """`hold`: CBMIR.IndexDelaySeconds (its default is in Config). `sleep`: injected by
        unit tests together with the queue's clock."""
        self.queue = queue
        self.sleep = sleep
        self.window, self.hold, self.busy_batch = window, hold, busy_batch

    def busy(self) -> bool:
        return self.queue.clock() - self.queue.last_arrival < self.window

    def batch_size(self, full: int) -> int:
        return min(full, self.busy_batch) if self.busy() else full

    def wait_turn(self) -> bool:
        """Before a batch: while storing is busy, wait until a just-stored image is overdue.
        Returns True when only just-stored images may be taken (storing is still busy)."""
        while self.busy() and not self.queue.stopped:
            age = self.queue.oldest_age(arrivals_only=True)  # 0: none queued
            if age > 0 and age >= self.hold:
                return True
            # no just-stored image yet (backlog only): check again once storing may have paused
            self.sleep(min(self.hold - age, self.window) if age > 0 else self.window)
        return False
