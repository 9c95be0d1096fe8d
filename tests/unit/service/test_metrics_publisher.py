"""metrics.py and logs.py with the fake orthanc module (tests/support/fake_orthanc.py; the real
one: tests/plugin/test_admin.py)."""
from types import SimpleNamespace

import pytest

from cbmir.service.gateway import Gateway
from cbmir.service.logs import Log, describe_index
from cbmir.service.metrics import METRICS, Latencies, MetricsPublisher
from support.fake_orthanc import FakeOrthanc


def fake_engine(latency):
    """An engine as the metrics see it: its counters (Engine.counters) and latencies."""
    counters = {"indexed": 5, "frames": 7, "failed": 1, "skipped": 3, "pending": 4,
                "queue_age_seconds": 2.5, "index": {"size": 7, "fresh": 2},
                "model_available": True}
    return SimpleNamespace(counters=lambda: counters, latency=latency, log=Log.wrap(print))


def test_publish_sets_every_metric_from_the_engine():
    orthanc, latency = FakeOrthanc(), Latencies()
    latency.record("embed", 0.030, 3)  # 3 images in 30 ms
    with latency.timer("query"):
        pass
    values = MetricsPublisher(Gateway(orthanc), fake_engine(latency), period=1).publish()
    assert set(orthanc.metrics) == set(METRICS) == set(values)
    assert all(name.startswith("cbmir_") for name in orthanc.metrics)
    assert orthanc.metrics["cbmir_indexed"] == 5 and orthanc.metrics["cbmir_pending"] == 4
    assert orthanc.metrics["cbmir_failed"] == 1 and orthanc.metrics["cbmir_skipped"] == 3
    assert orthanc.metrics["cbmir_index_size"] == 7 and orthanc.metrics["cbmir_index_fresh"] == 2
    assert orthanc.metrics["cbmir_queue_age_seconds"] == 2.5
    assert orthanc.metrics["cbmir_embed_latency_ms"] == pytest.approx(10.0)
    assert orthanc.metrics["cbmir_embedded_images_total"] == 3
    assert orthanc.metrics["cbmir_queries_total"] == 1


def test_latency_keeps_its_last_mean_while_idle_and_ignores_failed_answers():
    latency = Latencies()
    latency.record("query", 0.004)
    latency.record("query", 0.002)
    assert latency.take() == {"query": pytest.approx(3.0)}
    assert latency.take() == {"query": pytest.approx(3.0)}  # nobody queried: unchanged
    with pytest.raises(ValueError), latency.timer("query"):
        raise ValueError("an error answer")
    assert latency.describe()["totals"] == {"query": 2}


def test_log_levels_go_to_orthanc_and_a_callable_still_works():
    orthanc = FakeOrthanc()
    log = Gateway(orthanc).log
    log.info("a"), log.warning("b"), log.error("c"), log("d")
    assert orthanc.lines == [("I", "a"), ("W", "b"), ("E", "c"), ("W", "d")]
    seen = []
    Log.wrap(seen.append).error("e")
    assert seen == ["e"]
    text = describe_index({"generation": 2, "size": 9, "built": 7, "fresh": 2, "trees": 32})
    assert text == "generation 2: 9 vector(s), 7 in Annoy, 2 fresh" and "{" not in text
