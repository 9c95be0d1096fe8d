"""GET /cbmir/openapi.json is a valid OpenAPI document and every route answers as it says.

Real answers of a real Orthanc (200s and the JSON error answers) are validated
against the document's response schemas with openapi-schema-validator; an
undocumented status code fails too. A route added later belongs in the
document and in OPERATIONS below.
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
              ("/cbmir/openapi.json", "get")}


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    from conftest import _needs_orthanc
    _needs_orthanc()
    with running_server(tmp_path_factory.mktemp("openapi"), model_path) as running:
        rng = np.random.default_rng(7)
        running.ids = []
        for patient in range(3):
            study, series = generate_uid(), generate_uid()
            running.ids.append(running.upload(mr_image(
                (rng.random((64, 64)) * 800).astype(np.uint16), f"OAS-{patient}", study, series,
                label="glioma"))["ID"])
        running.report = running.upload(structured_report("OAS-SR"))["ID"]
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
    if content is None:
        return None
    assert response.headers["content-type"].startswith("application/json"), response.headers
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
    assert body["indexed"] == 3 and body["skipped"] == 1
    check(spec, "/cbmir/status", "get", server.post("/cbmir/status", data=b"{}"))  # 405
    check(spec, "/cbmir/status", "get", requests.get(server.url + "/cbmir/status", timeout=10))


def test_similar(server, spec):
    path = "/cbmir/similar/{id}"
    body = check(spec, path, "get", server.get(f"/cbmir/similar/{server.ids[0]}?k=5"))
    assert len(body["results"]) == 2
    uid = body["results"][0]["sop_instance_uid"]
    assert check(spec, path, "get", server.get(f"/cbmir/similar/{uid}?group_by=instance"))
    for url, status in ((f"/cbmir/similar/{server.ids[0]}?k=0", 400),
                        ("/cbmir/similar/not-an-id!", 400),
                        ("/cbmir/similar/00000000-00000000-00000000-00000000-00000000", 404),
                        (f"/cbmir/similar/{server.report}", 422)):
        response = server.get(url)
        assert response.status_code == status, (url, response.text)
        assert check(spec, path, "get", response)["status"] == status
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
                              ("post", "/cbmir/reindex", "/cbmir/reindex")):
        response = server.session.request(method, server.url + url, data=png(), timeout=30)
        assert response.status_code == 503, (url, response.text)
        check(spec, path, method, response)
