"""Same picture, same vector: every pixel layout through every way in, in a real Orthanc.

For each layout of tests/support/dicom_layouts.py stored by C-STORE, REST and DICOMweb
STOW-RS: the plugin's stored vector equals what `cbmir embed` computes from the same
file (cosine >= 0.999; every frame against the same decoding + model in this process),
every layout of one picture embeds like its plainest layout, and `POST /cbmir/query` of
the file finds a stored copy of the same picture first with score >= 0.999. Layouts no
decoder can read for certain end as 'failed' with their reason, never as a vector.
Needs no ../shared/data (test_formats.py runs the shared files through the same checks).
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cbmir.core import decode
from cbmir.core.embed import Embedder
from support.dicom_layouts import layout_names, layouts, undecodable_layouts
from support.stored_vectors import stored_vectors

pytestmark = pytest.mark.orthanc

REPO = Path(__file__).resolve().parents[2]
WAYS = ("cstore", "rest", "stow")
SAME = 0.999  # stored vs recomputed, and copies of one picture in any layout (measured >= 0.9999)
NAMES = layout_names()  # the layouts this machine can make (dcmtk ones if present)
# storescu option that proposes a transfer syntax (and the uncompressed ones)
STORESCU_PROPOSAL = {"1.2.840.10008.1.2.1": "-xe", "1.2.840.10008.1.2": "-xi",
                     "1.2.840.10008.1.2.2": "-xb", "1.2.840.10008.1.2.1.99": "-xd",
                     "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.70": "-xs",
                     "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.90": "-xv",
                     "1.2.840.10008.1.2.5": "-xr"}
REFERENCE = {"A": ("mono16", 0), "A-mirrored": ("multi_frame", 1), "B": ("multi_frame", 2),
             "C": ("odd_size_511x257", 0)}


def sop_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def stow(server, datas: list[bytes]) -> dict:
    boundary = "cbmir-layouts-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
                    + b"\r\n" for data in datas) + f"--{boundary}--\r\n".encode()
    response = server.post("/dicom-web/studies", data=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    assert response.status_code == 200, response.text
    return response.json()


def lookup(server, uid: str) -> str:
    matches = server.post("/tools/lookup", data=uid).json()
    ids = [m["ID"] for m in matches if m["Type"] == "Instance"]
    assert len(ids) == 1, (uid, matches)
    return ids[0]


@pytest.fixture(scope="module")
def stored(orthanc, tmp_path_factory, model_path):
    """Every layout stored once per way in; ids, files, stored and recomputed vectors."""
    root = tmp_path_factory.mktemp("layouts")
    files = {}
    for way in WAYS:
        made = layouts(patient_id=f"LAYOUTS-{way.upper()}", workdir=root)
        for name, layout in made.items():
            path = root / way / f"{name}.dcm"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(layout.data)
            files[way, name] = (layout, path)
    ids = {}
    for name in NAMES:
        answer = orthanc.upload(files["rest", name][0].data)
        assert answer["Status"] == "Success", (name, answer)
        ids["rest", name] = answer["ID"]
    # one association per transfer syntax, proposing it, so each file travels as it is
    by_syntax: dict[str, list[Path]] = {}
    for name in NAMES:
        layout, path = files["cstore", name]
        by_syntax.setdefault(str(layout.transfer_syntax), []).append(path)
    for syntax, paths in by_syntax.items():
        sent = orthanc.storescu(paths, STORESCU_PROPOSAL[syntax])
        assert sent.returncode == 0, (syntax, sent.stderr)
    answer = stow(orthanc, [files["stow", name][0].data for name in NAMES])
    assert not answer.get("00081198", {}).get("Value"), answer["00081198"]  # FailedSOPSequence
    for way in ("cstore", "stow"):
        for name in NAMES:
            ids[way, name] = lookup(orthanc, sop_uid(files[way, name][0].data))
    broken = undecodable_layouts()
    for name, layout in broken.items():
        ids["rest", name] = orthanc.upload(layout.data)["ID"]
    orthanc.wait_idle()
    # what `cbmir embed` computes (first frame), run as the command itself
    manifest = root / "manifest.csv"
    keys = sorted(files)
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id", "split"])
        writer.writerows([[str(files[key][1].relative_to(root)), key[1], key[0], "x"]
                          for key in keys])
    out = root / "embed.npy"
    subprocess.run([sys.executable, "-m", "cbmir.tools.cli", "embed", "--model", str(model_path),
                    "--manifest", str(manifest), "--out", str(out), "--quiet"], check=True,
                   cwd=REPO, env={"PYTHONPATH": f"{REPO / 'plugin'}", "PATH": "/usr/bin:/bin"},
                   timeout=600)
    embedded = dict(zip(keys, np.load(out)))
    # every frame, through the same functions in this process
    embedder = Embedder(model_path)
    frames = {key: embedder.embed_images(decode.decode_dicom_bytes(files[key][0].data))
              for key in keys}
    vectors = {key: stored_vectors(orthanc, ids[key]) for key in ids}
    return {"ids": ids, "files": files, "embedded": embedded, "frames": frames,
            "vectors": vectors, "broken": broken}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("way", WAYS)
def test_the_stored_vector_is_what_cbmir_embed_computes(stored, way, name):
    key = (way, name)
    vectors, layout = stored["vectors"][key], stored["files"][key][0]
    assert sorted(vectors) == list(range(len(layout.pictures))), f"{name}: frames not all indexed"
    cosine = float(vectors[0] @ stored["embedded"][key])
    assert cosine >= SAME, f"{way} {name}: stored vs `cbmir embed` cosine {cosine:.4f}"
    for frame, expected in enumerate(stored["frames"][key]):
        cosine = float(vectors[frame] @ expected)
        assert cosine >= SAME, f"{way} {name} frame {frame}: cosine {cosine:.4f}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("way", WAYS)
def test_every_layout_of_a_picture_is_stored_like_its_plainest_layout(stored, way, name):
    """Catches a decoding error both paths would share (a forgotten palette, junk bits kept)."""
    for frame, picture in enumerate(stored["files"][way, name][0].pictures):
        reference_name, reference_frame = REFERENCE[picture]
        reference = stored["vectors"]["rest", reference_name][reference_frame]
        cosine = float(stored["vectors"][way, name][frame] @ reference)
        assert cosine >= SAME, (f"{way} {name} frame {frame} shows picture {picture} but embeds "
                                f"like it with cosine {cosine:.4f}")


def picture_of(stored, instance: str, frame: int) -> str | None:
    for (way, name), known in stored["ids"].items():
        if known == instance and (way, name) in stored["files"]:
            return stored["files"][way, name][0].pictures[frame]
    return None


@pytest.mark.parametrize("name", NAMES)
def test_a_query_with_the_file_finds_a_copy_of_the_same_picture_first(orthanc, stored, name):
    layout = stored["files"]["rest", name][0]
    response = orthanc.post("/cbmir/query", data=layout.data, headers={
        "Content-Type": "application/dicom", "X-CBMIR-K": "5",
        "X-CBMIR-Exclude-Same-Patient": "false", "X-CBMIR-Group-By": "instance"})
    assert response.status_code == 200, response.text
    best = response.json()["results"][0]
    expected = layout.pictures[len(layout.pictures) // 2]  # the query's default frame
    assert best["score"] >= SAME, (name, best)
    assert picture_of(stored, best["instance"], best["frame"]) == expected, (name, best)


@pytest.mark.parametrize("name", list(undecodable_layouts()))
def test_an_undecodable_layout_is_failed_with_its_reason_never_a_vector(orthanc, stored, name):
    instance, layout = stored["ids"]["rest", name], stored["broken"][name]
    answer = orthanc.get(f"/cbmir/similar/{instance}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["kind"] == "failed" and layout.expect_failure in answer.json()["error"]
    assert stored["vectors"]["rest", name] == {}
    assert any(f["instance"] == instance and layout.expect_failure in f["reason"]
               for f in orthanc.status()["recent_failures"])
    query = orthanc.post("/cbmir/query", data=layout.data,
                         headers={"Content-Type": "application/dicom"})
    assert query.status_code == 422 and layout.expect_failure in query.json()["error"]
