"""Benchmark 5: kill -9 Orthanc in the middle of a 500-image ingest, restart, check.

Why: the plugin promises that nothing stored is ever left unindexed and nothing
is indexed twice. The check is made against the plugin's SQLite file itself (one
row per instance and frame) and Orthanc's own instance list, after each kill and
after the whole ingest has been re-sent and completed.

    .venv/bin/python bench/crash.py --images 500 --kills 3
"""
from __future__ import annotations

import argparse
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import common
import requests


def rest_sender(server, paths: list[Path], stop: threading.Event) -> threading.Thread:
    """Upload `paths` by REST in the background until done, stopped or Orthanc dies."""
    def run():
        session = requests.Session()
        session.auth = server.auth
        for path in paths:
            if stop.is_set():
                return
            try:
                session.post(server.url + "/instances", data=path.read_bytes(), timeout=10,
                             headers={"Content-Type": "application/dicom"})
            except requests.RequestException:
                return  # killed
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stored_rows(server) -> list[tuple]:
    db = sqlite3.connect(server.home / "cbmir-index" / "cbmir.sqlite")
    try:
        return db.execute("SELECT instance, frame FROM vectors").fetchall()
    finally:
        db.close()


def check(server, status) -> dict:
    instances = set(server.get("/instances").json())
    rows = stored_rows(server)
    indexed = {r[0] for r in rows}
    return {"instances": len(instances), "rows": len(rows), "duplicates": len(rows) - len(set(rows)),
            "missing": len(instances - indexed), "orphans": len(indexed - instances),
            "failed": status["failed"], "indexed": status["indexed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 cycles during the ingest")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args()
    env = common.environment()
    work = common.scratch_dir("cbmir-bench-crash-")
    folder = work / "files"
    folder.mkdir()
    print(f"making {args.images} DICOM instances ...", flush=True)
    paths = []
    for n, data in enumerate(common.make_instances(args.images, tag="CRASH")):
        paths.append(folder / f"{n:05d}.dcm")
        paths[-1].write_bytes(data)
    server = common.server(work / "orthanc", model=args.model, cbmir={"BatchSize": 8})
    server.start()
    cycles = []
    try:
        for kill in range(args.kills):
            have = len(server.get("/instances").json())
            target = have + max(5, (args.images - have) // (args.kills - kill + 1))
            sender = subprocess.Popen(["storescu", "-aet", "BENCH", "-aec", server.aet, "127.0.0.1",
                                       str(server.dicom_port), *map(str, paths[::2])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stop = threading.Event()
            rest = rest_sender(server, paths[1::2], stop)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and server.status()["indexed"] < target \
                    and sender.poll() is None:
                time.sleep(0.02)
            still_sending = sender.poll() is None
            pending = server.status()["pending"]
            server.kill()
            stop.set()
            sender.wait(60)
            rest.join(30)
            started = time.perf_counter()
            server.start()
            status = server.wait_idle(600)
            recovered = time.perf_counter() - started
            cycle = dict(check(server, status), killed_while_sending=still_sending,
                         pending_at_kill=pending, restart_to_idle_seconds=round(recovered, 2))
            cycles.append(cycle)
            print(f"kill {kill + 1}: {cycle}", flush=True)
        result = subprocess.run(["storescu", "-aet", "BENCH", "-aec", server.aet, "127.0.0.1",
                                 str(server.dicom_port), *map(str, paths)],
                                capture_output=True, text=True, timeout=900)
        final = check(server, server.wait_idle(600))
        final["storescu_rc"] = result.returncode
    finally:
        server.stop()
    ok = all(c["duplicates"] == 0 and c["missing"] == 0 and c["orphans"] == 0 for c in cycles) \
        and final["instances"] == args.images and final["rows"] == args.images \
        and final["duplicates"] == final["missing"] == final["failed"] == 0
    results = {"images": args.images, "kills": cycles, "final": final,
               "goal_every_image_indexed_exactly_once": ok}
    lines = ["| after | instances in Orthanc | vector rows | duplicates | missing | orphans | "
             "pending at kill | restart to idle s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, c in enumerate(cycles, 1):
        lines.append(f"| kill -9 #{n}{'' if c['killed_while_sending'] else ' (sender done)'} | "
                     f"{c['instances']} | {c['rows']} | {c['duplicates']} | {c['missing']} | "
                     f"{c['orphans']} | {c['pending_at_kill']} | {c['restart_to_idle_seconds']} |")
    lines.append(f"| full re-send | {final['instances']} | {final['rows']} | {final['duplicates']} | "
                 f"{final['missing']} | {final['orphans']} | - | - |")
    lines += ["", f"- goal every one of the {args.images} images indexed exactly once: "
              f"{'met' if ok else 'MISSED'} (failed {final['failed']})",
              "- images go in by C-STORE (storescu, one association: even files) and REST (odd "
              "files, one client) at once while the plugin indexes; "
              "Orthanc is killed with SIGKILL when the index has grown by a share of the rest"]
    common.write_results("crash", env, results, lines, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
