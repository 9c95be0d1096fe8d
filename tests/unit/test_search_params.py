"""Query-argument parsing and the dedupe queue behind ingest and catch-up."""
import threading

import pytest

from cbmir.search import ApiError, parse_params
from cbmir.workqueue import WorkQueue


def test_defaults_follow_the_api_contract():
    params = parse_params({})
    assert (params.k, params.exclude_same_patient, params.group_by) == (10, True, "study")


@pytest.mark.parametrize("args", [{"k": "abc"}, {"k": "0"}, {"k": "100000"},
                                  {"group_by": "series"}, {"exclude_same_patient": "maybe"},
                                  {"frame": "-1"}])
def test_bad_arguments_are_a_400_naming_the_argument(args):
    with pytest.raises(ApiError) as caught:
        parse_params(args)
    assert caught.value.status == 400 and list(args)[0] in caught.value.message


def test_flags_and_filters_are_read():
    params = parse_params({"k": "3", "exclude_same_patient": "false", "group_by": "INSTANCE",
                           "label": "glioma", "modality": "MR"})
    assert (params.k, params.exclude_same_patient, params.group_by) == (3, False, "instance")
    assert (params.label, params.modality) == ("glioma", "MR")


def test_the_queue_holds_an_instance_once_and_reports_when_it_is_done():
    queue = WorkQueue()
    for _ in range(3):
        queue.put("a")
    queue.put("b")
    assert queue.pending() == 2
    batch = queue.get_batch(10, timeout=0.1)
    assert [i for i, _ in batch] == ["a", "b"] and queue.is_pending("a")
    assert not queue.wait_done(["a"], timeout=0.1)
    threading.Timer(0.1, queue.done, args=(["a", "b"],)).start()
    assert queue.wait_done(["a"], timeout=5) and queue.pending() == 0


def test_a_forced_put_upgrades_a_queued_item_and_stop_wakes_waiters():
    queue = WorkQueue()
    queue.put("a")
    queue.put("a", force=True)
    assert queue.get_batch(1, 0.1) == [("a", True)]
    threading.Timer(0.1, queue.stop).start()
    assert queue.wait_done(["a"]) is False


def test_an_instance_being_processed_is_not_queued_again_unless_forced():
    queue = WorkQueue()
    queue.put("a")
    queue.get_batch(1, 0.1)
    queue.put("a")
    assert queue.pending() == 1 and queue.get_batch(1, 0.05) == []
    queue.put("a", force=True)  # a re-index must re-embed it even while in flight
    assert queue.get_batch(1, 0.1) == [("a", True)]


def test_the_pacer_holds_back_only_while_images_arrive_and_only_for_hold_seconds():
    import time

    from cbmir.workqueue import Pacer
    queue = WorkQueue()
    pacer = Pacer(queue, window=0.3, hold=0.1, busy_batch=2)
    queue.put("a")  # catch-up / re-index work: full batches, no waiting
    assert not pacer.busy() and pacer.batch_size(8) == 8
    started = time.monotonic()
    pacer.wait_turn()
    assert time.monotonic() - started < 0.05
    queue.get_batch(8, 0)
    queue.put("b", arrival=True)  # storing is busy: small batches, after a hold
    assert pacer.busy() and pacer.batch_size(8) == 2
    started = time.monotonic()
    pacer.wait_turn()
    assert queue.oldest_age() >= 0.1 and time.monotonic() - started >= 0.09
    assert time.monotonic() - started < 0.25  # bounded by hold, although storing stays busy
    queue.get_batch(8, 0)
    queue.put("c", arrival=True)
    time.sleep(0.35)  # arrivals stopped: no hold
    started = time.monotonic()
    pacer.wait_turn()
    assert not pacer.busy() and time.monotonic() - started < 0.05


def test_while_images_arrive_backlog_waits_and_just_stored_images_go_first():
    import time

    from cbmir.workqueue import Pacer
    queue = WorkQueue()
    pacer = Pacer(queue, window=0.3, hold=0.05, busy_batch=2)
    queue.put("old-1")  # catch-up / re-index backlog
    queue.put("old-2")
    queue.put("new", arrival=True)  # storing is busy from here on
    assert pacer.wait_turn() is True  # the just-stored image became overdue
    assert queue.get_batch(8, 0, arrivals_only=True) == [("new", False)]
    queue.done(["new"])
    queue.put("newer", arrival=True)
    started = time.monotonic()
    assert pacer.wait_turn() is True and time.monotonic() - started >= 0.04
    assert queue.get_batch(8, 0, arrivals_only=True) == [("newer", False)]
    started = time.monotonic()
    assert pacer.wait_turn() is False  # backlog only: it waits until storing pauses
    assert time.monotonic() - started >= 0.2 and not pacer.busy()
    queue.put("x", arrival=False)
    assert [i for i, _ in queue.get_batch(8, 0)] == ["old-1", "old-2", "x"]


def test_an_index_delay_of_zero_does_not_spin_on_backlog():
    import time

    from cbmir.workqueue import Pacer
    queue = WorkQueue()
    pacer = Pacer(queue, window=0.2, hold=0.0)
    queue.put("backlog")
    queue.last_arrival = time.monotonic()  # storing busy, but nothing just stored is queued
    started = time.monotonic()
    assert pacer.wait_turn() is False
    assert time.monotonic() - started >= 0.15  # slept until storing paused, did not return at once
