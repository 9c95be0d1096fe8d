"""Keep Orthanc up when CBMIR's index folder is unusable at start, and recover when it is fixed.

Why: the index (SQLite + Annoy files) is opened when the plugin loads. An unwritable, missing or
full folder used to raise there, and an exception while the plugin script loads makes Orthanc
exit: the whole archive down for a problem that only concerns similarity search. Now the
failure is kept as the reason, /cbmir/* answer 503 with it, and a daemon thread tries again
every `seconds` until the index opens; the catch-up then indexes what arrived meanwhile (the
/changes checkpoint lives in the index, so nothing stored in between is missed).
"""
from __future__ import annotations

import threading


class Recovery:
    """`attempt()` calls `build()`; on failure keeps `reason` and retries in the background."""

    def __init__(self, build, seconds: float, log):
        self.build = build
        self.seconds = seconds
        self.log = log
        self.reason: str | None = None
        self.attempts = 0
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def attempt(self) -> bool:
        with self._lock:
            self.attempts += 1
            try:
                self.build()
            except Exception as error:  # noqa: BLE001 - any failure: stay up, say why, retry
                reason = f"index unavailable: {type(error).__name__}: {error}"
                if reason != self.reason:
                    self.log(f"CBMIR: {reason}; Orthanc keeps serving images, /cbmir/ answers "
                             f"503, retrying every {self.seconds:g} s")
                self.reason = reason
                return False
            if self.reason is not None:
                self.log(f"CBMIR: index available again after {self.attempts} attempt(s)")
            self.reason = None
            return True

    def start_retrying(self) -> None:
        if self.thread is None and self.reason is not None:
            self.thread = threading.Thread(target=self._run, name="cbmir-recovery", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.seconds):
            if self.attempt():
                return

    def stop(self) -> None:
        self.stopped.set()
