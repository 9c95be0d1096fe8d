"""The orthanc-python 4.0 leak workaround frees exactly the leaked reference, and nothing on a
fixed wrapper (no double free). The leak is simulated the way 4.0 makes it: one Py_IncRef on
each argument object the wrapper builds; the call goes through `wrap` like Orthanc's does."""
import ctypes
import sys

import pytest

from cbmir.service.gateway import Gateway
from cbmir.service.rest_leak import LeakWorkaround, _count, parse_version
from support.fake_orthanc import FakeOrthanc


def reporting(text):
    """Gateway.plugin_version of an orthanc-python of that version (None: it cannot say)."""
    return Gateway(FakeOrthanc(version=text)).plugin_version


def _request(leaky: bool) -> dict:
    """Fresh argument objects like the C wrapper builds; `leaky`: one reference too many."""
    request = {"method": "".join(["PO", "ST"]), "groups": tuple(["abc"]),
               "headers": {"content-type": "".join(["image/", "png"]), "x-a": "".join(["v", "al"])},
               "get": {"label": "".join(["low ", "grade"])}, "body": bytes(bytearray(1000))}
    if leaky:
        for key in ("headers", "get"):
            for value in request[key].values():
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(value))
        for value in request.values():
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(value))
    return request


def _counts_in_route(workaround, leaky: bool) -> dict:
    """Reference counts of each argument object as the route sees them (after `release`).

    The request dict is a temporary passed straight to the call, as the C wrapper's `kw` is:
    anything else holding the objects would change the counts (which is also why the guard
    compares with an exact count)."""
    seen = {}

    def route(output, uri, **request):
        seen.update({key: _count(request, key) for key in request})
        for key in ("headers", "get"):
            seen.update({f"{key}.{k}": _count(request[key], k) for k in request[key]})

    workaround.wrap(route)(None, "/cbmir/query", **_request(leaky))
    return seen


def _reference() -> dict:
    """The counts of correctly built arguments (what a fixed orthanc-python hands over)."""
    return _counts_in_route(LeakWorkaround(reporting("4.1")), leaky=False)


@pytest.mark.parametrize("version, leaky, freed", [
    ("4.0", True, 8),     # the leak: each leaked reference dropped once
    ("4.0", False, 0),    # correct counts: untouched even on 4.0 (no double free)
    ("4.1", False, 0),    # a fixed orthanc-python: never active
    ("4.1", True, 0),     # the version gate holds even when counts look leaky
    (None, True, 0),      # unknown version: do nothing
])
def test_frees_only_the_leaked_reference(version, leaky, freed):
    workaround = LeakWorkaround(reporting(version))
    counts = _counts_in_route(workaround, leaky)
    assert workaround.released == freed
    reference = _reference()
    if leaky and not freed:
        reference = {key: count + 1 for key, count in reference.items()}
    assert counts == reference


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("CBMIR_REST_LEAK_WORKAROUND", "off")
    workaround = LeakWorkaround(reporting("4.0"))
    counts = _counts_in_route(workaround, leaky=True)
    assert workaround.released == 0 and counts == {k: c + 1 for k, c in _reference().items()}
    assert workaround.describe()["enabled"] is False


def test_shared_singletons_are_never_touched():
    """b'' and one-character strings are shared by the interpreter: their counts never match."""
    workaround = LeakWorkaround(reporting("4.0"))
    singletons = {"groups": (), "body": b"", "k": "5", "method": "GET"}
    before = {k: sys.getrefcount(v) for k, v in singletons.items()}
    workaround.wrap(lambda output, uri, **request: None)(
        None, "/x", **{"method": "GET", "groups": (), "get": {"k": "5"}, "body": b""})
    assert {k: sys.getrefcount(v) for k, v in singletons.items()} == before
    assert workaround.released == 0


def test_routes_registered_through_the_gateway_are_wrapped():
    orthanc = FakeOrthanc(version="4.0")
    gateway = Gateway(orthanc)
    workaround = LeakWorkaround(gateway.plugin_version)
    gateway.wrap_routes(workaround.wrap)
    gateway.register_route("/ohif", lambda output, uri, **request: None)
    orthanc.routes["/ohif"](None, "/ohif", **_request(leaky=True))
    assert workaround.released == 8


def test_parse_version():
    assert parse_version("4.0") == (4, 0) and parse_version("4.0+ds-1") == (4, 0)
    assert parse_version("mainline") is None and parse_version(None) is None
