"""GET /cbmir/openapi.json is a valid OpenAPI document and every route answers as it says.

Real answers of a real Orthanc (200s and the JSON error answers) are validated
against the document's response schemas with openapi-schema-validator; an
undocumented status code fails too. A 405 must be documented and come without a body
(Orthanc 1.10 refuses one on 405; the Allow header names the method).
A route added later belongs in the document and in OPERATIONS below.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image
from pydicom.uid import generate_uid

from orthanc_server import running_server
from support.dicom_factory import mr_image, structured_report

pytestmark = pytest.mark.orthanc
openapi_spec_validator = pytest.importorskip("openapi_spec_validator",
                                             reason="pip install the 'test' extra")
openapi_schema_validator = pytest.importorskip("openapi_schema_validator")

OPERATIONS = {("/cbmir/similar/{id}", "get"), ("/cbmir/query", "post"),
              ("/cbmir/status", "get"), ("/cbmir/reindex", "post"),
              ("/cbmir/verify", "post"), ("/cbmir/thumbnail/{id}", "get"),
              ("/cbmir/reconcile", "post"), ("/cbmir/openapi.json", "get")}
MAX_FRAME_PIXELS = 96 * 96  # the 128 x 128 image below is skipped as too large


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    from orthanc_server import needs_orthanc
    needs_orthanc()
    from orthanc_server import TEST_CBMIR
    with running_server(tmp_path_factory.mktemp("openapi"), model_path,
                        cbmir=dict(TEST_CBMIR, MaxFramePixels=MAX_FRAME_PIXELS)) as running:
        rng = np.random.default_rng(7)
        running.ids = []
        for patient in range(3):
            study, series = generate_uid(), generate_uid()
            running.ids.append(running.upload(mr_image(
                (rng.random((64, 64)) * 800).astype(np.uint16), f"OAS-{patient}", study, series,
                label="glioma"))["ID"])
        running.report = running.upload(structured_report("OAS-SR"))["ID"]
        running.large = running.upload(mr_image(
            (rng.random((128, 128)) * 800).astype(np.uint16), "OAS-L", generate_uid(),
            generate_uid()))["ID"]
        running.wait_idle()
        yield running


@pytest.fixture(scope="module")
def spec(server):
    response = server.get("/cbmir/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def check(spec: dict, path: str, method: str, response: requests.Response) -> dict | None:
    """Validate one real answer against the document; returns its JSON body (if any)."""
    operation = spec["paths"][path][method]
    code = str(response.status_code)
    assert code in operation["responses"], \
        f"{method.upper()} {path} answered {code}, not documented: {response.text[:300]}"
    content = operation["responses"][code].get("content")
    if content is None:  # documented without a body (405: Orthanc 1.10 sends none)
        assert not response.content or code != "405", response.content[:200]
        return None
    media = response.headers.get("content-type", "").split(";")[0].strip()
    assert media in content, f"{method.upper()} {path} {code}: {media!r} not documented"
    if media != "application/json":
        return response.content
    schema = content["application/json"]["schema"]
    body = response.json()
    # '#/components/...' references resolve against the document's components.
    validator = openapi_schema_validator.OAS31Validator({**schema,
                                                         "components": spec["components"]})
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} {code}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    return body


def png(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(2).random(size) * 255).astype(np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def test_the_document_is_valid_openapi(spec):
    openapi_spec_validator.validate(spec)
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == OPERATIONS


def test_status(server, spec):
    body = check(spec, "/cbmir/status", "get", server.get("/cbmir/status"))
    assert body["indexed"] == 3 and body["skipped"] == 2  # the report and the large image
    check(spec, "/cbmir/status", "get", server.post("/cbmir/status", data=b"{}"))  # 405
    check(spec, "/cbmir/status", "get", requests.get(server.url + "/cbmir/status", timeout=10))


def test_similar(server, spec):
    path = "/cbmir/similar/{id}"
    body = check(spec, path, "get", server.get(f"/cbmir/similar/{server.ids[0]}?k=5"))
    assert len(body["results"]) == 2
    assert all(0 <= result["percentile"] <= 100 for result in body["results"])
    thumbnail = server.get(body["results"][0]["thumbnail"])
    assert check(spec, "/cbmir/thumbnail/{id}", "get", thumbnail).startswith(b"\x89PNG")
    uid = body["results"][0]["sop_instance_uid"]
    assert check(spec, path, "get", server.get(f"/cbmir/similar/{uid}?group_by=instance"))
    for url, status in ((f"/cbmir/similar/{server.ids[0]}?k=0", 400),
                        ("/cbmir/similar/not-an-id!", 400),
                        ("/cbmir/similar/00000000-00000000-00000000-00000000-00000000", 404),
                        (f"/cbmir/similar/{server.report}", 422),
                        (f"/cbmir/similar/{server.large}", 422)):
        response = server.get(url)
        assert response.status_code == status, (url, response.text)
        assert check(spec, path, "get", response)["status"] == status
    assert "too large" in server.get(f"/cbmir/similar/{server.large}").json()["error"]
    check(spec, path, "get", server.post(f"/cbmir/similar/{server.ids[0]}", data=b"x"))  # 405


def test_query(server, spec):
    path = "/cbmir/query"
    body = check(spec, path, "post", server.post(
        "/cbmir/query", data=png(), headers={"Content-Type": "image/png", "X-CBMIR-K": "2"}))
    assert len(body["results"]) == 2
    dicom = server.get(f"/instances/{server.ids[0]}/file").content
    check(spec, path, "post", server.post("/cbmir/query", data=dicom,
                                          headers={"Content-Type": "application/dicom"}))
    check(spec, path, "post", server.post("/cbmir/query", json={
        "image": base64.b64encode(png()).decode(), "k": 3, "exclude_same_patient": False}))
    for kwargs, status in (({"data": b""}, 400),
                           ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
                           ({"data": b"\0" * (4 * 1024 * 1024 + 1)}, 413),
                           ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
                           ({"data": structured_report("OAS-Q"),
                             "headers": {"Content-Type": "application/dicom"}}, 422)):
        response = server.post("/cbmir/query", **kwargs)
        assert response.status_code == status, (kwargs.get("headers"), response.text)
        assert check(spec, path, "post", response)["status"] == status
    check(spec, path, "post", server.get("/cbmir/query"))  # 405


def test_reindex(server, spec):
    first = server.post("/cbmir/reindex")
    second = server.post("/cbmir/reindex")  # 409 while the first runs, else a new 200
    assert first.status_code == 200
    check(spec, "/cbmir/reindex", "post", first)
    assert second.status_code in (200, 409)
    check(spec, "/cbmir/reindex", "post", second)
    check(spec, "/cbmir/reindex", "post", server.get("/cbmir/reindex"))  # 405
    server.wait_idle()


def test_verify(server, spec):
    path = "/cbmir/verify"
    body = check(spec, path, "post", server.post(path))
    assert body["ok"] is True and body["checked_instances"] == 3
    body = check(spec, path, "post", server.post(path, json={"instances": [server.report]}))
    assert body["ok"] is False and body["mismatches"][0]["reason"] == "not in the index"
    for document in ([1], {"sample": 0}, {"samples": 3}, {"instances": []}):
        response = server.post(path, json=document)
        assert response.status_code == 400, (document, response.text)
        check(spec, path, "post", response)
    check(spec, path, "post", server.post(path, data=b"{"))
    check(spec, path, "post", server.get(path))  # 405


def test_thumbnail(server, spec):
    path = "/cbmir/thumbnail/{id}"
    uid = server.get(f"/cbmir/similar/{server.ids[1]}").json()["query"]["sop_instance_uid"]
    for url in (f"/cbmir/thumbnail/{server.ids[0]}", f"/cbmir/thumbnail/{uid}?size=16&frame=0",
                f"/cbmir/thumbnail/{server.large}"):
        response = server.get(url)
        assert response.status_code == 200, (url, response.text)
        assert check(spec, path, "get", response).startswith(b"\x89PNG")
    for url, status in ((f"/cbmir/thumbnail/{server.ids[0]}?size=8", 400),
                        (f"/cbmir/thumbnail/{server.ids[0]}?frame=1", 400),
                        ("/cbmir/thumbnail/not-an-id!", 400),
                        ("/cbmir/thumbnail/00000000-00000000-00000000-00000000-00000000", 404),
                        ("/cbmir/thumbnail/1.2.3.4.5", 404),
                        (f"/cbmir/thumbnail/{server.report}", 422)):
        response = server.get(url)
        assert response.status_code == status, (url, response.text)
        assert check(spec, path, "get", response)["status"] == status
    check(spec, path, "get", server.post(f"/cbmir/thumbnail/{server.ids[0]}", data=b""))  # 405


def test_reconcile(server, spec):
    body = check(spec, "/cbmir/reconcile", "post", server.post("/cbmir/reconcile"))
    assert body["orthanc_instances"] == 5 and body["queued"] == body["removed"] == 0
    check(spec, "/cbmir/reconcile", "post", server.get("/cbmir/reconcile"))  # 405
    check(spec, "/cbmir/reconcile", "post",
          requests.post(server.url + "/cbmir/reconcile", timeout=10))  # 401


def test_openapi_route(server, spec):
    check(spec, "/cbmir/openapi.json", "get", server.get("/cbmir/openapi.json"))
    check(spec, "/cbmir/openapi.json", "get", server.post("/cbmir/openapi.json", data=b""))


def test_answers_without_a_model(make_server, spec, tmp_path):
    """No model: status says why, the other routes answer 503 with a JSON error."""
    server = make_server("no-model", model=tmp_path / "missing.onnx")
    body = check(spec, "/cbmir/status", "get", server.get("/cbmir/status"))
    assert body["model"]["available"] is False
    for method, path, url in (("get", "/cbmir/similar/{id}", f"/cbmir/similar/{'0' * 8}"),
                              ("post", "/cbmir/query", "/cbmir/query"),
                              ("post", "/cbmir/reindex", "/cbmir/reindex"),
                              ("post", "/cbmir/verify", "/cbmir/verify")):
        response = server.session.request(method, server.url + url, data=png(), timeout=30)
        assert response.status_code == 503, (url, response.text)
        check(spec, path, method, response)
