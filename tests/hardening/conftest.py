"""Hardening fixture: after every bad request Orthanc must still be up and answering."""
from __future__ import annotations

import pytest

from hardening_checks import assert_alive


@pytest.fixture
def alive(orthanc):
    """Checks that Orthanc survived the test."""
    yield orthanc
    assert_alive(orthanc)
