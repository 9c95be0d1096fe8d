"""Hardening fixtures: each module gets its own real Orthanc, so the broken objects and the
shared sample files it stores never reach the session server other tests count on; after
every bad request Orthanc must still be up and answering."""
from __future__ import annotations

from pathlib import Path

import pytest

from hardening_checks import assert_alive
from orthanc_server import ORTHANC, running_server


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, model_path):
    """Overrides the session server for this directory (same CBMIR settings: 4 MiB uploads)."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (/usr/sbin/Orthanc): run scripts/install-system.sh test")
    with running_server(tmp_path_factory.mktemp("orthanc-hardening"), model_path) as server:
        yield server


@pytest.fixture
def alive(orthanc):
    """Checks that Orthanc survived the test."""
    yield orthanc
    assert_alive(orthanc)
