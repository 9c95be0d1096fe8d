"""Path traversal on every static and CBMIR route, and requests without credentials.

Paths are sent raw (http.client) so that no client-side normalisation hides an
attack; a 200 is only acceptable when it serves the viewer itself, never a file
outside it (the repository's orthanc.json, the plugin source, the test server's
rendered configuration holding the password, /etc/passwd).
"""
from __future__ import annotations

import base64
import http.client

import pytest

from hardening_checks import assert_alive
from support.dicom_factory import DICOM_MR  # noqa: F401 - keeps the import path like the others

pytestmark = pytest.mark.orthanc
SECRETS = (b"root:x:0:0", b"RegisteredUsers", b"def register(", b"cbmir-test-password")
TRAVERSALS = [
    "../../../../etc/passwd", "..%2f..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..%5c..%5cetc%5cpasswd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd", "....//....//....//etc/passwd",
    "..;/..;/..;/etc/passwd", "..%00/..%00/etc/passwd",
    "%00../../etc/passwd", "/etc/passwd", "%2fetc%2fpasswd", "..%2f..%2forthanc.json",
    "assets/..%2f..%2f..%2forthanc.json", "..%2f..%2fplugin%2fcbmir%2fplugin.py",
    "../../plugin/cbmir/service/wiring.py", "app-config.js%00.html", "index.html/..%2f..%2f..%2forthanc.json",
    "..%252f..%252forthanc.json", ".%2e/.%2e/orthanc.json", "%2e./%2e./orthanc.json",
]
# Not valid UTF-8: orthanc-python 4.0 cannot turn the URI into a Python string and answers 500
# itself ("Cannot create a Python string" in the log) before any plugin code runs.
INVALID_UTF8 = ["/ohif/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
                "/ohif/%e0%80%ae%e0%80%ae/%e0%80%ae%e0%80%ae/etc/passwd", "/ohif/%ff",
                "/cbmir/similar/%c0%ae%c0%ae%2f%c0%ae%c0%ae%2fsystem"]
CBMIR_PATHS = [
    "/cbmir/similar/..%2f..%2fsystem", "/cbmir/similar/%2e%2e", "/cbmir/similar/..",
    "/cbmir/similar/..%2f..%2f..%2fetc%2fpasswd", "/cbmir/status/..%2f..%2finstances",
    "/cbmir/similar/%2e%2e%2f%2e%2e%2forthanc.json", "/cbmir/../cbmir/status%00",
]


def raw_get(server, path: str, auth: bool = True, method: str = "GET", body: bytes | None = None):
    headers = {}
    if auth:
        token = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _absolute_targets(server) -> list[str]:
    rendered = str(server.home / "orthanc.json").lstrip("/")
    return [rendered, rendered.replace("/", "%2f"), "..%2f" * 12 + rendered.replace("/", "%2f")]


@pytest.mark.parametrize("attack", TRAVERSALS)
def test_static_route_traversal_never_leaks_a_file(orthanc, attack):
    status, body = raw_get(orthanc, "/ohif/" + attack)
    assert status != 500, body[:300]
    # A 200 is the SPA fallback (index.html) or a viewer file (Orthanc decodes %00 and stops
    # there, so app-config.js%00.html serves app-config.js): never a file outside the viewer.
    assert not any(secret in body for secret in SECRETS), (attack, status, body[:300])


def test_absolute_paths_to_the_server_configuration_never_leak(orthanc):
    for target in _absolute_targets(orthanc):
        status, body = raw_get(orthanc, "/ohif/" + target)
        assert status != 500 and b"cbmir-test-password" not in body, (target, status)


@pytest.mark.parametrize("path", CBMIR_PATHS)
def test_cbmir_route_traversal_never_leaks(orthanc, path):
    """Orthanc normalises '..' (also %2f-encoded) before routing, so such a path reaches another
    route of the same authenticated API (e.g. /system) or a 4xx; never a file, never a 500."""
    status, body = raw_get(orthanc, path)
    assert status in (200, 400, 404, 405), (path, status, body[:300])
    assert not any(secret in body for secret in SECRETS)


@pytest.mark.parametrize("path", INVALID_UTF8)
def test_invalid_utf8_paths_never_leak_and_orthanc_survives(orthanc, path):
    status, body = raw_get(orthanc, path)
    assert status in (400, 404, 500), (path, status)
    assert not any(secret in body for secret in SECRETS)
    assert_alive(orthanc)


@pytest.mark.parametrize("method,path", [
    ("GET", "/cbmir/status"), ("GET", "/cbmir/similar/1.2.3"), ("POST", "/cbmir/query"),
    ("POST", "/cbmir/reindex"), ("POST", "/cbmir/reconcile"), ("GET", "/ohif"),
    ("GET", "/ohif/index.html"),
    ("GET", "/ohif/viewer"), ("GET", "/ohif/..%2f..%2forthanc.json"),
])
def test_requests_without_credentials_are_401(orthanc, method, path):
    status, body = raw_get(orthanc, path, auth=False, method=method, body=b"" if method == "POST" else None)
    assert status == 401, (path, status)
    assert not any(secret in body for secret in SECRETS)


def test_wrong_credentials_are_401(orthanc):
    connection = http.client.HTTPConnection("127.0.0.1", orthanc.http_port, timeout=30)
    token = base64.b64encode(b"cbmir:wrong-password").decode()
    connection.request("GET", "/cbmir/status", headers={"Authorization": f"Basic {token}"})
    assert connection.getresponse().status == 401
    connection.close()


def test_orthanc_is_up_after_the_attacks(orthanc):
    assert_alive(orthanc)
