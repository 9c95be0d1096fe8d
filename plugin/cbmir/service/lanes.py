"""Parallel lanes for the ingest worker: each lane reads, decodes and embeds its share of a
batch on one core, with onnxruntime computing in the lane's own thread.

Why lanes and not onnxruntime's intra-op threads: with intra-op threads every operator
waits for the slowest thread, so one core taken by Orthanc halves the whole session
(bench/README.md: 132 vs 244 images/s on a busy machine), and decoding (pydicom, ~2 ms a
slice) cannot overlap with embedding. Independent single-thread lanes keep going at the
speed of the core each one gets, and one lane decodes while another embeds (onnxruntime
releases the GIL). A single-thread session may be run by several threads at once.

Why each lane lowers its own priority: onnxruntime with one intra-op thread computes in
the calling thread, so the lane's niceness is what Orthanc's threads compete with.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

WORKER_NICE = 10
# Frames above this many pixels are decoded by one lane at a time, so the memory a huge
# image needs is what one lane needs (bench/memory_ingest.py); MR slices are far below it.
LARGE_FRAME_PIXELS = 2048 * 2048


def lower_priority(nice: int = WORKER_NICE) -> None:
    """Lower this thread's CPU priority (Linux niceness is per thread).

    Why: on a small server the worker's decode/embed competes with Orthanc's own
    threads for the same cores; storing an image must win. Best effort only.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


def lane_count(index_threads: int, threads: int, on_gpu: bool,
               cpu_count: int | None = None) -> int:
    """CBMIR.IndexThreads, else CBMIR.Threads, else one lane per core; one on a GPU, where
    a single session with whole batches keeps the device busy."""
    if on_gpu:
        return 1
    return max(1, index_threads or threads or cpu_count or os.cpu_count() or 1)


def split(items: Sequence, count: int) -> list[list]:
    """`items` in at most `count` contiguous chunks of near-equal length, none empty."""
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return [chunk for chunk in chunks if chunk]


class Lanes:
    """A fixed pool of low-priority lane threads; `map` runs one call per chunk."""

    def __init__(self, count: int):
        self.count = max(1, int(count))
        self._pool = (ThreadPoolExecutor(self.count, thread_name_prefix="cbmir-lane",
                                         initializer=lower_priority)
                      if self.count > 1 else None)

    def map(self, work: Callable[[list], list], chunks: list[list]) -> list:
        """[work(chunk) for chunk in chunks], the chunks in parallel. A single chunk runs in
        the calling thread. Every chunk finishes before an error is raised, so no lane is
        still busy with a batch the worker has already requeued or recorded."""
        if self._pool is None or len(chunks) <= 1:
            return [work(chunk) for chunk in chunks]
        futures = [self._pool.submit(work, chunk) for chunk in chunks]
        wait(futures)
        return [future.result() for future in futures]

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
