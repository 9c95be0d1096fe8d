"""Faults while ingesting, in a real Orthanc (issue 11): a decompression bomb, an image
that kills the process at every attempt, a full index disk, reconciliation, and quick
overwrites with OverwriteInstances."""
from __future__ import annotations

import io
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from orthanc_server import OrthancServer, wait_for
from support.bombs import deflated_image
from support.dicom_factory import mr_image
from support.small_fs import tmpfs

pytestmark = pytest.mark.orthanc
ALL = {"exclude_same_patient": "false", "group_by": "instance"}


def images(count: int, patient: str, label: str | None = None, seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    return [mr_image((rng.random((64, 64)) * 4000).astype(np.uint16), patient, study, series,
                     label=label, instance_number=i + 1) for i in range(count)]


def db(server: OrthancServer, index: Path | None = None) -> sqlite3.Connection:
    return sqlite3.connect(index or server.home / "cbmir-index" / "cbmir.sqlite", timeout=30)


def query(connection: sqlite3.Connection, sql: str, args=()) -> list[tuple]:
    try:
        rows = connection.execute(sql, args).fetchall()
        connection.commit()
        return rows
    finally:
        connection.close()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """0.5 MB deflated; 4 frames of 8192 x 8192 16-bit = 512 MiB of pixels once inflated."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.dcm"
    path.write_bytes(deflated_image(8192, 8192, 4, patient_id="BOMB"))
    return path


# -- 1. decompression bomb -----------------------------------------------------------------------
def test_a_decompression_bomb_is_skipped_as_too_large_and_indexing_goes_on(make_server, bomb):
    server = make_server("bomb")
    assert bomb.stat().st_size < 1024 * 1024
    bomb_id = server.upload(bomb)["ID"]
    later = [server.upload(d)["ID"] for d in images(3, "AFTER-BOMB")]
    status = server.wait_idle()
    assert status["skipped"] == 1 and status["failed"] == 0 and status["indexed"] == 3
    answer = server.get(f"/cbmir/similar/{bomb_id}")
    assert answer.status_code == 422
    assert "too large" in answer.json()["error"] and "CBMIR.MaxFramePixels" in answer.json()["error"]
    assert "skipped " + bomb_id in server.log_tail(200000)
    assert server.get(f"/cbmir/similar/{later[0]}", params=ALL).status_code == 200
    assert server.process.poll() is None  # Orthanc is still up


def test_the_instance_limit_counts_every_frame(make_server):
    server = make_server("frames", cbmir={"MaxInstancePixels": 64 * 64 * 3})
    four = server.upload(deflated_image(64, 64, 4, patient_id="FRAMES", noise=True))["ID"]
    two = server.upload(deflated_image(64, 64, 2, patient_id="FRAMES2", noise=True))["ID"]
    server.wait_idle()
    answer = server.get(f"/cbmir/similar/{four}")
    assert answer.status_code == 422 and "CBMIR.MaxInstancePixels" in answer.json()["error"]
    assert server.get(f"/cbmir/similar/{two}", params=ALL).status_code == 200


def test_an_instance_that_kills_the_process_is_recorded_failed_and_not_replayed(make_server):
    """kill -9 while an instance is marked in progress, twice: at the next start it is
    recorded as failed (not tried a third time) and images after it are indexed."""
    big = {"MaxFramePixels": 2048 * 2048, "MaxInstancePixels": 2048 * 2048 * 24,
           "IndexDelaySeconds": 0}
    server = make_server("killer", cbmir=big)
    heavy = server.upload(deflated_image(2048, 2048, 24, patient_id="HEAVY", noise=True))["ID"]

    def attempts():
        rows = query(db(server), "SELECT count FROM attempts WHERE instance=?", (heavy,))
        return rows[0][0] if rows else 0

    for death in (1, 2):
        wait_for(lambda: attempts() == death, timeout=120, step=0.02)
        server.kill()  # as the OOM killer would, while the instance is in progress
        assert attempts() == death
        server.start()
    status = server.wait_idle()
    assert status["failed"] == 1 and status["in_progress"] == []
    rejected = query(db(server), "SELECT kind, reason FROM rejected WHERE instance=?", (heavy,))
    assert rejected[0][0] == "failed" and "killed" in rejected[0][1]
    later = server.upload(images(1, "AFTER-KILLER")[0])["ID"]
    assert server.wait_idle()["indexed"] == 1
    assert server.get(f"/cbmir/similar/{later}", params=ALL).status_code == 200
    server.stop()
    server.start()  # and not replayed at the next start either
    status = server.wait_idle()
    assert status["failed"] == 1 and status["indexed"] == 1 and attempts() == 0


# -- 2. full index disk, reconciliation ----------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 400 KB tmpfs for the index folder (root only); skipped clearly where mount is denied."""
    with tmpfs(tmp_path / "small-disk", "400k") as folder:
        yield folder


def test_a_full_index_disk_loses_no_image(make_server, small_disk):
    # CatchUpSeconds 3600: the /changes follower polls only at start, so only the worker's
    # own retries can bring the failed batches back (the follower would mask a lost batch).
    server = make_server("full", cbmir={"IndexDirectory": str(small_disk),
                                        "RebuildThreshold": 1_000_000, "CatchUpSeconds": 3600})
    stored = [server.upload(d)["ID"] for d in images(300, "FULL")]
    status = wait_for(lambda: (s := server.status())["store_error"] and s, timeout=120)
    assert "full" in status["store_error"]["error"]  # visible in status ...
    assert status["pending"] > 0 and status["indexed"] < 300  # ... and nothing counted done
    assert "cannot write the index" in server.log_tail(200000)
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)  # space back
    try:
        status = wait_for(lambda: (s := server.status())["pending"] == 0
                          and s["store_error"] is None and s, timeout=240)
    except TimeoutError:
        pytest.fail(f"still not written after the space came back: {server.status()}")
    assert status["indexed"] == 300 and status["failed"] == 0 and status["store_error"] is None
    rows = query(db(server, small_disk / "cbmir.sqlite"), "SELECT DISTINCT instance FROM vectors")
    assert {r[0] for r in rows} == set(stored)
    server.stop()
    server.start()
    assert server.wait_idle()["indexed"] == 300
    assert server.get(f"/cbmir/similar/{stored[-1]}", params=ALL).status_code == 200


