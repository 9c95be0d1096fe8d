#!/usr/bin/env python3
"""`make cluster`: a private PostgreSQL and CBMIR_NODES Orthanc nodes on it, in the foreground.

Environment (defaults): CBMIR_HOME (<checkout>/.cbmir-cluster), CBMIR_NODES (2),
CBMIR_PG_PORT (5433), CBMIR_HTTP_PORT (8042) and CBMIR_DICOM_PORT (4242): node i listens on
port+i; CBMIR_USER (cbmir) / CBMIR_PASSWORD (random, kept in CBMIR_HOME/credentials.json),
the same login on every node, as `make run`; CBMIR_MODEL (the shipped model) an ONNX model
to use instead (tests use a tiny one).

Layout under CBMIR_HOME: postgres/ (data folder, log), storage/ (the DICOM files, shared by
every node), node-<i>/ (orthanc.json, orthanc.log, the node's ANN replica). SIGINT/SIGTERM
stops the nodes (SIGTERM, clean shutdown), then PostgreSQL; a node that dies is reported and
the others keep serving. Why these choices: docs/cluster.md.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin"))
from cbmir.tools.orthanc_config import cluster_overrides, password_for, render  # noqa: E402
from cbmir.tools.pg_server import PostgresServer, missing_reason  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
stopping = False


def _on_signal(signum, frame) -> None:
    global stopping
    stopping = True


def _pg_password(home: Path) -> str:
    """CBMIR_PG_PASSWORD, else a random one made once and kept in home/postgres-credentials.json."""
    if os.environ.get("CBMIR_PG_PASSWORD"):
        return os.environ["CBMIR_PG_PASSWORD"]
    path = home / "postgres-credentials.json"
    if path.is_file():
        return json.loads(path.read_text())["password"]
    password = secrets.token_urlsafe(12)
    path.write_text(json.dumps({"user": "cbmir", "password": password}))
    path.chmod(0o600)
    return password


def _wait_ready(port: int, auth: tuple[str, str], process: subprocess.Popen, timeout: float) -> bool:
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping and process.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/cbmir/status", auth=auth, timeout=2).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


def main() -> int:
    reason = missing_reason()
    if reason or not Path(ORTHANC).exists():
        print(f"make cluster: {reason or 'Orthanc is not installed'}", file=sys.stderr)
        return 2
    home = Path(os.environ.get("CBMIR_HOME") or REPO / ".cbmir-cluster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    nodes = int(os.environ.get("CBMIR_NODES") or 2)
    http_port = int(os.environ.get("CBMIR_HTTP_PORT") or 8042)
    dicom_port = int(os.environ.get("CBMIR_DICOM_PORT") or 4242)
    user = os.environ.get("CBMIR_USER") or "cbmir"
    password, _ = password_for(home, user)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    pg = PostgresServer(home / "postgres", port=int(os.environ.get("CBMIR_PG_PORT") or 5433),
                        password=_pg_password(home), database="orthanc", durable=True)
    pg.start()
    site = sysconfig.get_paths()["purelib"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO / "plugin"), site, *filter(None, [os.environ.get("PYTHONPATH")])]))
    processes: list[tuple[int, subprocess.Popen]] = []
    infos = []
    try:
        for i in range(nodes):
            node_home = home / f"node-{i}"
            overrides, cbmir = cluster_overrides(pg.settings(), home / "storage", f"node-{i}")
            cbmir["IndexDirectory"] = str(node_home / "cbmir-index")
            if os.environ.get("CBMIR_MODEL"):
                cbmir["ModelPath"] = os.environ["CBMIR_MODEL"]
            overrides["Name"] = f"CBMIR-{i}"
            config, info = render(home=node_home, http_port=http_port + i, dicom_port=dicom_port + i,
                                  user=user, password=password, cbmir=cbmir, overrides=overrides)
            log = open(node_home / "orthanc.log", "ab")
            # Own session: Ctrl-C reaches only this supervisor, which stops the nodes before
            # PostgreSQL (a node losing its database mid-shutdown logs errors).
            process = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=log, env=env,
                                       cwd=node_home, start_new_session=True)
            log.close()
            processes.append((i, process))
            infos.append(info)
        ready = [_wait_ready(info["http_port"], (user, password), process, 180)
                 for info, (_, process) in zip(infos, processes)]
        if not stopping:
            print("Orthanc CBMIR cluster")
            print(f"  PostgreSQL        127.0.0.1:{pg.port} database orthanc, user {pg.user} "
                  f"(data {pg.data}, log {pg.log_path})")
            print(f"  Shared storage    {home / 'storage'}")
            for info, ok in zip(infos, ready):
                base = f"http://localhost:{info['http_port']}"
                print(f"  Node {infos.index(info)} {'' if ok else '(NOT READY: see its log) '}"
                      f"{base}/app/explorer.html  {base}/ohif/  {base}/cbmir/status  "
                      f"DICOM AET {info['aet']} port {info['dicom_port']}  log {info['home']}/orthanc.log")
            print(f"  Login             {user} / {password}   (kept in {home}/credentials.json)")
            print("Ctrl-C stops every node, then PostgreSQL.", flush=True)
        reported = set()
        while not stopping:
            for i, process in processes:
                if process.poll() is not None and i not in reported:
                    reported.add(i)
                    print(f"node {i} exited with {process.returncode} (log {home}/node-{i}/orthanc.log); "
                          "the other nodes keep serving", flush=True)
            if not pg.running():
                print(f"PostgreSQL exited (log {pg.log_path}); stopping the nodes", flush=True)
                break
            time.sleep(0.5)
    finally:
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        pg.stop()
        print("cluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
