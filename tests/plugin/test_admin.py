"""What admins see: CBMIR's metrics in /tools/metrics-prometheus and the log levels.

One real Orthanc started with --verbose (info lines are printed only then), fed
three MR slices (indexed), two structured reports (skipped) and an MR whose pixel data
is shorter than its Rows x Columns (failed).
"""
from __future__ import annotations

import io
import re
import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from orthanc_server import running_server
from support.dicom_factory import mr_image, structured_report

pytestmark = pytest.mark.orthanc
LINE = re.compile(r"^([IWE])\d{4} ")  # Orthanc's log line: level letter, MMDD


def broken_mr() -> bytes:
    """Pixel data for 32x32 but Rows/Columns say 512x512: no decoder can read it."""
    data = mr_image(np.ones((32, 32), np.uint16), "BROKEN", generate_uid(), generate_uid())
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = ds.Columns = 512
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    from orthanc_server import needs_orthanc
    needs_orthanc()
    with running_server(tmp_path_factory.mktemp("admin"), model_path,
                        arguments=["--verbose"]) as running:
        rng = np.random.default_rng(5)
        study, series = generate_uid(), generate_uid()
        running.ids = {
            "indexed": [running.upload(mr_image((rng.random((64, 64)) * 900).astype(np.uint16),
                                                "ADMIN-1", study, series, label="glioma",
                                                instance_number=n))["ID"] for n in range(3)],
            "skipped": [running.upload(structured_report(f"ADMIN-SR{n}"))["ID"] for n in (1, 2)],
            "failed": running.upload(broken_mr())["ID"]}
        running.wait_idle()
        for _ in range(2):  # two timed queries for the latency metric
            assert running.get(f"/cbmir/similar/{running.ids['indexed'][0]}").status_code == 200
        yield running


def prometheus(server) -> dict[str, float]:
    text = server.get("/tools/metrics-prometheus").text
    return {name: float(value) for name, value, *_ in
            (line.split() for line in text.splitlines() if line.startswith("cbmir_"))}


def test_metrics_match_status(server):
    """Values are published every CatchUpSeconds (1 s here): wait for a tick after idle."""
    wanted = {"cbmir_indexed": "indexed", "cbmir_indexed_frames": "indexed_frames",
              "cbmir_pending": "pending", "cbmir_failed": "failed", "cbmir_skipped": "skipped"}
    deadline, metrics, status = time.monotonic() + 30, {}, {}
    while time.monotonic() < deadline:
        status = server.status()
        metrics = prometheus(server)
        if (metrics.get("cbmir_queries_total") == status["latency"]["totals"].get("query")
                and all(metrics.get(m) == status[s] for m, s in wanted.items())):
            break
        time.sleep(0.5)
    assert {m: metrics.get(m) for m in wanted} == {m: status[s] for m, s in wanted.items()}
    assert (status["indexed"], status["skipped"], status["failed"]) == (3, 2, 1)  # all differ
    assert metrics["cbmir_index_size"] == status["index"]["size"] == 3
    assert metrics["cbmir_index_fresh"] == status["index"]["fresh"]
    assert metrics["cbmir_queue_age_seconds"] == 0 and metrics["cbmir_model_available"] == 1
    assert metrics["cbmir_queries_total"] == 2 and metrics["cbmir_embedded_images_total"] == 3
    assert metrics["cbmir_embed_latency_ms"] > 0 and metrics["cbmir_query_latency_ms"] > 0
    assert status["latency"]["last_ms"]["embed"] == pytest.approx(
        metrics["cbmir_embed_latency_ms"], rel=1e-3)


def _lines(server) -> list[str]:
    return server.log_path.read_text(errors="replace").splitlines()


def _level(lines: list[str], needle: str) -> set[str]:
    return {LINE.match(line).group(1) for line in lines if needle in line and LINE.match(line)}


def test_log_levels_and_one_line_per_event_with_the_instance(server):
    lines = _lines(server)
    for instance in server.ids["indexed"]:
        assert _level(lines, f"CBMIR: indexed {instance}") == {"I"}
    for instance in server.ids["skipped"]:
        assert _level(lines, f"CBMIR: skipped {instance}") == {"I"}
    assert _level(lines, f"CBMIR: failed {server.ids['failed']}") == {"E"}
    assert len([line for line in lines if f"CBMIR: failed {server.ids['failed']}" in line]) == 1
    warnings = [line for line in lines if LINE.match(line) and line[0] == "W" and "CBMIR" in line]
    assert warnings, "start/stop lines are warnings, as Orthanc's own"
    assert not [line for line in warnings if re.search(r"\{'|\['", line)], \
        "no Python dict or list dumped at warning level"
    assert _level(lines, "CBMIR: started; index generation") == {"W"}


def test_a_model_without_its_json_runs_from_the_card_inside_it(make_server, tiny_model, tmp_path):
    """`cbmir export` also writes the card into the ONNX file; the plugin falls back to it."""
    import json
    import shutil

    pytest.importorskip("onnx", reason="the training extras write the embedded card")
    from cbmir_train.onnx_export import embed_card

    model = tmp_path / "alone" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(tiny_model, model)
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    embed_card(model, {**card, "version": "embedded-card-1"})
    assert not model.with_suffix(".json").exists()
    server = make_server("embedded-card", model=model)
    status = server.status()
    assert status["model"]["available"] and status["model"]["version"] == "embedded-card-1"
    instance = server.upload(mr_image(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
                                      "EMBEDDED", generate_uid(), generate_uid()))["ID"]
    server.wait_idle()
    assert server.get(f"/cbmir/similar/{instance}").status_code == 200
