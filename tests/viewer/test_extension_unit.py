"""Runs the extension's own unit tests (node --test, beside the helpers in viewer-extension/src) so
that `make test` covers them too."""
import shutil
import subprocess
from pathlib import Path

import pytest

VIEWER = Path(__file__).resolve().parents[2] / "viewer-extension"


def test_extension_unit_tests_pass():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    process = subprocess.run(["node", "--test"], cwd=VIEWER, capture_output=True, text=True,
                             timeout=120)
    summary = [line for line in process.stdout.splitlines() if line.startswith("# ")]
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert any(line.startswith("# pass") and int(line.split()[-1]) > 0 for line in summary), summary
