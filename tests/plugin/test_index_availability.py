"""An unusable CBMIR index folder at start must not take the archive down (issue 11, point 6):
Orthanc starts and serves images, /cbmir/* answer 503 with the reason, and CBMIR recovers by
itself once the folder is usable (retried every CatchUpSeconds), indexing what arrived meanwhile.

Tests run as root here, so permissions cannot make a folder unwritable: the index path is made
unusable by a regular file standing where the folder (or one of its parents) must be."""
from __future__ import annotations

import time

import numpy as np
import pytest
from pydicom.uid import generate_uid

from support.dicom_factory import mr_image
from support.small_fs import tmpfs

pytestmark = pytest.mark.orthanc


def _slice(patient: str, seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((64, 64)) * 3000).astype(np.uint16)
    return mr_image(pixels, patient, generate_uid(), generate_uid(), label="glioma")


def _wait_started(server, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = server.get("/cbmir/status")
        if response.status_code == 200 and response.json().get("started"):
            return response.json()
        time.sleep(0.3)
    raise TimeoutError(f"CBMIR did not recover: {response.status_code} {response.text}\n"
                       f"{server.log_tail()}")


@pytest.fixture
def full_filesystem(tmp_path):
    """A 2 MiB tmpfs filled to the last byte (needs root and mount; skipped otherwise)."""
    with tmpfs(tmp_path / "small-fs", "2m") as mount_point:
        filler = mount_point / "filler"
        with filler.open("wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 512)
            except OSError:
                pass
        yield mount_point, filler


@pytest.mark.parametrize("blocker", ["file-at-folder", "file-as-parent", "full-filesystem"])
def test_orthanc_serves_images_while_the_index_folder_is_unusable_then_recovers(
        make_server, tmp_path, blocker, request):
    if blocker == "full-filesystem":
        mount_point, blocking_file = request.getfixturevalue("full_filesystem")
        index = mount_point / "cbmir"
    else:
        blocking_file = tmp_path / "blocker"
        blocking_file.write_text("not a folder")
        index = blocking_file if blocker == "file-at-folder" else blocking_file / "cbmir"
    server = make_server("unusable", cbmir={"IndexDirectory": str(index)}, start=False)
    server.start(wait_plugin=False)  # Orthanc itself must start

    first = server.upload(_slice("AVAIL-1", 1))["ID"]
    assert server.get(f"/instances/{first}/preview").status_code == 200  # images still served
    for path in ("/cbmir/status", f"/cbmir/similar/{first}"):
        response = server.get(path)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == 503 and "index unavailable" in body["error"], body
        assert str(index) in body["error"] or body["index_directory"] == str(index)
    assert server.post("/cbmir/query", data=_slice("AVAIL-Q", 9),
                       headers={"Content-Type": "application/dicom"}).status_code == 503

    blocking_file.unlink()  # the admin fixes the folder (or frees space); no restart
    _wait_started(server)
    second = server.upload(_slice("AVAIL-2", 2))["ID"]
    server.wait_idle()
    status = server.status()
    assert status["indexed"] >= 2, status  # what arrived while it was down is indexed too
    for instance in (first, second):
        assert server.get(f"/cbmir/similar/{instance}").status_code == 200
    assert server.process.poll() is None
