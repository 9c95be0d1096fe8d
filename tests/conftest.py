"""Shared fixtures. The Orthanc ones start a REAL Orthanc with the real CBMIR plugin.

Fixtures for other test writers (all documented in tests/orthanc_server.py):
- `model_path` (session): models/default.onnx, the shipped model. When it does not
  load, every test using it is SKIPPED with the reason (never silently run on a
  stand-in model); tests/unit/core/test_default_model.py fails with the same reason.
- `orthanc` (session): a started `OrthancServer` (own ports, own storage, user
  "cbmir" / "cbmir-test-password"); `orthanc.url`, `.auth`, `.dicom_port`,
  `.get/.post/.delete`, `.upload(bytes|path)`, `.storescu(paths)`, `.wait_idle()`.
  Its CBMIR section uses RebuildThreshold 16 and MaxUploadBytes 4 MiB so tests
  exercise the Annoy tier and the 413 answer.
- `wait_idle(server)`: helper function; blocks until /cbmir/status shows nothing
  pending and every change logged so far processed.
- `make_server(**cbmir)` (function): factory for extra servers a test may kill,
  restart or misconfigure; all are stopped at the end of the test.
- `postgres` (session): a private PostgreSQL (tests/support/postgres.py) on a free port;
  skipped with the reason where Debian's binaries are absent. `pg_database` (function):
  a fresh, empty database on it for one test; its value is the connection settings
  {"Host", "Port", "Database", "Username", "Password"}.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orthanc_server import OrthancServer, needs_orthanc, running_server

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "default.onnx"


def wait_idle(server: OrthancServer, timeout: float = 120) -> dict:
    return server.wait_idle(timeout)




def _default_model_error() -> str | None:
    """Why models/default.onnx cannot serve the tests, or None when it loads."""
    from cbmir.core.embed import Embedder, ModelUnavailable
    try:
        Embedder(DEFAULT_MODEL, threads=1)
    except ModelUnavailable as error:
        return str(error)
    return None


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The shipped model; a reported skip (not a stand-in model) when it does not load."""
    error = _default_model_error()
    if error is not None:
        pytest.skip(f"the shipped model does not load ({error}); "
                    "tests/unit/core/test_default_model.py fails with the details")
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Always the random tiny model (fast; for tests that swap models)."""
    pytest.importorskip("torch", reason="torch is needed to export the tiny test model")
    from support.tiny_model import export_tiny_model
    return export_tiny_model(tmp_path_factory.mktemp("tiny-model-only"))


@pytest.fixture(scope="session")
def postgres():
    """Its folder is NOT under pytest's basetemp: as root the server runs as `postgres`, which
    must traverse the path, and every pytest session (other runs too) resets
    /tmp/pytest-of-<user> to 0700, which would cut a running server off its files."""
    import tempfile
    from support.postgres import PostgresServer, missing_reason
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="cbmir-test-pg-"))
    server = PostgresServer(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(postgres, request) -> dict:
    """A fresh database per test, so tests never see each other's rows."""
    import re
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + f"_{id(request) % 10**6}"
    return postgres.create_database(name)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, model_path):
    needs_orthanc()
    with running_server(tmp_path_factory.mktemp("orthanc-session"), model_path) as server:
        yield server


@pytest.fixture
def make_server(tmp_path, model_path):
    needs_orthanc()
    servers = []

    def make(name: str = "server", model=model_path, cbmir: dict | None = None,
             overrides: dict | None = None, start: bool = True) -> OrthancServer:
        server = OrthancServer(tmp_path / name, model_path=model, cbmir=cbmir, overrides=overrides)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        try:
            server.stop(timeout=20)
        except Exception:
            server.kill()
    shutil.rmtree(tmp_path, ignore_errors=True)
