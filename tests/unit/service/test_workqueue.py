"""The de-duplicating work queue and the worker's pacing, on an injected clock.

Why a fake clock: the pacer's logic is about time (hold an image at most `hold`
seconds while storing is busy, run at once when it pauses); asserting wall-clock
durations makes such tests fail on a busy machine. `FakeClock.sleep` advances the
same clock the queue reads, so every wait is exact and instant.
"""
import threading

from cbmir.service.workqueue import Pacer, WorkQueue


class FakeClock:
    """A monotonic clock that moves only when told to (or when the pacer sleeps)."""

    def __init__(self, start: float = 1024.0):  # dyadic steps below add up exactly
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the pacer must never busy-spin with a zero sleep"
        assert len(self.sleeps) < 1000, "the pacer keeps sleeping: it never gives its turn"
        self.sleeps.append(seconds)
        self.now += seconds


def paced(window: float, hold: float, busy_batch: int = 2):
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    return clock, queue, Pacer(queue, window=window, hold=hold, busy_batch=busy_batch,
                               sleep=clock.sleep)


# -- WorkQueue -------------------------------------------------------------------------------
def test_the_queue_holds_an_instance_once_and_reports_when_it_is_done():
    queue = WorkQueue()
    for _ in range(3):
        queue.put("a")
    queue.put("b")
    assert queue.pending() == 2
    batch = queue.get_batch(10, timeout=0)
    assert [i for i, _ in batch] == ["a", "b"] and queue.is_pending("a")
    assert not queue.wait_done(["a"], timeout=0)
    queue.done(["a", "b"])
    assert queue.wait_done(["a"], timeout=0) and queue.pending() == 0


def test_wait_done_wakes_when_another_thread_finishes_the_work():
    queue = WorkQueue()
    queue.put("a")
    queue.get_batch(1, timeout=0)
    worker = threading.Thread(target=queue.done, args=(["a"],))
    worker.start()
    assert queue.wait_done(["a"], timeout=30)  # generous: returns as soon as done() runs
    worker.join()


def test_a_forced_put_upgrades_a_queued_item_and_stop_wakes_waiters():
    queue = WorkQueue()
    queue.put("a")
    queue.put("a", force=True)
    assert queue.get_batch(1, 0) == [("a", True)]
    stopper = threading.Thread(target=queue.stop)
    stopper.start()
    assert queue.wait_done(["a"]) is False
    stopper.join()


def test_an_instance_being_processed_is_not_queued_again_unless_forced():
    queue = WorkQueue()
    queue.put("a")
    queue.get_batch(1, 0)
    queue.put("a")
    assert queue.pending() == 1 and queue.get_batch(1, 0) == []
    queue.put("a", force=True)  # a re-index must re-embed it even while in flight
    assert queue.get_batch(1, 0) == [("a", True)]


def test_just_stored_images_go_before_backlog_and_ages_follow_the_clock():
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.put("old")  # catch-up / re-index backlog
    clock.now += 5
    queue.put("new", arrival=True)
    assert queue.last_arrival == clock.now
    clock.now += 2
    assert queue.oldest_age() == 7 and queue.oldest_age(arrivals_only=True) == 2
    assert queue.get_batch(8, 0, arrivals_only=True) == [("new", False)]
    assert queue.oldest_age(arrivals_only=True) == 0
    assert queue.get_batch(8, 0) == [("old", False)]


# -- Pacer ------------------------------------------------------------------------------------
def test_backlog_alone_runs_at_once_in_full_batches():
    clock, queue, pacer = paced(window=0.25, hold=0.125)
    queue.put("a")  # catch-up / re-index work, nothing stored lately
    assert not pacer.busy() and pacer.batch_size(8) == 8
    assert pacer.wait_turn() is False and clock.sleeps == []


def test_while_images_arrive_a_stored_image_waits_exactly_hold_seconds_in_small_batches():
    clock, queue, pacer = paced(window=0.25, hold=0.125)
    queue.put("b", arrival=True)
    assert pacer.busy() and pacer.batch_size(8) == 2
    stored = clock.now
    clock.now += 1 / 1024  # storing stays busy: another upload a millisecond later
    queue.last_arrival = clock.now
    assert pacer.wait_turn() is True  # just-stored images only
    assert clock.now - stored == 0.125  # held back until the image was overdue, no longer
    assert pacer.batch_size(8) == 2  # storing is still busy (within the 0.25 s window)


def test_when_arrivals_stop_the_worker_runs_without_a_hold():
    clock, queue, pacer = paced(window=0.25, hold=1.5)
    queue.put("c", arrival=True)
    clock.now += 0.5  # the last arrival is older than the window
    assert not pacer.busy() and pacer.wait_turn() is False and clock.sleeps == []
    assert pacer.batch_size(8) == 8


def test_a_burst_that_ends_releases_the_worker_after_the_window_not_the_hold():
    clock, queue, pacer = paced(window=0.25, hold=1.5)
    queue.put("d", arrival=True)
    started = clock.now
    assert pacer.wait_turn() is False  # the burst ended: full batches, no hold
    assert clock.now - started == 0.25 and not pacer.busy()


def test_while_images_arrive_backlog_waits_until_storing_pauses():
    clock, queue, pacer = paced(window=0.25, hold=0.0625)
    queue.put("old-1")
    queue.put("old-2")
    queue.put("new", arrival=True)
    clock.now += 1 / 1024  # the worker wakes a moment after the image was queued
    assert pacer.wait_turn() is True  # the just-stored image became overdue
    assert queue.get_batch(8, 0, arrivals_only=True) == [("new", False)]
    queue.done(["new"])
    queue.put("newer", arrival=True)
    stored = clock.now
    clock.now += 1 / 1024
    assert pacer.wait_turn() is True and clock.now - stored == 0.0625
    assert queue.get_batch(8, 0, arrivals_only=True) == [("newer", False)]
    last = queue.last_arrival
    assert pacer.wait_turn() is False  # backlog only: it waits until storing pauses
    assert clock.now - last >= 0.25 and not pacer.busy()
    queue.put("x", arrival=False)
    assert [i for i, _ in queue.get_batch(8, 0)] == ["old-1", "old-2", "x"]


def test_an_index_delay_of_zero_does_not_spin_on_backlog():
    clock, queue, pacer = paced(window=0.25, hold=0.0)
    queue.put("backlog")
    queue.last_arrival = clock.now  # storing busy, but nothing just stored is queued
    assert pacer.wait_turn() is False
    assert clock.sleeps == [0.25]  # slept until storing paused, did not spin


def test_a_stopped_queue_ends_the_wait():
    clock, queue, pacer = paced(window=0.25, hold=10)
    queue.put("e", arrival=True)
    queue.stop()
    assert pacer.wait_turn() is False and clock.sleeps == []


def test_an_image_queued_by_a_query_before_its_arrival_moves_to_the_arrival_lane():
    """GET /cbmir/similar right after an upload can queue it (backlog) before NEW_INSTANCE;
    the arrival must still put it in the fast lane (backlog waits while uploads go on)."""
    queue = WorkQueue()
    queue.put("old-backlog")
    queue.put("new")                # by the 409 answer
    queue.put("new", arrival=True)  # then NEW_INSTANCE
    assert queue.get_batch(5, timeout=0, arrivals_only=True) == [("new", False)]
    assert queue.oldest_age(arrivals_only=True) == 0.0
    assert queue.get_batch(5, timeout=0) == [("old-backlog", False)]
    assert queue.pending() == 2 and not queue.wait_for_work(timeout=0)
