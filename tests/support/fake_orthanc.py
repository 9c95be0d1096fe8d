"""A fake `orthanc` module for unit tests: every name of `cbmir.service.gateway.SDK_NAMES`, same
signatures as orthanc-python 4.0 (tests/unit/test_gateway.py checks it offers them all).

It holds instances (DICOM bytes and their parents), Orthanc's /changes log, the registered
routes and change callback, log lines, metrics and Explorer scripts, so the gateway, the worker,
the follower and the wiring run on it without Orthanc. Real behaviour is tested against a real
Orthanc (tests/plugin); this fake only answers the calls the plugin makes.
"""
from __future__ import annotations

import json
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit


class OrthancException(Exception):
    """What the real module raises for any failed call (code 17 for an unknown resource)."""


class FakeOutput:
    """RestOutput: what a route answered (`status`, `mime`, `body`, `headers`, `allowed`)."""

    def __init__(self):
        self.answers: list[tuple] = []  # (status, mime, body) in call order
        self.headers: dict = {}
        self.allowed = None

    def AnswerBuffer(self, body, mime):  # noqa: N802 - SDK names
        self.answers.append((200, mime, body))

    def SendHttpStatus(self, status, body, length):  # noqa: N802
        assert isinstance(body, str) and length == len(body.encode())
        self.answers.append((status, self.headers.get("Content-Type"), body))

    def SetHttpHeader(self, name, value):  # noqa: N802
        self.headers[name] = value

    def SendMethodNotAllowed(self, allowed):  # noqa: N802
        self.allowed = allowed
        self.answers.append((405, None, allowed))

    @property
    def status(self) -> int:
        return self.answers[-1][0]

    @property
    def mime(self):
        return self.answers[-1][1]

    @property
    def body(self):
        return self.answers[-1][2]

    def json(self):
        return json.loads(self.body)


class FakeOrthanc:
    OrthancException = OrthancException
    RestOutput = FakeOutput
    ChangeType = SimpleNamespace(ORTHANC_STARTED=10, ORTHANC_STOPPED=11, NEW_INSTANCE=1,
                                 DELETED=2, STABLE_STUDY=8)
    ResourceType = SimpleNamespace(PATIENT=0, STUDY=1, SERIES=2, INSTANCE=3, NONE=4)
    MetricsType = SimpleNamespace(DEFAULT=0, TIMER=1)

    def __init__(self, configuration: dict | None = None, version: str | None = "4.0"):
        self.configuration = configuration if configuration is not None else {}
        self.version = version
        self.instances: dict[str, dict] = {}  # id -> {"dicom", "series", "study", "patient", "sop"}
        self.changes: list[dict] = []  # Orthanc's /changes log
        self.seq = 0
        self.routes: dict = {}
        self.change_callback = None
        self.explorer: list[str] = []
        self.lines: list[tuple[str, str]] = []  # ("I"|"W"|"E", text)
        self.metrics: dict = {}
        self.calls: list[str] = []  # REST URIs asked, in order
        self.fail = None  # an exception to raise from every REST call (Orthanc down)

    # -- test helpers ----------------------------------------------------------------------
    def store(self, instance: str, dicom: bytes = b"DICM", series="se", study="st",
              patient="pa", sop: str | None = None) -> None:
        """Store an instance as Orthanc would (a NewInstance change; no callback fired)."""
        self.instances[instance] = {"dicom": dicom, "series": series, "study": study,
                                    "patient": patient, "sop": sop or instance}
        self.seq += 1
        self.changes.append({"Seq": self.seq, "ChangeType": "NewInstance",
                             "ResourceType": "Instance", "ID": instance})

    def delete(self, instance: str) -> None:
        """Deleting a resource also drops its changes (as in Orthanc)."""
        self.instances.pop(instance, None)
        self.changes = [change for change in self.changes if change["ID"] != instance]

    def change(self, kind: str, level: str, resource: str = "") -> None:
        """Fire the change callback: kind and level as SDK names ("NEW_INSTANCE", "SERIES")."""
        self.change_callback(getattr(self.ChangeType, kind), getattr(self.ResourceType, level),
                             resource)

    def request(self, uri: str, method: str = "GET", body: bytes = b"", get=None,
                headers=None) -> FakeOutput:
        """Call the route registered for `uri` as Orthanc would; returns its output."""
        for regex, callback in self.routes.items():
            match = re.fullmatch(regex, uri)
            if match:
                output = FakeOutput()
                request = {"method": method, "groups": match.groups(),
                           "headers": headers or {}}
                if method == "GET":
                    request["get"] = get or {}
                else:
                    request["body"] = body
                callback(output, uri, **request)
                return output
        raise AssertionError(f"no route for {uri}")

    # -- the SDK ---------------------------------------------------------------------------
    def GetConfiguration(self):  # noqa: N802
        return json.dumps(self.configuration)

    def LogInfo(self, text): self.lines.append(("I", text))  # noqa: E704,N802
    def LogWarning(self, text): self.lines.append(("W", text))  # noqa: E704,N802
    def LogError(self, text): self.lines.append(("E", text))  # noqa: E704,N802

    def SetMetricsValue(self, name, value, kind):  # noqa: N802
        assert isinstance(name, str) and isinstance(value, float) and kind in (0, 1)
        self.metrics[name] = value

    def RegisterOnChangeCallback(self, callback):  # noqa: N802
        self.change_callback = callback

    def RegisterRestCallback(self, regex, callback):  # noqa: N802
        self.routes[regex] = callback

    def ExtendOrthancExplorer(self, script):  # noqa: N802
        self.explorer.append(script)

    def GetDicomForInstance(self, instance):  # noqa: N802
        if self.fail is not None:
            raise self.fail
        if instance not in self.instances:
            raise OrthancException("Unknown resource")
        return self.instances[instance]["dicom"]

    def RestApiGet(self, uri):  # noqa: N802
        self.calls.append(uri)
        if self.fail is not None:
            raise self.fail
        path = urlsplit(uri).path
        args = {k: v[0] for k, v in parse_qs(urlsplit(uri).query).items()}
        if path == "/plugins/python":
            if self.version is None:
                raise OrthancException("Unknown resource")
            return json.dumps({"ID": "python", "Version": self.version})
        if path == "/instances":
            since, limit = int(args.get("since", 0)), int(args.get("limit", 0)) or None
            ids = sorted(self.instances)
            return json.dumps(ids[since:None if limit is None else since + limit])
        if path == "/changes":
            since, limit = int(args.get("since", 0)), int(args.get("limit", 100))
            page = [c for c in self.changes if c["Seq"] > since][:limit]
            last = page[-1]["Seq"] if page else self.seq
            done = not [c for c in self.changes if c["Seq"] > last]
            return json.dumps({"Changes": page, "Last": last, "Done": done})
        match = re.fullmatch(r"/instances/([^/]+)(/study)?", path)
        if match and match.group(1) in self.instances:
            found = self.instances[match.group(1)]
            if match.group(2):
                return json.dumps({"ID": found["study"], "ParentPatient": found["patient"]})
            return json.dumps({"ID": match.group(1), "ParentSeries": found["series"]})
        raise OrthancException("Unknown resource")

    def RestApiPost(self, uri, body):  # noqa: N802
        self.calls.append(uri)
        if self.fail is not None:
            raise self.fail
        if uri == "/tools/lookup":
            uid = body.decode() if isinstance(body, bytes) else body
            return json.dumps([{"ID": i, "Type": "Instance"} for i, found in
                               sorted(self.instances.items()) if found["sop"] == uid])
        raise OrthancException("Unknown resource")
