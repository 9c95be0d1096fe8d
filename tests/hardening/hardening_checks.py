"""Checks shared by the hardening tests: Orthanc still up, errors are clear JSON."""
from __future__ import annotations




def assert_alive(server) -> None:
    """The process runs and a follow-up request succeeds."""
    assert server.process is not None and server.process.poll() is None, server.log_tail()
    response = server.get("/system", timeout=10)
    assert response.status_code == 200, response.text
    assert server.get("/cbmir/status", timeout=10).status_code == 200


def assert_json_error(response, *statuses: int) -> dict:
    """A clear error: one of `statuses`, a JSON body naming the problem (the plugin's
    {"error": ...} or, for requests Orthanc refuses before the plugin sees them, Orthanc's
    own {"Message": ...})."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    body = response.json()
    message = body.get("error") or body.get("Message")
    assert isinstance(message, str) and message, body
    return body


def stored_vectors(server, instance: str):
    """The vectors the plugin stored for `instance`, by frame, read from its SQLite store
    (the REST API does not expose vectors)."""
    import sqlite3

    import numpy as np

    db = sqlite3.connect(f"file:{server.home / 'cbmir-index' / 'cbmir.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT vector FROM vectors WHERE instance=? ORDER BY frame",
                          (instance,)).fetchall()
    finally:
        db.close()
    return np.stack([np.frombuffer(blob, dtype=np.float32) for (blob,) in rows]) if rows else None
