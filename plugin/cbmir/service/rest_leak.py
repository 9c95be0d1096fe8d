"""Work around the reference leak in orthanc-python 4.0's REST callback wrapper.

The cause (orthanc-python 4.0, Sources/RestCallbacks.cpp, `RestCallbackHandler`): the keyword
arguments of every REST callback are built with `PyDict_SetItemString(kw, "body",
PyBytes_FromStringAndSize(...))` and the same pattern for "method", "groups", "get" and
"headers" (and for each value inside "get" and "headers"). `PyDict_SetItemString` does not steal
the reference it is given, and the wrapper never drops its own, so each of those objects keeps
one reference too many and is never freed: every request leaks its body (64 MiB per upload at
the old cap), its headers and its arguments, before the route runs, whatever it answers (405
included). Fixed upstream in orthanc-python 4.1 (NEWS: "Fix memory leaks ..."; the changesets
"fixing the first leak" / "fixing more PyDict_SetItemString()", 2023-08-30). Debian 12 ships 4.0.

The workaround: as the first thing every route does, `release(request)` drops that one extra
reference (`Py_DecRef`), so the objects die with the request. Double-free guard, twice over:
- only when the running orthanc-python is older than 4.1 (GET /plugins/python, read once);
- only for an object whose reference count is exactly the leaked count, one above what the
  same objects have when built correctly (`_expected`, measured at import by building them the
  way a fixed wrapper does). A fixed wrapper, a shared singleton (b"", one-character strings) or
  an object someone else also holds never match, and are left alone.
`CBMIR_REST_LEAK_WORKAROUND=off` in Orthanc's environment disables it (for the benchmark).
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

FIXED_IN = (4, 1)
TOP_LEVEL = ("body", "method", "groups", "get", "headers")  # objects the 4.0 wrapper leaks
NESTED = ("get", "headers")  # dicts whose values it leaks too


def _count(container, key) -> int:
    """Reference count of container[key]; the same code measures the calibration and a request."""
    return sys.getrefcount(container[key])


def _fresh(n: int = 64) -> bytes:
    return bytes(bytearray(n))  # a new object each call (never a cached singleton)


def _calibrate_top(**request) -> int:
    return _count(request, "body")


def _expected() -> tuple[int, int]:
    """(top-level, nested) counts of correctly built objects: held by the caller's dict only
    (a fixed wrapper: PyObject_Call(callback, args, kw) with kw owning each value once)."""
    top = _calibrate_top(**{"body": _fresh()})
    nested = _count({"value": _fresh()}, "value")
    return top, nested


def parse_version(text) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in str(text).split("+")[0].split(".")[:2])
    except ValueError:
        return None


class LeakWorkaround:
    """`release(request)` at the top of every REST route; `describe()` for /cbmir/status."""

    def __init__(self, plugin_version=None, enabled: bool | None = None, decref=None):
        """`plugin_version()`: the running orthanc-python's version (Gateway.plugin_version)."""
        self.plugin_version_source = plugin_version
        if enabled is None:
            enabled = os.environ.get("CBMIR_REST_LEAK_WORKAROUND", "auto").lower() != "off"
        self.enabled = enabled
        self.plugin_version: str | None = None
        self.active: bool | None = None  # decided on the first request (needs the REST API)
        self.released = 0  # objects freed that would have leaked
        self.by_argument = {key: 0 for key in TOP_LEVEL}  # top-level ones, per argument
        self.requests = 0
        self.top, self.nested = _expected()
        self._decref = decref or ctypes.pythonapi.Py_DecRef
        self._lock = threading.Lock()

    def _decide(self) -> bool:
        if not self.enabled:
            return False
        version = None
        try:
            version = self.plugin_version_source()
        except Exception:  # noqa: BLE001 - unknown version: do nothing rather than guess
            pass
        self.plugin_version = version
        parsed = parse_version(version)
        return parsed is not None and parsed < FIXED_IN

    def release(self, request: dict) -> int:
        """Drop the leaked reference of each argument object of this request; returns how many."""
        if self.active is None:
            with self._lock:
                if self.active is None:
                    self.active = self._decide()
        if not self.active:
            return 0
        freed, top = 0, []
        for key in NESTED:  # values first: their dict still holds them afterwards
            values = request.get(key)
            if type(values) is dict:
                for name in list(values):
                    if _count(values, name) == self.nested + 1:
                        self._decref(ctypes.py_object(values[name]))
                        freed += 1
            del values  # a local reference would hide the dict's own leaked one
        for key in TOP_LEVEL:
            if key in request and _count(request, key) == self.top + 1:
                self._decref(ctypes.py_object(request[key]))
                freed += 1
                top.append(key)
        with self._lock:
            self.released += freed
            for key in top:
                self.by_argument[key] += 1
            self.requests += 1
        return freed

    def describe(self) -> dict:
        return {"plugin_version": self.plugin_version, "enabled": self.enabled,
                "active": bool(self.active), "requests": self.requests,
                "objects_released": self.released, "released_by_argument": dict(self.by_argument)}

    def wrap(self, callback):
        """A REST callback that releases the leaked arguments, then calls `callback`."""
        def route(output, uri, **request):
            self.release(request)
            return callback(output, uri, **request)
        route.__name__ = getattr(callback, "__name__", "route")
        return route
