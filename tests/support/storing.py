"""Keep a real Orthanc busy storing, so the CBMIR worker holds its work back.

Why: the worker computes nothing while images keep arriving until the oldest just-stored
image has waited `IndexDelaySeconds` (plugin/cbmir/service/workqueue.py, Pacer), and backlog
(catch-up, re-index) waits until storing pauses. With a large `IndexDelaySeconds` and
uploads every few milliseconds, images stay "known but not indexed yet" and a re-index
stays running for as long as a test needs: the 409 answers of the README's error contract
and "the old index answers during a re-index" can then be checked for real, not raced.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import requests
from pydicom.uid import generate_uid

from support.dicom_factory import mr_image

FILLER_LABEL = "filler"


class Storing:
    """Uploads from `threads` threads back to back (gaps far below the pacer's 150 ms window)."""

    def __init__(self, server, patient: str = "FILLER", threads: int = 3, wait_up: bool = False,
                 modality: str = "MR"):
        self.server, self.patient, self.threads, self.wait_up = server, patient, threads, wait_up
        self.modality = modality  # e.g. "CT": arrivals that are never indexed, never a result
        self.ids: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _run(self, number: int) -> None:
        session = requests.Session()
        session.auth = self.server.auth
        rng = np.random.default_rng(number)
        study, series = generate_uid(), generate_uid()
        count = 0
        while not self._stop.is_set():
            count += 1
            data = mr_image((rng.random((32, 32)) * 1000).astype(np.uint16),
                            f"{self.patient}-{number}", study, series, label=FILLER_LABEL,
                            instance_number=count, modality=self.modality)
            try:
                response = session.post(self.server.url + "/instances", data=data, timeout=30,
                                        headers={"Content-Type": "application/dicom"})
            except requests.RequestException as error:  # the server is still starting
                if not self.wait_up:
                    self.errors.append(repr(error))
                self._stop.wait(0.05)
                continue
            if response.status_code != 200:
                self.errors.append(f"{response.status_code} {response.text[:200]}")
                continue
            with self._lock:
                self.ids.append(response.json()["ID"])
            self._first.set()

    def start(self) -> "Storing":
        for number in range(self.threads):
            worker = threading.Thread(target=self._run, args=(number,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def first_stored(self, timeout: float = 60) -> str:
        assert self._first.wait(timeout), f"nothing stored in {timeout} s: {self.errors[-3:]}"
        with self._lock:
            return self.ids[0]

    def stop(self) -> list[str]:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)
        assert not self.errors, self.errors[:3]
        return list(self.ids)


@contextlib.contextmanager
def keep_storing(server, patient: str = "FILLER", threads: int = 3, wait_up: bool = False,
                 modality: str = "MR"):
    """`with keep_storing(server) as storing:` uploads continuously until the block ends."""
    storing = Storing(server, patient, threads, wait_up, modality).start()
    try:
        yield storing
    finally:
        storing.stop()
