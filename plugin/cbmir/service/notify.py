"""LISTEN/NOTIFY between the nodes of a cluster: wake a replica or a claimer at once.

Why: polling alone (`CBMIR.ReplicaPollSeconds`) adds up to a poll interval to every image's
way from one node's store to another node's answers, and to another node taking queued work.
PgStore sends `NOTIFY cbmir_index, 'vectors'` with every insert/delete and `'queue'` with new
work (delivered at commit); one connection per node listens and calls the callbacks. Polling
stays: a lost notification (reconnect, PostgreSQL restart) only costs one interval.
"""
from __future__ import annotations

import threading

CHANNEL = "cbmir_index"


class Listener:
    def __init__(self, conninfo: str, callbacks: dict, log=print):
        """`callbacks`: payload -> function of no argument ('vectors', 'queue')."""
        self.conninfo, self.callbacks, self.log = conninfo, callbacks, log
        self.received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cbmir-listen", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg
        failed = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failed = False
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            self.received += 1
                            callback = self.callbacks.get(notice.payload)
                            if callback is not None:
                                callback()
            except Exception as error:  # noqa: BLE001 - polling covers the gap; reconnect
                if not failed:
                    self.log(f"CBMIR: cluster notifications interrupted: {error!r}")
                failed = True
                self._stop.wait(2.0)
