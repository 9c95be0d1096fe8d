"""`cbmir import` and `cbmir demo` against a real Orthanc started here.

Importing needs no CBMIR plugin, so most tests use a plain Orthanc (own ports, own
data folder, basic auth on) started by a small helper local to this file: they stay
independent of the plugin's state. One end-to-end test uses the project's
`make_server` fixture (Orthanc + CBMIR plugin) to show imports get indexed. The demo runs
against a stand-in figshare server (http.server in a thread) that serves a fake
record and zips of synthetic .mat files.
"""
from __future__ import annotations

import csv
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
FIGSHARE = REPO.parent / "shared" / "data" / "figshare-cheng"
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
AUTH = ("importer", "s3cret")

pytestmark = [
    pytest.mark.orthanc,
    pytest.mark.skipif(not os.access(ORTHANC, os.X_OK), reason="Orthanc is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def plain_orthanc(tmp_path_factory):
    """A plain Orthanc (no plugins) with basic auth; yields its base URL."""
    root = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {
        "Name": "cbmir-import-test", "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"), "HttpPort": port, "DicomServerEnabled": False,
        "DicomPort": _free_port(), "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "RegisteredUsers": {AUTH[0]: AUTH[1]}, "Plugins": [], "StableAge": 1,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    process = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log,
                               stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/system", auth=AUTH, timeout=2).ok:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"Orthanc did not start:\n{(root / 'orthanc.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _get(url, path):
    response = requests.get(f"{url}{path}", auth=AUTH, timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def empty_orthanc(plain_orthanc):
    for patient in _get(plain_orthanc, "/patients"):
        requests.delete(f"{plain_orthanc}/patients/{patient}", auth=AUTH, timeout=10).raise_for_status()
    return plain_orthanc


def _cbmir(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugin"))
    return subprocess.run([sys.executable, "-m", "cbmir.tools.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _auth_args(url):
    return ["--url", url, "--user", AUTH[0], "--password", AUTH[1]]


def _tags(url, instance):
    return _get(url, f"/instances/{instance}/simplified-tags")


# ---------------------------------------------------------------- cbmir import


@pytest.fixture
def figshare_manifest(tmp_path):
    """12 real figshare JPGs (4 per class); two patients are named, the rest get derived IDs."""
    if not (FIGSHARE / "manifest.csv").is_file():
        pytest.skip(f"figshare JPG copy not found at {FIGSHARE}")
    with (FIGSHARE / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = []
    for label in ("meningioma", "glioma", "pituitary"):
        chosen += [row for row in rows if row["label"] == label][:4]
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id", "split"])
        for position, row in enumerate(chosen):
            patient = {0: "PAT-A", 1: "PAT-A", 4: "PAT-B", 5: "PAT-B", 6: "PAT-B"}.get(position, "")
            writer.writerow([os.path.relpath(FIGSHARE / row["path"], tmp_path), row["label"],
                             patient, row["split"]])
    return manifest, chosen


def test_import_figshare_jpgs_and_reimport_stores_nothing_twice(empty_orthanc, figshare_manifest):
    url = empty_orthanc
    manifest, chosen = figshare_manifest
    result = _cbmir("import", "--manifest", str(manifest), *_auth_args(url), "--workers", "3")
    assert result.returncode == 0, result.stderr
    assert "stored 12, already present 0, failed 0" in result.stdout

    instances = _get(url, "/instances")
    assert len(instances) == 12
    assert len(_get(url, "/patients")) == 2 + 7  # PAT-A, PAT-B, and one derived ID per other image
    assert len(_get(url, "/studies")) == 9  # one study per patient
    expected = {Path(row["path"]).stem: row["label"] for row in chosen}
    by_patient: dict[str, set] = {}
    for instance in instances:
        tags = _tags(url, instance)
        # Secondary Capture (a picture is no MR acquisition), Modality MR so it is indexed by default,
        # 8-bit grey in 8 bits (Orthanc 1.10 draws 8 bits stored in 16 wrongly).
        assert tags["Modality"] == "MR" and tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7"
        assert (tags["BitsAllocated"], tags["BitsStored"], tags["PhotometricInterpretation"]) == \
            ("8", "8", "MONOCHROME2")
        assert tags["ImageComments"] == expected[tags["InstanceNumber"]]
        assert tags["SeriesDescription"] == "Imported JPEG images"
        by_patient.setdefault(tags["PatientID"], set()).add(tags["StudyInstanceUID"])
    assert all(len(studies) == 1 for studies in by_patient.values())
    assert sum(1 for p in by_patient if p.startswith("CBMIR-")) == 7

    # The stored file decodes with the plugin's own decoder to the JPG's pixels.
    from cbmir.core.decode import decode_dicom_bytes, read_image_file
    first = _tags(url, instances[0])
    data = requests.get(f"{url}/instances/{instances[0]}/file", auth=AUTH, timeout=10).content
    original = FIGSHARE / next(r["path"] for r in chosen if Path(r["path"]).stem == first["InstanceNumber"])
    np.testing.assert_array_equal(decode_dicom_bytes(data)[0], read_image_file(original))

    again = _cbmir("import", "--manifest", str(manifest), *_auth_args(url))
    assert again.returncode == 0, again.stderr
    assert "stored 0, already present 12, failed 0" in again.stdout
    assert sorted(_get(url, "/instances")) == sorted(instances)


def test_import_options_splits_limit_and_label_tag(empty_orthanc, figshare_manifest):
    url = empty_orthanc
    manifest, chosen = figshare_manifest
    wanted = sorted({row["split"] for row in chosen})[:2]
    count = sum(row["split"] in wanted for row in chosen)
    result = _cbmir("import", "--manifest", str(manifest), *_auth_args(url),
                    "--splits", ",".join(wanted), "--label-tag", "0008,2111")
    assert result.returncode == 0, result.stderr
    instances = _get(url, "/instances")
    assert len(instances) == count
    tags = _tags(url, instances[0])
    assert tags["DerivationDescription"] in {"meningioma", "glioma", "pituitary"}
    assert "ImageComments" not in tags
    limited = _cbmir("import", "--manifest", str(manifest), *_auth_args(url), "--limit", "1")
    assert limited.returncode == 0 and "failed 0" in limited.stdout


def test_import_failures_give_a_non_zero_exit(empty_orthanc, tmp_path):
    url = empty_orthanc
    from PIL import Image
    Image.fromarray(np.full((8, 8), 50, np.uint8), mode="L").save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,patient_id,split\nok.png,glioma,P1,\nbroken.jpg,glioma,P1,\n")
    result = _cbmir("import", "--manifest", str(manifest), *_auth_args(url))
    assert result.returncode == 1
    assert "stored 1, already present 0, failed 1" in result.stdout
    assert "broken.jpg" in result.stderr
    wrong = _cbmir("import", "--manifest", str(manifest), "--url", url, "--user", "x", "--password", "y")
    assert wrong.returncode == 2 and "401" in wrong.stderr
    missing = _cbmir("import", "--manifest", str(tmp_path / "none.csv"), *_auth_args(url))
    assert missing.returncode == 2


# ------------------------------------------------------------------ cbmir demo


def _write_mat(path, image, label, pid):
    """Synthetic file shaped like figshare's cjdata (MATLAB v7.3: HDF5, transposed arrays)."""
    with h5py.File(path, "w", userblock_size=512) as mat:
        group = mat.create_group("cjdata")
        group["image"] = image.astype(np.int16).T
        group["label"] = np.array([[float(label)]])
        group["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)
        group["tumorBorder"] = np.array([[1.0], [2.0]])
        group["tumorMask"] = np.zeros(image.shape[::-1], dtype=np.uint8)


class _StandIn(http.server.ThreadingHTTPServer):
    """Serves `record` at /articles/1512427 and `files` at /files/<name>; counts downloads."""

    def __init__(self, record, files):
        self.record, self.files, self.hits = record, files, {}
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        if self.path == "/articles/1512427":
            body, kind = json.dumps(server.record).encode(), "application/json"
        elif self.path.startswith("/files/") and self.path[7:] in server.files:
            name = self.path[7:]
            server.hits[name] = server.hits.get(name, 0) + 1
            body, kind = server.files[name], "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in(tmp_path):
    """A fake figshare: 5 synthetic slices of 2 patients in two zips, plus cvind.mat and a README."""
    build = tmp_path / "build"
    build.mkdir()
    rng = np.random.default_rng(7)
    slices = {1: (1, "100360"), 2: (1, "100360"), 3: (2, "MR040109B"), 4: (3, "MR040109B"), 5: (2, "100360")}
    for index, (label, pid) in slices.items():
        _write_mat(build / f"{index}.mat", rng.integers(0, 1200, (40, 36)), label, pid)
    with h5py.File(build / "cvind.mat", "w", userblock_size=512) as mat:
        mat["cvind"] = np.array([[1, 2, 3, 4, 5]], dtype=np.float64)
    files = {"cvind.mat": (build / "cvind.mat").read_bytes(), "README.txt": b"synthetic"}
    for name, members in (("brainTumorDataPublic_1-3.zip", (1, 2, 3)),
                          ("brainTumorDataPublic_4-5.zip", (4, 5))):
        with zipfile.ZipFile(build / name, "w") as bundle:
            for index in members:
                bundle.write(build / f"{index}.mat", f"{index}.mat")
        files[name] = (build / name).read_bytes()
    server = _StandIn({}, files)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.record = {"id": 1512427, "title": "brain tumor dataset", "files": [
        {"id": n, "name": name, "size": len(data), "download_url": f"{base}/files/{name}",
         "computed_md5": hashlib.md5(data).hexdigest(), "supplied_md5": ""}
        for n, (name, data) in enumerate(files.items())]}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, base
    server.shutdown()
    server.server_close()


def test_demo_downloads_verifies_unpacks_and_imports(empty_orthanc, stand_in, tmp_path):
    url = empty_orthanc
    server, base = stand_in
    cache = tmp_path / "cache"
    result = _cbmir("demo", *_auth_args(url), "--source", base, "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    assert "stored 5, already present 0, failed 0" in result.stdout
    assert "README.txt" not in server.hits
    assert sorted(p.name for p in (cache / "mat").glob("*.mat")) == \
        ["1.mat", "2.mat", "3.mat", "4.mat", "5.mat", "cvind.mat"]

    patients = {_get(url, f"/patients/{p}")["MainDicomTags"]["PatientID"] for p in _get(url, "/patients")}
    assert patients == {"100360", "MR040109B"}
    assert len(_get(url, "/studies")) == 2
    labels = {}
    for instance in _get(url, "/instances"):
        tags = _tags(url, instance)
        labels[tags["InstanceNumber"]] = tags["ImageComments"]
        assert tags["SeriesDescription"] == "T1 post-contrast (figshare .mat)"
        assert tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7" and tags["Modality"] == "MR"
        assert (tags["BitsAllocated"], tags["BitsStored"]) == ("16", "16")  # 16-bit data kept whole
        # The stored pixels are the .mat's own array, value for value.
        from cbmir.core.decode import decode_dicom_bytes
        from cbmir.tools.sources import read_figshare_mat
        data = requests.get(f"{url}/instances/{instance}/file", auth=AUTH, timeout=10).content
        source = read_figshare_mat(cache / "mat" / f"{tags['InstanceNumber']}.mat").image
        np.testing.assert_array_equal(decode_dicom_bytes(data)[0], source.astype(np.float32))
    assert labels == {"1": "meningioma", "2": "meningioma", "3": "glioma", "4": "pituitary",
                      "5": "glioma"}

    again = _cbmir("demo", *_auth_args(url), "--source", base, "--cache", str(cache),
                   "--splits", "fold1,fold4")
    assert again.returncode == 0, again.stderr
    assert "stored 0, already present 2, failed 0" in again.stdout
    assert server.hits["brainTumorDataPublic_1-3.zip"] == 1  # the cache was reused
    assert len(_get(url, "/instances")) == 5


def test_demo_refuses_a_corrupted_download(empty_orthanc, stand_in, tmp_path):
    server, base = stand_in
    server.record["files"][2]["computed_md5"] = "0" * 32
    result = _cbmir("demo", *_auth_args(empty_orthanc), "--source", base, "--cache", str(tmp_path / "c"))
    assert result.returncode == 2
    assert "MD5" in result.stderr
    assert _get(empty_orthanc, "/instances") == []


def test_unpack_flattens_member_paths(tmp_path):
    from cbmir.tools.commands.demo import unpack
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../evil.mat", b"x")
        bundle.writestr("folder/6.mat", b"y")
        bundle.writestr("notes.txt", b"z")
    target = tmp_path / "out"
    target.mkdir()
    assert unpack(archive, target) == 2
    assert sorted(p.name for p in target.iterdir()) == [".a.zip.unpacked", "6.mat", "evil.mat"]
    assert not (tmp_path / "evil.mat").exists()
    assert unpack(archive, target) == 0  # already unpacked


def test_imported_images_are_indexed_by_the_cbmir_plugin(make_server, figshare_manifest):
    """End to end with the project's own fixture: a real Orthanc WITH the CBMIR plugin."""
    server = make_server("cbmir-import")
    manifest, chosen = figshare_manifest
    result = _cbmir("import", "--manifest", str(manifest), "--url", server.url,
                    "--user", server.auth[0], "--password", server.auth[1])
    assert result.returncode == 0, result.stderr
    status = server.wait_idle()
    assert status["indexed"] == 12 and status["failed"] == 0
    instance = server.get("/instances").json()[0]
    answer = server.get(f"/cbmir/similar/{instance}?exclude_same_patient=false&group_by=instance&k=20")
    assert answer.status_code == 200, answer.text
    labels = {hit["label"] for hit in answer.json()["results"]}
    assert labels == {"meningioma", "glioma", "pituitary"}  # read from ImageComments
