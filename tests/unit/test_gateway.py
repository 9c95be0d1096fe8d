"""cbmir.service.gateway on the fake orthanc module: the one door to the SDK, its own exceptions,
and the boundary (no other plugin module calls the SDK; every name it uses is in SDK_NAMES)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cbmir.service import gateway as gateway_module
from cbmir.service.gateway import (SDK_NAMES, Gateway, NotFound, OrthancError, missing_sdk_names,
                                   send_buffer, send_json, send_method_not_allowed)
from support.fake_orthanc import FakeOrthanc, FakeOutput, OrthancException

PACKAGE = Path(__file__).resolve().parents[2] / "plugin" / "cbmir"
ALL_SDK_NAMES = {name for names in SDK_NAMES.values() for name in names}


def test_the_fake_offers_every_sdk_name_the_plugin_uses():
    """The real module is checked at start-up (status 'sdk_missing', see test_api_errors)."""
    assert missing_sdk_names(FakeOrthanc()) == []


def test_a_module_without_some_names_is_reported():
    lacking = type("Lacking", (), {n: getattr(FakeOrthanc, n) for n in dir(FakeOrthanc)
                                   if n not in ("ExtendOrthancExplorer", "RestOutput")})
    assert missing_sdk_names(lacking) == ["orthanc.ExtendOrthancExplorer"] + [
        f"RestOutput.{name}" for name in SDK_NAMES["RestOutput"]]


def _attributes(path: Path) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}


def test_no_other_plugin_module_calls_the_sdk():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "gateway.py":
            continue
        used = _attributes(path) & ALL_SDK_NAMES
        assert not used, f"{path.relative_to(PACKAGE)} calls {sorted(used)}: go through gateway.py"


def test_every_sdk_name_the_gateway_uses_is_listed():
    tree = ast.parse(Path(gateway_module.__file__).read_text())
    used = set()
    for node in ast.walk(tree):  # orthanc.X, self.orthanc.X, output.X
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in ("orthanc", "output"):
                used.add(node.attr)
    assert used and used <= ALL_SDK_NAMES, sorted(used - ALL_SDK_NAMES)


def test_instances_and_their_parents():
    orthanc = FakeOrthanc()
    orthanc.store("i1", b"DICM-1", series="se1", study="st1", patient="pa1", sop="1.2.3")
    gateway = Gateway(orthanc)
    assert gateway.instance_dicom("i1") == b"DICM-1"
    assert gateway.instance("i1")["ParentSeries"] == "se1"
    assert gateway.instance_study("i1") == {"ID": "st1", "ParentPatient": "pa1"}
    assert gateway.instance_exists("i1") and not gateway.instance_exists("i2")
    assert gateway.lookup_instances("1.2.3") == ["i1"] and gateway.lookup_instances("9.9") == []


@pytest.mark.parametrize("call", ["instance_dicom", "instance", "instance_study"])
def test_an_unknown_instance_is_not_found_not_an_orthanc_exception(call):
    with pytest.raises(NotFound):
        getattr(Gateway(FakeOrthanc()), call)("gone")


def test_orthanc_failures_become_the_plugins_own_error():
    orthanc = FakeOrthanc()
    orthanc.fail = OrthancException("database busy")
    gateway = Gateway(orthanc)
    for call in (lambda: gateway.changes(0, 10), gateway.list_instances,
                 lambda: gateway.lookup_instances("1.2"), gateway.plugin_version):
        with pytest.raises(OrthancError) as caught:
            call()
        assert not isinstance(caught.value, OrthancException)


def test_every_instance_is_listed_page_by_page(monkeypatch):
    monkeypatch.setattr(gateway_module, "PAGE", 3)
    orthanc = FakeOrthanc()
    for n in range(7):
        orthanc.store(f"i{n}")
    assert Gateway(orthanc).list_instances() == [f"i{n}" for n in range(7)]
    assert [uri for uri in orthanc.calls if uri.startswith("/instances?")] == [
        "/instances?since=0&limit=3", "/instances?since=3&limit=3", "/instances?since=6&limit=3"]


def test_a_changes_page():
    orthanc = FakeOrthanc()
    for n in range(3):
        orthanc.store(f"i{n}")
    page = Gateway(orthanc).changes(1, 1)
    assert [c["ID"] for c in page["Changes"]] == ["i1"] and page["Last"] == 2 and not page["Done"]


def test_change_callbacks_get_plain_kinds_and_levels():
    orthanc, seen = FakeOrthanc(), []
    Gateway(orthanc).register_change_callback(lambda *change: seen.append(change))
    orthanc.change("ORTHANC_STARTED", "NONE")
    orthanc.change("NEW_INSTANCE", "INSTANCE", "i1")
    orthanc.change("DELETED", "SERIES", "se1")
    orthanc.change("STABLE_STUDY", "STUDY", "st1")
    assert seen == [("started", "instance", ""), ("new_instance", "instance", "i1"),
                    ("deleted", "series", "se1"), (None, "study", "st1")]


def test_configuration_metrics_log_and_explorer():
    orthanc = FakeOrthanc({"CBMIR": {"BatchSize": 4}})
    gateway = Gateway(orthanc)
    assert gateway.configuration() == {"CBMIR": {"BatchSize": 4}}
    gateway.set_metric("cbmir_pending", 3)
    assert orthanc.metrics == {"cbmir_pending": 3.0}
    gateway.log.info("a"), gateway.log.warning("b"), gateway.log.error("c")
    assert orthanc.lines == [("I", "a"), ("W", "b"), ("E", "c")]
    gateway.extend_explorer("js")
    assert orthanc.explorer == ["js"] and gateway.plugin_version() == "4.0"


def test_routes_are_registered_through_the_wrapper():
    orthanc, calls = FakeOrthanc(), []
    gateway = Gateway(orthanc)
    gateway.register_route("/a", lambda output, uri, **request: calls.append("a"))
    gateway.wrap_routes(lambda callback: lambda *a, **k: calls.append("wrapped") or callback(*a, **k))
    gateway.register_route("/b", lambda output, uri, **request: calls.append("b"))
    orthanc.request("/a"), orthanc.request("/b")
    assert calls == ["a", "wrapped", "b"]


def test_answers():
    output = FakeOutput()
    send_json(output, 200, {"a": 1})
    assert (output.status, output.mime, output.json()) == (200, "application/json", {"a": 1})
    send_json(output, 409, {"error": "x", "status": 409})
    assert (output.status, output.mime, json.loads(output.body)["status"]) == (409, "application/json", 409)
    send_buffer(output, b"png", "image/png", {"Cache-Control": "private"})
    assert (output.body, output.mime, output.headers["Cache-Control"]) == (b"png", "image/png", "private")
    send_method_not_allowed(output, "GET")
    assert (output.status, output.allowed) == (405, "GET")
