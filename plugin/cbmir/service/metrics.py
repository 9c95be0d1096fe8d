"""CBMIR figures in Orthanc's own metrics (`GET /tools/metrics-prometheus`).

Why there: admins already scrape Orthanc's Prometheus endpoint; the plugin SDK's
`SetMetricsValue` adds our gauges beside `orthanc_count_instances`. Counts and
sizes are read on a cheap periodic tick (a daemon thread, one SQLite count per
tick, every `CatchUpSeconds`), latencies are measured where they happen
(`Latencies.record`) and published as the mean of the last tick's window.

Orthanc keeps metric values as float32 (exact up to 16,777,216) and ignores
values set while the plugin loads: the tick starts on ORTHANC_STARTED.
"""
from __future__ import annotations

import threading
import time

# name -> help text (README table); every name starts with cbmir_
METRICS = {
    "cbmir_indexed": "instances with vectors in the answering generation",
    "cbmir_indexed_frames": "vectors (frames) in the answering generation",
    "cbmir_pending": "instances queued or being indexed",
    "cbmir_failed": "instances that could not be indexed (see /cbmir/status recent_failures)",
    "cbmir_skipped": "instances not for this index (other modality, no pixels)",
    "cbmir_index_size": "vectors searchable in the answering index",
    "cbmir_index_fresh": "vectors in the exact fresh tier, not yet in the Annoy index",
    "cbmir_queue_age_seconds": "age of the oldest queued instance (0 when none)",
    "cbmir_model_available": "1 when the model is loaded, else 0 (queries answer 503)",
    "cbmir_embed_latency_ms": "mean embedding time per image over the last period with work",
    "cbmir_query_latency_ms": "mean /cbmir/similar and /cbmir/query time over the last period",
    "cbmir_embedded_images_total": "images embedded since Orthanc started",
    "cbmir_queries_total": "similar/query requests answered since Orthanc started",
}


class Latencies:
    """Thread-safe running sums of durations per kind ("embed", "query")."""

    def __init__(self):
        self._lock = threading.Lock()
        self._window: dict[str, list[float]] = {}  # kind -> [seconds, count] since last take
        self.totals: dict[str, int] = {}
        self.last_ms: dict[str, float] = {}  # mean ms of the last window that had any

    def record(self, kind: str, seconds: float, count: int = 1) -> None:
        if count <= 0:
            return
        with self._lock:
            window = self._window.setdefault(kind, [0.0, 0])
            window[0] += seconds
            window[1] += count
            self.totals[kind] = self.totals.get(kind, 0) + count

    def timer(self, kind: str) -> "_Timer":
        return _Timer(self, kind)

    def take(self) -> dict[str, float]:
        """Mean ms per item of each kind since the last call; kinds without new work keep
        their last mean (a gauge must not drop to 0 only because nobody queried)."""
        with self._lock:
            for kind, (seconds, count) in self._window.items():
                if count:
                    self.last_ms[kind] = round(seconds * 1000 / count, 3)
            self._window.clear()
            return dict(self.last_ms)

    def describe(self) -> dict:
        with self._lock:
            return {"last_ms": dict(self.last_ms), "totals": dict(self.totals)}


class _Timer:
    def __init__(self, latencies: Latencies, kind: str):
        self.latencies, self.kind = latencies, kind

    def __enter__(self):
        self.began = time.perf_counter()
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:  # answered; an error answer is not a query latency
            self.latencies.record(self.kind, time.perf_counter() - self.began)
        return False


def snapshot(engine) -> dict[str, float]:
    """The current value of every metric, from the engine's counters (one store count)."""
    counts = engine.counters()
    index = counts["index"]
    latencies = engine.latency.take()
    totals = engine.latency.describe()["totals"]
    return {"cbmir_indexed": counts["indexed"], "cbmir_indexed_frames": counts["frames"],
            "cbmir_pending": counts["pending"], "cbmir_failed": counts["failed"],
            "cbmir_skipped": counts["skipped"], "cbmir_index_size": index["size"],
            "cbmir_index_fresh": index["fresh"],
            "cbmir_queue_age_seconds": round(counts["queue_age_seconds"], 3),
            "cbmir_model_available": 1 if counts["model_available"] else 0,
            "cbmir_embed_latency_ms": latencies.get("embed", 0.0),
            "cbmir_query_latency_ms": latencies.get("query", 0.0),
            "cbmir_embedded_images_total": totals.get("embed", 0),
            "cbmir_queries_total": totals.get("query", 0)}


class MetricsPublisher:
    """Daemon thread: every `period` seconds, `snapshot` -> Orthanc's metrics (`gateway`)."""

    def __init__(self, gateway, engine, period: float):
        self.gateway, self.engine, self.period = gateway, engine, period
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.last: dict[str, float] = {}

    def publish(self) -> dict[str, float]:
        values = snapshot(self.engine)
        for name, value in values.items():
            self.gateway.set_metric(name, value)
        self.last = values
        return values

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cbmir-metrics", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        failed_before = False
        while not self.stop_event.is_set():
            try:
                self.publish()
                failed_before = False
            except Exception as error:  # Orthanc stopping, database busy: next tick
                if not failed_before:  # one line per outage, not one per tick
                    self.engine.log.warning(f"CBMIR: metrics not published: {error!r}")
                failed_before = True
            self.stop_event.wait(self.period)
