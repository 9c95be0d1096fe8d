"""Render the shipped orthanc.json into a runnable configuration.

Why a renderer: the shipped file must not carry machine paths, ports or a
password. `render` fills them (from arguments or CBMIR_* environment variables)
and writes CBMIR_HOME/orthanc.json; `make run` and the test suite both use it.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "orthanc.json"


def _fill(value, replacements: dict):
    if isinstance(value, str):
        for key, text in replacements.items():
            value = value.replace(key, text)
        return value
    if isinstance(value, list):
        return [_fill(v, replacements) for v in value]
    if isinstance(value, dict):
        return {_fill(k, replacements): _fill(v, replacements) for k, v in value.items()}
    return value


def password_for(home: Path, user: str) -> tuple[str, bool]:
    """CBMIR_PASSWORD, else a random one made once and kept in home/credentials."""
    if os.environ.get("CBMIR_PASSWORD"):
        return os.environ["CBMIR_PASSWORD"], False
    path = home / "credentials.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("user") == user:
            return stored["password"], False
    password = secrets.token_urlsafe(12)
    path.write_text(json.dumps({"user": user, "password": password}))
    path.chmod(0o600)
    return password, True


def render(home: str | os.PathLike | None = None, http_port: int | None = None,
           dicom_port: int | None = None, user: str | None = None, password: str | None = None,
           cbmir: dict | None = None, overrides: dict | None = None) -> tuple[Path, dict]:
    """Write <home>/orthanc.json; returns (path, {'user', 'password', 'new_password', ...})."""
    home = Path(home or os.environ.get("CBMIR_HOME") or REPO_ROOT / ".cbmir-home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    user = user or os.environ.get("CBMIR_USER") or "cbmir"
    new_password = False
    if password is None:
        password, new_password = password_for(home, user)
    config = _fill(json.loads(TEMPLATE.read_text()),
                   {"@HOME@": str(home), "@REPO@": str(REPO_ROOT), "@USER@": user,
                    "@PASSWORD@": password})
    config["HttpPort"] = int(http_port or os.environ.get("CBMIR_HTTP_PORT") or 8042)
    config["DicomPort"] = int(dicom_port or os.environ.get("CBMIR_DICOM_PORT") or 4242)
    config["CBMIR"].update(cbmir or {})
    config.update(overrides or {})
    path = home / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path, {"home": str(home), "user": user, "password": password,
                  "new_password": new_password, "http_port": config["HttpPort"],
                  "dicom_port": config["DicomPort"], "aet": config["DicomAet"]}


POSTGRESQL_PLUGINS = {"index": "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so",
                      "storage": "/usr/share/orthanc/plugins/libOrthancPostgreSQLStorage.so"}


def cluster_overrides(pg: dict, storage_directory: str | os.PathLike | None = None,
                      node_name: str | None = None) -> tuple[dict, dict]:
    """(overrides, cbmir) for `render` of one node of a cluster on the PostgreSQL `pg`
    ({"Host", "Port", "Database", "Username", "Password"}).

    Orthanc's index goes to PostgreSQL with `Lock: false` (else a second node refuses to
    start); the DICOM files to the shared `storage_directory`, or to PostgreSQL too when it
    is None, so every node serves every image. CBMIR uses its PostgreSQL store, reusing
    Orthanc's section. Facts behind this: docs/cluster.md."""
    plugins = json.loads(TEMPLATE.read_text())["Plugins"] + [POSTGRESQL_PLUGINS["index"]]
    section = dict(pg, EnableIndex=True, EnableStorage=storage_directory is None, Lock=False,
                   IndexConnectionsCount=2)
    overrides = {"Plugins": plugins, "PostgreSQL": section}
    if storage_directory is None:
        plugins.append(POSTGRESQL_PLUGINS["storage"])
    else:
        # Made here, before any node starts: nodes starting together race to create it, and
        # Orthanc 1.10 stops when its create fails because another node won ("Cannot create
        # a directory", seen with `make cluster`).
        Path(storage_directory).mkdir(parents=True, exist_ok=True)
        overrides["StorageDirectory"] = str(storage_directory)
    cbmir = {"Store": "postgresql"}
    if node_name:
        cbmir["NodeName"] = node_name
    return overrides, cbmir


def main() -> int:
    path, info = render()
    print(json.dumps(dict(info, config=str(path))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
