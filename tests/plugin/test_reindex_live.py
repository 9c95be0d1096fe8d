"""A re-index in a real Orthanc while images arrive and queries run (issue 11, points 7-8):
images stored during a re-index are searchable in the active index at once, and the
switch-over answers every query (no 409, no empty answer)."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from pydicom.uid import generate_uid

from orthanc_server import wait_for
from support.dicom_factory import mr_image

pytestmark = pytest.mark.orthanc
ALL = {"exclude_same_patient": "false", "group_by": "instance", "k": 5}


def images(count: int, patient: str, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    return [mr_image((rng.random((64, 64)) * 4000).astype(np.uint16), patient, study, series,
                     instance_number=i + 1) for i in range(count)]


def arrivals_are_searchable_during_the_re_index(server, seed: int) -> list[str]:
    """Store images one by one while the re-index is held back by the uploads themselves
    (backlog waits while storing is busy); each must answer 200 while it still runs."""
    fresh = images(12, f"DURING-{seed}", seed)
    ids, searchable = [], []
    for data in fresh:
        ids.append(server.upload(data)["ID"])
        for instance in ids:
            if instance not in searchable and server.get(f"/cbmir/similar/{instance}",
                                                         params=ALL).status_code == 200:
                searchable.append(instance)
        time.sleep(0.05)
    deadline = time.monotonic() + 60
    while len(searchable) < len(ids) and time.monotonic() < deadline:
        server.upload(images(1, f"KEEP-BUSY-{seed}", seed + len(searchable))[0])  # still arriving
        for instance in ids:
            if instance not in searchable and server.get(f"/cbmir/similar/{instance}",
                                                         params=ALL).status_code == 200:
                searchable.append(instance)
        reindex = server.status()["reindex"]
        assert reindex["running"], "the re-index ended first: the test proves nothing"
        time.sleep(0.1)
    assert server.status()["reindex"]["running"]
    missing = {i: server.get(f"/cbmir/similar/{i}", params=ALL).text[:300]
               for i in ids if i not in searchable}
    assert not missing, (f"stored during the re-index, not searchable: {missing}\n"
                         f"{server.status()}\n{server.log_tail(6000)}")
    return ids


def test_images_stored_during_a_re_index_are_searchable_at_once(make_server):
    server = make_server("live", cbmir={"BatchSize": 1, "IndexDelaySeconds": 0.3})
    old = [server.upload(d)["ID"] for d in images(150, "BEFORE", 1)]
    server.wait_idle()
    assert server.post("/cbmir/reindex").status_code == 200
    new = arrivals_are_searchable_during_the_re_index(server, 11)
    status = wait_for(lambda: (s := server.status())["index"]["generation"] == 2
                      and not s["reindex"]["running"] and s)
    assert status["failed"] == 0
    total = len(server.get("/instances").json())
    assert server.wait_idle()["indexed"] == total >= len(old) + len(new)
    assert server.get(f"/cbmir/similar/{new[0]}", params=ALL).status_code == 200


def test_a_new_model_re_index_keeps_new_images_and_uploads_answered(make_server, tmp_path,
                                                                   tiny_model):
    """The model changed: the old model (still at its path) embeds arrivals for the active
    generation, and query uploads use it too (no 409 while the re-index runs)."""
    from support.tiny_model import export_tiny_model
    server = make_server("newmodel-live", model=tiny_model,
                         cbmir={"BatchSize": 1, "IndexDelaySeconds": 0.3})
    [server.upload(d)["ID"] for d in images(150, "OLD-MODEL", 2)]
    server.wait_idle()
    server.stop()
    other = export_tiny_model(tmp_path / "other", seed=1, version="tiny-random-2")
    server.cbmir["ModelPath"] = str(other)
    server.start()
    assert server.status()["reindex"]["running"]
    new = arrivals_are_searchable_during_the_re_index(server, 21)
    upload = server.post("/cbmir/query", data=images(1, "QUERY", 5)[0],
                         headers={"Content-Type": "application/dicom"})
    assert upload.status_code == 200 and upload.json()["results"]
    wait_for(lambda: (s := server.status())["index"]["generation"] == 2
             and not s["reindex"]["running"] and s)
    assert server.get(f"/cbmir/similar/{new[-1]}", params=ALL).status_code == 200
    assert "that model is gone" not in server.log_tail(200000)


def test_switch_overs_answer_every_query_under_four_queriers(make_server):
    server = make_server("switch", cbmir={"RebuildThreshold": 64})
    ids = [server.upload(d)["ID"] for d in images(300, "SWITCH", 3)]
    server.wait_idle()
    stop = threading.Event()
    errors: list[str] = []
    answered = [0]

    def querier(seed: int) -> None:
        chooser = random.Random(seed)
        session = type(server.session)()
        session.auth = server.auth
        while not stop.is_set():
            instance = chooser.choice(ids)
            response = session.get(f"{server.url}/cbmir/similar/{instance}", params=ALL,
                                   timeout=30)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
            elif not response.json()["results"]:
                errors.append(f"empty answer for {instance}")
            answered[0] += 1

    threads = [threading.Thread(target=querier, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for switch in range(2, 6):  # four switch-overs
            assert server.post("/cbmir/reindex").status_code == 200
            wait_for(lambda: (s := server.status())["index"]["generation"] == switch
                     and not s["reindex"]["running"] and "old_generation" not in s["reindex"])
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert answered[0] > 100
    assert errors == [], f"{len(errors)} of {answered[0]} queries failed: {errors[:5]}"
