"""A real Orthanc (/usr/sbin/Orthanc) with the real CBMIR plugin, for tests.

Usage (see tests/conftest.py for the session fixture `orthanc`):

    server = OrthancServer(home=tmp_dir, model_path=path_to_onnx)
    server.start()                      # renders home/orthanc.json, waits until ready
    server.url, server.auth             # "http://127.0.0.1:<port>", (user, password)
    server.dicom_port, server.aet       # for storescu / C-STORE
    server.get("/cbmir/status")         # requests.Response (authenticated session)
    server.upload(path_or_bytes)        # POST /instances -> JSON answer
    server.storescu([paths])            # dcmtk C-STORE
    server.wait_idle()                  # every stored change processed by CBMIR
    server.kill(); server.start()       # kill -9, then restart on the same storage
    server.stop()                       # SIGTERM, waits for a clean exit

Each server has its own free ports and data folder; nothing is shared with a
system Orthanc.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
# The test servers' CBMIR settings: small uploads (413 reachable), Annoy tier exercised early.
TEST_CBMIR = {"RebuildThreshold": 16, "MaxUploadBytes": 4 * 1024 * 1024}
ORTHANC = "/usr/sbin/Orthanc"
SITE_PACKAGES = REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 120, step: float = 0.1):
    """Poll `predicate` until it returns something truthy (returned); TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not met")


def needs_orthanc() -> None:
    """Skip the calling test (with the reason) where Orthanc is not installed."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (/usr/sbin/Orthanc): run scripts/install-system.sh test")


class OrthancServer:
    def __init__(self, home: str | Path, model_path: str | Path | None = None,
                 cbmir: dict | None = None, overrides: dict | None = None,
                 user: str = "cbmir", password: str = "cbmir-test-password",
                 arguments: list[str] | None = None):
        self.home = Path(home)
        # --verbose by default: CBMIR logs routine events (an image indexed or skipped) at info
        # level, which Orthanc prints only then; tests read those lines. [] for a quiet log.
        self.arguments = ["--verbose"] if arguments is None else list(arguments)
        self.home.mkdir(parents=True, exist_ok=True)
        self.user, self.password = user, password
        self.http_port, self.dicom_port = free_port(), free_port()
        self.cbmir = {"CatchUpSeconds": 1, "IndexDirectory": str(self.home / "cbmir-index")}
        if model_path is not None:
            self.cbmir["ModelPath"] = str(model_path)
        self.cbmir.update(cbmir or {})
        self.overrides = overrides or {}
        self.process: subprocess.Popen | None = None
        self.log_path = self.home / "orthanc.log"
        self.aet = "CBMIR"
        self.session = requests.Session()
        self.session.auth = (user, password)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    def render(self) -> Path:
        from cbmir.tools.orthanc_config import render

        path, info = render(home=self.home, http_port=self.http_port, dicom_port=self.dicom_port,
                            user=self.user, password=self.password, cbmir=self.cbmir,
                            overrides=self.overrides)
        self.aet = info["aet"]
        return path

    def start(self, timeout: float = 60, wait_plugin: bool = True) -> "OrthancServer":
        """Start and wait until the plugin has loaded its model and started its threads
        (`wait_plugin=False`: until Orthanc answers, for runs without the plugin)."""
        config = self.render()
        env = dict(os.environ, PYTHONPATH=f"{REPO / 'plugin'}:{SITE_PACKAGES}")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([ORTHANC, *self.arguments, str(config)], stdout=log, stderr=log,
                                        env=env, cwd=self.home, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if not wait_plugin:
                    if self.session.get(self.url + "/system", timeout=2).status_code == 200:
                        return self
                else:
                    response = self.session.get(self.url + "/cbmir/status", timeout=2)
                    if response.status_code == 200 and response.json().get("started"):
                        return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Orthanc not ready in {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """kill -9: no shutdown callbacks, no flush."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait for a clean exit; returns Orthanc's exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"Orthanc did not stop in {timeout} s:\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- HTTP and DICOM ------------------------------------------------------------------------
    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.session.delete(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def upload(self, data: bytes | str | Path) -> dict:
        """POST /instances; returns Orthanc's JSON answer (raises on HTTP errors)."""
        if not isinstance(data, bytes):
            data = Path(data).read_bytes()
        response = self.post("/instances", data=data,
                             headers={"Content-Type": "application/dicom"})
        response.raise_for_status()
        return response.json()

    def storescu(self, paths: list[str | Path], *options: str) -> subprocess.CompletedProcess:
        """dcmtk C-STORE; options e.g. "-R": send each file in its own transfer syntax (without
        it storescu proposes only uncompressed ones and must decompress what it sends)."""
        return subprocess.run(["storescu", *options, "-aet", "TESTSCU", "-aec", self.aet,
                               "127.0.0.1", str(self.dicom_port), *map(str, paths)],
                              capture_output=True, text=True, timeout=120)

    def status(self) -> dict:
        response = self.get("/cbmir/status")
        response.raise_for_status()
        return response.json()

    def wait_idle(self, timeout: float = 120) -> dict:
        """Wait until CBMIR has processed every change Orthanc logged before this call."""
        last = self.get("/changes?last").json()["Last"]
        deadline = time.monotonic() + timeout
        status = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status["pending"] == 0 and status["checkpoint"] >= last:
                return status
            time.sleep(0.2)
        raise TimeoutError(f"CBMIR not idle after {timeout} s: {status}\n{self.log_tail()}")


def cluster_overrides(pg: dict, storage_directory: str | Path | None = None,
                      node_name: str | None = None) -> tuple[dict, dict]:
    """(overrides, cbmir) to pass to OrthancServer for a node of a cluster on the PostgreSQL
    `pg` (e.g. the `pg_database` fixture); see cbmir.tools.orthanc_config.cluster_overrides."""
    from cbmir.tools.orthanc_config import cluster_overrides as overrides_for
    return overrides_for(pg, storage_directory, node_name)


@contextlib.contextmanager
def running_server(home: str | Path, model_path: str | Path, cbmir: dict | None = None,
                   arguments: list[str] | None = None):
    """A started OrthancServer with TEST_CBMIR settings, stopped on exit (for fixtures)."""
    server = OrthancServer(home, model_path=model_path, cbmir=cbmir or TEST_CBMIR,
                           arguments=arguments)
    server.start()
    try:
        yield server
    finally:
        server.stop()
