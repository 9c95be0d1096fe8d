"""The one door to Orthanc: every call the plugin makes to the orthanc-python SDK lives here.

Why one module: the SDK is a C extension that cannot be imported outside Orthanc, errors come
back as `orthanc.OrthancException` whatever went wrong, and names differ between releases. Here
each call is a small named method that raises the plugin's own exceptions (`NotFound`,
`OrthancError`), `SDK_NAMES` lists every name used (checked against the running module at
start-up: status `sdk_missing`, and against the unit tests' fake, tests/support/fake_orthanc.py),
and the rest of the service takes a `Gateway`, so it runs on the fake in unit tests.

A REST answer goes through the `send_*` functions below: the `output` object Orthanc hands each
route is part of the SDK too (`RestOutput`).
"""
from __future__ import annotations

import json

from cbmir.service.logs import Log

# The orthanc-python API this package uses; checked against the real module at start-up
# (status "sdk_missing") and against the unit tests' fake, so a fake cannot drift.
SDK_NAMES = {
    "orthanc": ["GetConfiguration", "LogInfo", "LogWarning", "LogError", "SetMetricsValue",
                "MetricsType", "RegisterOnChangeCallback", "ExtendOrthancExplorer",
                "RegisterRestCallback", "RestApiGet", "RestApiPost", "GetDicomForInstance",
                "OrthancException", "ChangeType", "ResourceType"],
    "RestOutput": ["AnswerBuffer", "SendHttpStatus", "SetHttpHeader", "SendMethodNotAllowed"],
}
PAGE = 1000  # instance IDs per /instances request in list_instances
CHANGES = {"ORTHANC_STARTED": "started", "ORTHANC_STOPPED": "stopped",
           "NEW_INSTANCE": "new_instance", "DELETED": "deleted"}
LEVELS = ("PATIENT", "STUDY", "SERIES", "INSTANCE")


class OrthancError(Exception):
    """Orthanc refused a call (busy, shutting down, bad request)."""


class NotFound(OrthancError):
    """Orthanc has no such resource (never stored, or deleted since)."""


def missing_sdk_names(orthanc) -> list[str]:
    """`owner.name` of every SDK_NAMES entry the given module lacks."""
    missing = []
    for owner, names in SDK_NAMES.items():
        target = orthanc if owner == "orthanc" else getattr(orthanc, owner, None)
        missing += [f"{owner}.{name}" for name in names if not hasattr(target, name)]
    return missing


