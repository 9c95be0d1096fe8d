"""The README's promise "every image stored becomes searchable within seconds", on one upload
to a real Orthanc with the shipped model and the shipped pacing settings.

A promise check, not a benchmark (bench/indexing.py measures the figure: store -> searchable
p95 1.24 s at 20 images/s, goal <= 2 s). The bound is that goal plus a tolerance for a busy
shared 2-core machine; on an idle server the image is searchable after ~0.2 s (the pacer
waits one 150 ms window for more arrivals, then embeds it).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from pydicom.uid import generate_uid

from support.dicom_factory import mr_image

pytestmark = pytest.mark.orthanc
PROMISE_SECONDS = 2.0    # README, "store -> searchable ... goal <= 2 s"
TOLERANCE_SECONDS = 1.5  # scheduling on a loaded 2-core CI machine (seen: 0.2-0.6 s there)


def test_an_uploaded_image_is_searchable_within_the_promised_seconds(make_server):
    # CatchUpSeconds 30: the /changes poll (every 5 s by default, 1 s in other tests) cannot
    # find the image in time; the promise must hold through the NEW_INSTANCE path itself.
    server = make_server("searchable", cbmir={"CatchUpSeconds": 30})
    rng = np.random.default_rng(11)
    study, series = generate_uid(), generate_uid()
    pictures = [mr_image((rng.random((256, 256)) * 4000).astype(np.uint16), "SOON", study,
                         series, instance_number=i + 1) for i in range(2)]
    server.upload(pictures[0])  # a first image warms the worker's session up
    server.wait_idle()
    instance = server.upload(pictures[1])["ID"]
    stored = time.monotonic()
    # Watch /cbmir/status, not /cbmir/similar: a similar request for a pending image queues it
    # itself (routes.indexed_rows), which would hide a broken NEW_INSTANCE path.
    while server.status()["indexed"] < 2 and time.monotonic() - stored < 30:
        time.sleep(0.02)
    seconds = time.monotonic() - stored
    print(f"stored -> searchable: {seconds:.2f} s")
    response = server.get(f"/cbmir/similar/{instance}", params={"exclude_same_patient": "false"})
    assert response.status_code == 200, f"not searchable after {seconds:.1f} s: {response.text}"
    assert seconds <= PROMISE_SECONDS + TOLERANCE_SECONDS, (
        f"searchable only after {seconds:.2f} s (promise {PROMISE_SECONDS} s "
        f"+ {TOLERANCE_SECONDS} s tolerance)")