def test_reconciliation_queues_every_instance_missing_from_the_index(make_server):
    server = make_server("reconcile")
    ids = [server.upload(d)["ID"] for d in images(6, "RECON")]
    server.wait_idle()
    # The index loses rows behind the plugin's back (restored backup, older bug) ...
    query(db(server), "DELETE FROM vectors WHERE instance IN (?, ?)", tuple(ids[:2]))
    answer = server.post("/cbmir/reconcile")  # ... on demand
    assert answer.status_code == 200 and answer.json()["queued"] == 2
    assert server.wait_idle()["indexed"] == 6
    server.stop()
    connection = db(server)
    connection.execute("DELETE FROM vectors WHERE instance=?", (ids[3],))
    connection.commit()
    connection.close()
    server.start()  # ... and at start-up (the /changes checkpoint is past it)
    wait_for(lambda: server.status()["indexed"] == 6, timeout=60)
    assert server.get(f"/cbmir/similar/{ids[3]}", params=ALL).status_code == 200
    assert server.get("/cbmir/reconcile").status_code == 405


# -- 9. OverwriteInstances -----------------------------------------------------------------------
def test_quick_overwrites_never_keep_an_old_label(make_server):
    """Each of 30 instances is overwritten right after it was stored, often while the worker
    embeds the first version (Orthanc deletes, then stores again, under the same ID)."""
    server = make_server("overwrite", cbmir={"IndexDelaySeconds": 0, "BatchSize": 1},
                         overrides={"OverwriteInstances": True})
    rng = np.random.default_rng(5)
    ids = []
    for data in images(30, "OVERWRITE", label="first"):
        ids.append(server.upload(data)["ID"])
        time.sleep(float(rng.random()) * 0.03)  # land in the worker's window, sometimes
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.ImageComments = "second"
        ds.PixelData = (rng.random((64, 64)) * 4000).astype(np.uint16).tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer)
        assert server.upload(buffer.getvalue())["ID"] == ids[-1]
    server.wait_idle()

    def labels():
        rows = query(db(server), "SELECT instance, label FROM vectors")
        answered = {server.get(f"/cbmir/similar/{i}", params=ALL).json()["query"]["label"]
                    for i in ids}
        return sorted(rows), answered

    try:
        rows, _ = wait_for(lambda: (value := labels())[1] == {"second"} and value, timeout=20)
    except TimeoutError:
        rows, answered = labels()
        pytest.fail(f"old labels kept: {sum(label != 'second' for _, label in rows)} of 30")
    assert sorted(r[0] for r in rows) == sorted(ids) and {r[1] for r in rows} == {"second"}
    server.stop()
    server.start()
    server.wait_idle()
    assert labels()[1] == {"second"}