class Gateway:
    """The orthanc module behind small named methods (one per use)."""

    def __init__(self, orthanc):
        self.orthanc = orthanc
        self.missing = missing_sdk_names(orthanc)  # shown in /cbmir/status as sdk_missing
        self.log = Log(orthanc.LogInfo, orthanc.LogWarning, orthanc.LogError)
        self._wrap_route = None

    def _get(self, uri: str, missing=OrthancError):
        try:
            return json.loads(self.orthanc.RestApiGet(uri))
        except self.orthanc.OrthancException as error:
            raise missing(f"GET {uri}: {error}") from None

    # -- instances ---------------------------------------------------------------------------
    def instance_dicom(self, instance: str) -> bytes:
        """The stored DICOM file; NotFound when Orthanc does not have it (any more)."""
        try:
            return self.orthanc.GetDicomForInstance(instance)
        except self.orthanc.OrthancException as error:
            raise NotFound(f"instance {instance}: {error}") from None

    def instance(self, instance: str) -> dict:
        """/instances/{id} (ParentSeries, MainDicomTags...); NotFound when unknown."""
        return self._get(f"/instances/{instance}", NotFound)

    def instance_exists(self, instance: str) -> bool:
        try:
            self.instance(instance)
        except NotFound:
            return False
        return True

    def instance_study(self, instance: str) -> dict:
        """/instances/{id}/study (ID, ParentPatient...); NotFound when unknown."""
        return self._get(f"/instances/{instance}/study", NotFound)

    def lookup_instances(self, uid: str) -> list[str]:
        """Orthanc IDs of the instances whose SOPInstanceUID is `uid` (/tools/lookup), sorted."""
        try:
            matches = json.loads(self.orthanc.RestApiPost("/tools/lookup", uid))
        except self.orthanc.OrthancException as error:
            raise OrthancError(f"lookup {uid}: {error}") from None
        return sorted(m["ID"] for m in matches if m.get("Type") == "Instance")

    def instances_page(self, since: int, limit: int = PAGE) -> list[str]:
        return self._get(f"/instances?since={since}&limit={limit}")

    def list_instances(self) -> list[str]:
        """Every instance ID Orthanc holds, read page by page."""
        instances, since = [], 0
        while True:
            page = self.instances_page(since, PAGE)
            instances.extend(page)
            if len(page) < PAGE:
                return instances
            since += len(page)

    def changes(self, since: int, limit: int) -> dict:
        """One page of Orthanc's /changes log: {"Changes": [...], "Last": n, "Done": bool}."""
        return self._get(f"/changes?since={since}&limit={limit}")

    def plugin_version(self) -> str | None:
        """The running orthanc-python's version (GET /plugins/python)."""
        return self._get("/plugins/python").get("Version")

    # -- configuration, metrics ----------------------------------------------------------------
    def configuration(self) -> dict:
        """Orthanc's whole configuration (orthanc.json and friends) as a dict."""
        return json.loads(self.orthanc.GetConfiguration())

    def set_metric(self, name: str, value: float) -> None:
        self.orthanc.SetMetricsValue(name, float(value), self.orthanc.MetricsType.DEFAULT)

    # -- registration -------------------------------------------------------------------------
    def wrap_routes(self, wrap) -> None:
        """`wrap(callback)` is applied to every route registered from now on (rest_leak.py)."""
        self._wrap_route = wrap

    def register_route(self, regex: str, callback) -> None:
        """`callback(output, uri, **request)` answers every method on URIs matching `regex`."""
        if self._wrap_route is not None:
            callback = self._wrap_route(callback)
        self.orthanc.RegisterRestCallback(regex, callback)

    def register_change_callback(self, callback) -> None:
        """`callback(kind, level, resource_id)` for every Orthanc change, in Orthanc's change
        thread. kind: "started", "stopped", "new_instance", "deleted" or None (others);
        level: "patient", "study", "series" or "instance"."""
        change_type, resource_type = self.orthanc.ChangeType, self.orthanc.ResourceType
        kinds = {getattr(change_type, name): kind for name, kind in CHANGES.items()
                 if hasattr(change_type, name)}
        levels = {getattr(resource_type, name): name.lower() for name in LEVELS
                  if hasattr(resource_type, name)}

        def OnChange(change, level, resource_id):  # noqa: N802 - Orthanc callback naming
            callback(kinds.get(change), levels.get(level, "instance"), resource_id)

        self.orthanc.RegisterOnChangeCallback(OnChange)

    def extend_explorer(self, script: str) -> None:
        """JavaScript added to Orthanc Explorer's pages."""
        self.orthanc.ExtendOrthancExplorer(script)


# -- answers (the RestOutput a route gets) -------------------------------------------------------
def send_json(output, status: int, value) -> None:
    body = json.dumps(value, default=str)  # ASCII only, so len() counts bytes
    if status == 200:
        output.AnswerBuffer(body, "application/json")
    else:
        output.SetHttpHeader("Content-Type", "application/json")
        output.SendHttpStatus(status, body, len(body))


def send_buffer(output, data, mime: str, headers: dict | None = None) -> None:
    """A 200 answer of `data` (bytes or str) with `mime` and extra headers."""
    for name, value in (headers or {}).items():
        output.SetHttpHeader(name, value)
    output.AnswerBuffer(data, mime)


def send_method_not_allowed(output, allowed: str) -> None:
    output.SendMethodNotAllowed(allowed)
