"""What a REST request needs before a handler may trust it: decoded arguments, a deep stack.

Why decode: Orthanc 1.10 hands query arguments to Python routes still percent-encoded
(`label=low%20grade` arrives as "low%20grade", the viewer's `+` for a space as "+"). They are
decoded exactly once here, with form-encoding rules (`urllib.parse.unquote_plus`, UTF-8), which
is what browsers' URLSearchParams, curl --data-urlencode and requests' `params=` send.

Why a large stack: Orthanc's HTTP worker threads have small stacks; parsing deeply nested input
there (a 1 KB JSON body nested 600 deep, a DICOM with ~160 nested sequences) overflows the C
stack and kills Orthanc (segfault) before Python's recursion limit can raise. Parsing in a thread
with a large stack lets the recursion limit act first: a RecursionError, which the routes answer
with 400, and Orthanc stays up.
"""
from __future__ import annotations

import threading
from urllib.parse import unquote_plus

STACK_BYTES = 256 * 1024 * 1024  # virtual: only the pages a deep parse touches are used
_stack_lock = threading.Lock()


def decode_args(args: dict | None) -> dict:
    """Percent-decoded copy of Orthanc's GET arguments (keys and values; '+' is a space)."""
    decoded = {}
    for key, value in (args or {}).items():
        if isinstance(value, str):
            value = unquote_plus(value, encoding="utf-8", errors="replace")
        decoded[unquote_plus(str(key), encoding="utf-8", errors="replace")] = value
    return decoded


def run_with_large_stack(function, stack_bytes: int = STACK_BYTES):
    """`function()` in a fresh thread with a `stack_bytes` stack; returns its result or raises
    its exception in the caller. (threading.stack_size is process-wide, hence the lock and the
    immediate restore: only this thread gets the large stack.)"""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the caller
            outcome["error"] = error

    with _stack_lock:
        previous = threading.stack_size(stack_bytes)
        try:
            thread = threading.Thread(target=target, name="cbmir-parse", daemon=True)
            thread.start()
        finally:
            threading.stack_size(previous)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
