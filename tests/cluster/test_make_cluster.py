"""`make cluster` (scripts/cluster.sh) for real: a private PostgreSQL and 2 nodes on free ports in
a temporary CBMIR_HOME; an image stored on node 0 is found on node 1; SIGTERM stops everything
(no PostgreSQL or Orthanc process of that CBMIR_HOME left)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import requests
from pydicom.uid import generate_uid

from orthanc_server import REPO, free_port, needs_orthanc, wait_for
from support.cluster import ALL_HEADERS
from support.dicom_factory import mr_image
from support.postgres import missing_reason

pytestmark = pytest.mark.orthanc


def port_pair() -> int:
    """A free port whose successor is free too (node i listens on port + i)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def processes_under(home: Path) -> list[str]:
    """Command lines of live processes that name `home` (postgres -D ..., Orthanc <home>/...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if str(home) in command and "zombie" not in state:
            found.append(f"{entry.name}: {command}")
    return found


def test_make_cluster_starts_two_nodes_and_sigterm_stops_everything(tmp_path, tiny_model):
    needs_orthanc()
    if missing_reason():
        pytest.skip(missing_reason())
    # Not under tmp_path: PostgreSQL runs as `postgres` and concurrent pytest sessions reset
    # pytest's basetemp to 0700 (see the `postgres` fixture).
    home = Path(tempfile.mkdtemp(prefix="cbmir-make-cluster-"))
    http, dicom, pg = port_pair(), port_pair(), free_port()
    env = dict(os.environ, CBMIR_HOME=str(home), CBMIR_NODES="2", CBMIR_PG_PORT=str(pg),
               CBMIR_HTTP_PORT=str(http), CBMIR_DICOM_PORT=str(dicom), CBMIR_USER="cbmir",
               CBMIR_PASSWORD="cluster-test-password", CBMIR_MODEL=str(tiny_model))
    log = open(tmp_path / "cluster.out", "w")
    script = subprocess.Popen([str(REPO / "scripts" / "cluster.sh")], stdout=log,
                              stderr=subprocess.STDOUT, env=env, start_new_session=True)
    output = lambda: (tmp_path / "cluster.out").read_text()  # noqa: E731
    try:
        wait_for(lambda: "Ctrl-C stops" in output() or script.poll() is not None, timeout=240)
        assert script.poll() is None, output()
        text = output()
        assert "NOT READY" not in text, text
        assert f"127.0.0.1:{pg}" in text and f"localhost:{http + 1}" in text, text
        auth = ("cbmir", "cluster-test-password")
        rng = np.random.default_rng(5)
        data = mr_image((rng.random((32, 32)) * 4000).astype(np.uint16), "MAKE-CLUSTER",
                        generate_uid(), generate_uid())
        stored = requests.post(f"http://127.0.0.1:{http}/instances", data=data, auth=auth,
                               timeout=30).json()["ID"]

        def found_on_node_1():
            answer = requests.post(f"http://127.0.0.1:{http + 1}/cbmir/query", data=data, auth=auth,
                                   headers=ALL_HEADERS, timeout=30)
            return answer.ok and answer.json()["results"] and \
                answer.json()["results"][0]["instance"] == stored
        wait_for(found_on_node_1, timeout=120, step=0.5)
        assert processes_under(home), "the cluster's processes are not named by CBMIR_HOME?"
    finally:
        script.send_signal(signal.SIGTERM)
        try:
            code = script.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, output()
    assert "cluster stopped" in output()
    left = processes_under(home)
    assert not left, f"left running after SIGTERM: {left}"
    shutil.rmtree(home, ignore_errors=True)
