"""The `percentile` of each result (where its score falls in this archive's scores for the
query), through the REST API of a real Orthanc with the plugin."""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from support.dicom_factory import FIGSHARE, figshare_cases

pytestmark = [pytest.mark.orthanc,
              pytest.mark.skipif(not (FIGSHARE / "manifest.csv").is_file(),
                                 reason=f"figshare test data absent ({FIGSHARE})")]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, model_path):
    """An Orthanc of its own (so the archive is exactly these images): 24 labelled slices."""
    from orthanc_server import needs_orthanc
    from orthanc_server import OrthancServer

    needs_orthanc()
    server = OrthancServer(tmp_path_factory.mktemp("percentile") / "server", model_path=model_path)
    server.start()
    try:
        cases = figshare_cases(per_label_patients=2, slices=4)
        ids = [server.upload(case.data)["ID"] for case in cases]
        status = server.wait_idle()
        assert status["indexed"] == len(cases), status
        yield server, ids
    finally:
        server.stop(timeout=20)


def everything(server, instance, **args):
    """Every other image of the archive, best first."""
    params = dict(k=1000, group_by="instance", exclude_same_patient="false", **args)
    response = server.get(f"/cbmir/similar/{instance}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_each_result_has_its_percentile_monotone_with_the_score(archive):
    server, ids = archive
    for instance in ids[:3]:
        results = everything(server, instance)
        assert len(results) == len(ids) - 1
        scores = [r["score"] for r in results]
        values = [r["percentile"] for r in results]
        assert all(0.0 <= v <= 100.0 for v in values)
        for (s1, p1), (s2, p2) in zip(zip(scores, values), zip(scores[1:], values[1:])):
            assert s1 >= s2 and p1 >= p2
        # the archive is smaller than the sample, so the value is exact: the share of the
        # other images whose cosine to the query is strictly lower (up to float noise: the
        # answer's scores are rounded to 6 decimals, near-duplicate slices tie at that level)
        n = len(results)
        share = lambda count: math.floor(count * 10000 / n) / 100  # noqa: E731
        for s, value in zip(scores, values):
            low = share(sum(t < s - 2e-6 for t in scores))
            high = share(sum(t <= s + 2e-6 for t in scores) - 1)  # - 1: the result itself
            assert low <= value <= high, (s, value, low, high)
        assert values[0] > values[-1] == 0.0


def test_a_filter_does_not_change_where_a_result_falls_in_the_archive(archive):
    server, ids = archive
    unfiltered = {r["instance"]: r["percentile"] for r in everything(server, ids[0])}
    label = everything(server, ids[0])[-1]["label"]
    filtered = everything(server, ids[0], label=label)
    assert filtered and all(r["label"] == label for r in filtered)
    for result in filtered:
        assert result["percentile"] == unfiltered[result["instance"]]


def test_an_uploaded_query_gets_percentiles_too(archive):
    server, _ = archive
    picture = next((FIGSHARE / "images" / "glioma").glob("*.jpg"))
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(picture).convert("L"))).save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "k": 1000,
            "group_by": "instance"}
    response = server.post("/cbmir/query", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    values = [r["percentile"] for r in results]
    assert len(results) == len(archive[1]) and values == sorted(values, reverse=True)
    assert all(isinstance(r["score"], float) for r in results)
