"""GET /cbmir/openapi.json: the OpenAPI 3.1 description of the CBMIR REST API.

Why a file kept in the package (openapi.json) and not generated: it is the
contract clients code against, reviewed as a document; tests/plugin/test_openapi.py
validates it (openapi-spec-validator) and checks every route's real answers
against it, so it cannot drift from the code. Plain JSON: no YAML parser at run time.
"""
from __future__ import annotations

from pathlib import Path

from cbmir.service.gateway import send_buffer, send_json, send_method_not_allowed

SPEC_PATH = Path(__file__).with_name("openapi.json")
ROUTE = "/cbmir/openapi.json"


def register_openapi_route(gateway, log_error) -> None:
    def OpenApi(output, uri, **request):  # noqa: N802 - Orthanc callback naming
        try:
            if request.get("method") != "GET":
                send_method_not_allowed(output, "GET")
                return
            send_buffer(output, SPEC_PATH.read_bytes(), "application/json")
        except Exception as error:  # a missing file must not take Orthanc down
            log_error(f"CBMIR: {ROUTE} failed: {error!r}")
            send_json(output, 500, {"error": f"cannot read {SPEC_PATH.name}: {error}",
                                    "status": 500})

    gateway.register_route(ROUTE, OpenApi)
