"""Benchmark 4: 4 uploaders and 4 queriers against one Orthanc + plugin for 60 s.

Why: storing, indexing and searching share two cores, one GIL, Orthanc's
database lock and the plugin's SQLite file; a lock-order mistake shows up only
when all of them run at once. Every request has a timeout (a deadlock becomes
a counted error, not a hang), and after the run the server must still answer
and drain its queue.

    .venv/bin/python bench/load.py --seconds 60
"""
from __future__ import annotations

import argparse
import random
import threading
import time
from pathlib import Path

import common
import requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--queriers", type=int, default=4)
    parser.add_argument("--images", type=int, default=1200, help="distinct images to upload")
    parser.add_argument("--seed-images", type=int, default=200, help="indexed before the run")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args()
    env = common.environment()
    print(f"making {args.images + args.seed_images} DICOM instances ...", flush=True)
    datas = common.make_instances(args.images + args.seed_images, tag="LOAD")
    seed, fresh = datas[:args.seed_images], datas[args.seed_images:]
    server = common.server(common.scratch_dir("cbmir-bench-load-"), model=args.model)
    server.start()
    lock = threading.Lock()
    samples: dict[str, list[float]] = {"upload": [], "similar": [], "query_upload": []}
    errors: list[str] = []
    next_image = [0]
    try:
        targets = [server.upload(d)["ID"] for d in seed]
        server.wait_idle(600)
        stop_at = time.monotonic() + args.seconds

        def record(kind, started, response=None, error=None):
            elapsed = time.perf_counter() - started
            with lock:
                if error is not None or response.status_code != 200:
                    errors.append(f"{kind}: {error or response.status_code} "
                                  f"{'' if response is None else response.text[:200]}")
                else:
                    samples[kind].append(elapsed)

        def uploader():
            session = requests.Session()
            session.auth = server.auth
            while time.monotonic() < stop_at:
                with lock:
                    n = next_image[0]
                    next_image[0] += 1
                data = fresh[n % len(fresh)]  # past the end: re-sends (ignored by Orthanc)
                started = time.perf_counter()
                try:
                    response = session.post(server.url + "/instances", data=data, timeout=30,
                                            headers={"Content-Type": "application/dicom"})
                    record("upload", started, response)
                except requests.RequestException as error:
                    record("upload", started, error=repr(error))

        def querier(number):
            rng = random.Random(number)
            session = requests.Session()
            session.auth = server.auth
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    if rng.random() < 0.8:
                        params = {"k": rng.choice([5, 10, 20]),
                                  "group_by": rng.choice(["study", "instance"]),
                                  "exclude_same_patient": rng.choice(["true", "false"])}
                        response = session.get(f"{server.url}/cbmir/similar/"
                                               f"{rng.choice(targets)}", params=params, timeout=30)
                        record("similar", started, response)
                    else:
                        response = session.post(server.url + "/cbmir/query",
                                                data=rng.choice(seed), timeout=30,
                                                headers={"Content-Type": "application/dicom"})
                        record("query_upload", started, response)
                except requests.RequestException as error:
                    record("similar", started, error=repr(error))

        threads = [threading.Thread(target=uploader) for _ in range(args.uploaders)]
        threads += [threading.Thread(target=querier, args=(n,)) for n in range(args.queriers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + 60)
        hung = sum(t.is_alive() for t in threads)
        drain_started = time.perf_counter()
        status = server.wait_idle(600)
        drain = time.perf_counter() - drain_started
        instances = len(server.get("/instances").json())
    finally:
        server.stop()
    results = {"seconds": args.seconds, "uploaders": args.uploaders, "queriers": args.queriers,
               "errors": len(errors), "error_samples": errors[:20], "hung_threads": hung,
               "drain_seconds_after_run": round(drain, 2), "instances_in_orthanc": instances,
               "indexed": status["indexed"], "failed": status["failed"],
               "index": status["index"]}
    lines = ["| operation | requests | per s | p50 ms | p95 ms | p99 ms | max ms |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind, values in samples.items():
        summary = common.percentiles(values)
        summary["per_second"] = round(len(values) / args.seconds, 1)
        results[kind] = summary
        lines.append(f"| {kind} | {summary['n']} | {summary['per_second']} | "
                     f"{summary.get('p50_ms')} | {summary.get('p95_ms')} | {summary.get('p99_ms')} | "
                     f"{summary.get('max_ms')} |")
    ok = not errors and not hung and status["indexed"] == instances
    results["goal_no_errors_no_deadlock"] = ok
    lines += ["", f"- {args.uploaders} uploaders + {args.queriers} queriers (80% GET /cbmir/similar, "
              f"20% POST /cbmir/query with a DICOM) for {args.seconds} s",
              f"- errors {len(errors)}, threads still blocked {hung}; queue drained "
              f"{round(drain, 1)} s after the run; {status['indexed']} indexed of {instances} "
              f"instances, failed {status['failed']}",
              f"- goal no errors, no deadlock, everything indexed: {'met' if ok else 'MISSED'}"]
    common.write_results("load", env, results, lines, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
