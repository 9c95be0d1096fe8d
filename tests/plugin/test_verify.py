"""`cbmir verify` / POST /cbmir/verify find stored vectors that disagree with their images.

The defect it is for: releases before the single decoding path indexed BitsAllocated 16 /
BitsStored 8 images from Orthanc 1.10's own decoding (two half-width copies of the
picture). Such an index is made here as that release made it: the plugin indexes, then,
with Orthanc stopped, the stored vector of one instance is replaced by the vector of
Orthanc's decoding of it (GET /instances/{id}/frames/0/numpy, the frame the old plugin
embedded). verify must report exactly that frame, with the fix; after the fix, nothing.
"""
from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cbmir.core.embed import Embedder
from support.dicom_layouts import layouts
from support.stored_vectors import overwrite_vector, stored_vectors

pytestmark = pytest.mark.orthanc

REPO = Path(__file__).resolve().parents[2]
NAMES = ["mono16", "mono8_in_16", "palette_color", "multi_frame", "rgb"]


def cbmir_verify(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbmir.tools.cli", "verify", "--url", server.url,
                           "--user", server.user, "--password", server.password, *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={"PYTHONPATH": str(REPO / "plugin"), "PATH": "/usr/bin:/bin"})


def wait_reindexed(server, generation: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server.status()
        if not status["reindex"]["running"] and status["reindex"].get("generation", 0) > generation:
            return status
        time.sleep(0.3)
    raise TimeoutError(f"re-index not done: {server.status()['reindex']}")


def test_verify_finds_what_an_earlier_release_stored_and_reindex_fixes_it(make_server, tmp_path,
                                                                         model_path):
    server = make_server("verify")
    files = layouts(patient_id="VERIFY", workdir=tmp_path)
    ids = {name: server.upload(files[name].data)["ID"] for name in NAMES}
    server.wait_idle()

    correct = server.post("/cbmir/verify", json={"sample": 50})
    assert correct.status_code == 200, correct.text
    answer = correct.json()
    assert answer["ok"] and answer["mismatches"] == [] and "fix" not in answer
    assert answer["checked_instances"] == answer["indexed_instances"] == len(NAMES)
    assert answer["checked_frames"] == 7  # multi_frame has 3
    run = cbmir_verify(server, "--sample", "10")
    assert run.returncode == 0 and "all stored vectors match" in run.stdout, run.stdout + run.stderr

    victim = ids["mono8_in_16"]
    orthanc_frame = np.load(io.BytesIO(server.get(f"/instances/{victim}/frames/0/numpy").content))
    old_frame = np.squeeze(orthanc_frame).astype(np.float32)  # two half-width copies
    old_vector = Embedder(model_path).embed_images([old_frame])[0]
    assert float(old_vector @ stored_vectors(server, victim)[0]) < 0.9  # the defect is real
    server.stop()
    assert overwrite_vector(server, victim, 0, old_vector) == 1
    server.start()

    run = cbmir_verify(server, "--sample", "100")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.count("MISMATCH") == 1 and f"MISMATCH {victim} frame 0 cosine" in run.stdout
    assert "POST /cbmir/reindex" in run.stdout
    answer = server.post("/cbmir/verify", json={"instances": [victim]}).json()
    assert not answer["ok"] and answer["mismatched_instances"] == 1
    assert answer["mismatches"][0]["frame"] == 0 and answer["mismatches"][0]["cosine"] < 0.9
    assert answer["fix"].startswith("POST /cbmir/reindex")

    generation = server.status()["index"]["generation"]
    assert server.post("/cbmir/reindex").status_code == 200
    wait_reindexed(server, generation)
    run = cbmir_verify(server, "--sample", "100")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("body, fragment", [
    (b"not json", "JSON"), (b"[1]", "object"), (b'{"sample": 0}', "sample"),
    (b'{"sample": "5"}', "sample"), (b'{"sample": 100000}', "sample"),
    (b'{"instances": "abc"}', "instances"), (b'{"sampel": 5}', "unknown"),
])
def test_a_bad_verify_request_is_a_400_with_the_reason(orthanc, body, fragment):
    answer = orthanc.post("/cbmir/verify", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and fragment in answer.json()["error"], answer.text


def test_verify_is_post_only_and_behind_orthanc_authentication(orthanc):
    import requests

    assert orthanc.get("/cbmir/verify").status_code == 405
    assert requests.post(orthanc.url + "/cbmir/verify", json={}, timeout=30).status_code == 401
    nobody = "-".join(["0" * 8] * 5)
    unknown = orthanc.post("/cbmir/verify", json={"instances": [nobody]})
    assert unknown.status_code == 200
    assert unknown.json()["mismatches"][0]["reason"] == "not in the index"
