"""OverwriteInstances: an overwrite the plugin never saw live (issue 11, point 9).

An overwrite keeps the Orthanc instance ID (it is derived from the UIDs), so when the DELETED
callback is lost (Orthanc killed -9 between the overwrite and the callback, or the plugin off
at the time) the /changes replay brings an instance that looks "already indexed". The plugin
compares the fingerprint of the file each vector was made from (Orthanc's attachment UUID)
and re-embeds when the file changed. Here the overwrite happens with the plugin off, the
deterministic form of the same gap."""
from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from orthanc_server import REPO
from support.dicom_factory import mr_image

pytestmark = pytest.mark.orthanc
ALL = {"exclude_same_patient": "false", "group_by": "instance"}
PLUGIN_OFF = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]


def overwritten(data: bytes, label: str, pixels: np.ndarray) -> bytes:
    """The same object (same UIDs, so the same Orthanc ID) with another label and pixels."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.ImageComments = label
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def embed_command(model_path, files: list) -> np.ndarray:
    """What `cbmir embed` computes for these DICOM files (run as the command itself)."""
    root = files[0].parent
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id", "split"])
        writer.writerows([[path.name, "x", "p", "x"] for path in files])
    out = root / "embed.npy"
    subprocess.run([sys.executable, "-m", "cbmir.tools.cli", "embed", "--model", str(model_path),
                    "--manifest", str(manifest), "--out", str(out), "--quiet"], check=True,
                   cwd=REPO, env={"PYTHONPATH": f"{REPO / 'plugin'}", "PATH": "/usr/bin:/bin"},
                   timeout=600)
    return np.load(out)


def rows_of(server, instance: str) -> list[tuple]:
    db = sqlite3.connect(server.home / "cbmir-index" / "cbmir.sqlite", timeout=30)
    try:
        return db.execute("SELECT frame, label, vector, fingerprint FROM vectors WHERE instance=?",
                          (instance,)).fetchall()
    finally:
        db.close()


def test_an_overwrite_made_while_the_plugin_was_off_is_re_indexed(make_server, model_path,
                                                                   tmp_path):
    server = make_server("overwrite-off", overrides={"OverwriteInstances": True})
    study, series = generate_uid(), generate_uid()
    first = mr_image((np.random.default_rng(1).random((64, 64)) * 4000).astype(np.uint16),
                     "OVR-OFF", study, series, label="first")
    other = mr_image((np.random.default_rng(2).random((64, 64)) * 4000).astype(np.uint16),
                     "OVR-OTHER", generate_uid(), generate_uid(), label="other")
    y, x = np.mgrid[0:64, 0:64]
    disc = ((x - 40) ** 2 + (y - 24) ** 2 < 150) * 3000 + x * 15  # nothing like the noise
    second = overwritten(first, "second", disc)
    # A CT (skipped: not in CBMIR.Modalities) later overwritten by an MR with the same UIDs.
    ct = mr_image((np.random.default_rng(3).random((64, 64)) * 4000).astype(np.uint16),
                  "OVR-CT", generate_uid(), generate_uid(), label="was CT", modality="CT")
    ct_as_mr = pydicom.dcmread(io.BytesIO(ct))
    ct_as_mr.Modality = "MR"
    buffer = io.BytesIO()
    ct_as_mr.save_as(buffer)
    instance = server.upload(first)["ID"]
    server.upload(other)
    skipped = server.upload(ct)["ID"]
    server.wait_idle()
    assert [r[1] for r in rows_of(server, instance)] == ["first"]
    assert server.get(f"/cbmir/similar/{skipped}", params=ALL).status_code == 422

    server.stop()  # overwrite X with the plugin off: its DELETED callback never reaches CBMIR
    server.overrides = {"OverwriteInstances": True, "Plugins": PLUGIN_OFF}
    server.start(wait_plugin=False)
    assert server.get("/cbmir/status").status_code == 404  # really off
    assert server.upload(second)["ID"] == instance  # same UIDs: same Orthanc ID
    assert server.get(f"/instances/{instance}/content/0020,4000").text.strip() == "second"
    assert server.upload(buffer.getvalue())["ID"] == skipped
    server.stop()

    server.overrides = {"OverwriteInstances": True}
    server.start()
    server.wait_idle()
    answer = server.get(f"/cbmir/similar/{instance}", params=ALL)
    assert answer.status_code == 200, answer.text
    rows = rows_of(server, instance)
    assert len(rows) == 1, f"exactly one row per frame, got {len(rows)}"
    assert (answer.json()["query"]["label"], rows[0][1]) == ("second", "second"), \
        "the overwrite made while the plugin was off kept the old label"
    files = [tmp_path / "first.dcm", tmp_path / "second.dcm"]
    files[0].write_bytes(first)
    files[1].write_bytes(second)
    old, new = embed_command(model_path, files)
    stored = np.frombuffer(rows[0][2], dtype=np.float32)
    assert float(old @ new) < 0.99  # the two versions are told apart by the model
    assert float(stored @ new) >= 0.999, f"stored vs `cbmir embed` cosine {float(stored @ new)}"
    info = server.get(f"/instances/{instance}/attachments/dicom/info").json()
    assert rows[0][3] == info["Uuid"]  # the fingerprint of the file it was made from
    # the skipped CT, overwritten by an MR unseen, is indexed now (not left "skipped")
    assert [r[1] for r in rows_of(server, skipped)] == ["was CT"], \
        "an instance skipped before an unseen overwrite stayed skipped"
