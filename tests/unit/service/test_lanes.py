"""cbmir.service.lanes: how a batch is split, how many lanes, and that lanes really run in
parallel, at a lower priority, and all finish before an error is raised."""
from __future__ import annotations

import os
import threading
import time

import pytest

from cbmir.service.lanes import WORKER_NICE, Lanes, lane_count, split


def test_split_keeps_order_in_near_equal_chunks_and_never_an_empty_one():
    assert split(list(range(7)), 2) == [[0, 1, 2, 3], [4, 5, 6]]
    assert split(list(range(6)), 3) == [[0, 1], [2, 3], [4, 5]]
    assert split([1, 2], 4) == [[1], [2]]
    assert split([], 2) == []
    assert split(list(range(5)), 1) == [[0, 1, 2, 3, 4]]


def test_lane_count_follows_index_threads_then_threads_then_the_cores_and_is_one_on_a_gpu():
    assert lane_count(3, 8, on_gpu=False, cpu_count=16) == 3
    assert lane_count(0, 4, on_gpu=False, cpu_count=16) == 4
    assert lane_count(0, 0, on_gpu=False, cpu_count=16) == 16
    assert lane_count(0, 0, on_gpu=True, cpu_count=16) == 1
    assert lane_count(6, 0, on_gpu=True, cpu_count=16) == 1


def test_chunks_run_at_the_same_time_and_results_keep_their_order():
    lanes = Lanes(2)
    meeting = threading.Barrier(2, timeout=5)  # broken unless both chunks run at once

    def work(chunk):
        meeting.wait()
        return [item * 10 for item in chunk]

    try:
        assert lanes.map(work, [[1, 2], [3]]) == [[10, 20], [30]]
    finally:
        lanes.shutdown()


def test_lane_threads_run_at_the_worker_priority_and_a_single_chunk_in_the_caller():
    lanes = Lanes(2)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def niceness(_chunk):
        return (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                threading.current_thread().name)

    try:
        (first, first_name), (second, _) = lanes.map(niceness, [[1], [2]])
        assert first == second == max(own, WORKER_NICE)
        assert first_name.startswith("cbmir-lane")
        ((alone, name),) = lanes.map(niceness, [[1]])
        assert name == threading.current_thread().name and alone == own
    finally:
        lanes.shutdown()


def test_an_error_is_raised_only_after_every_chunk_finished():
    lanes = Lanes(2)
    finished = threading.Event()

    def work(chunk):
        if chunk == ["bad"]:
            raise ValueError("broken frame")
        time.sleep(0.3)
        finished.set()
        return chunk

    try:
        with pytest.raises(ValueError, match="broken frame"):
            lanes.map(work, [["bad"], ["slow"]])
        assert finished.is_set()
    finally:
        lanes.shutdown()
