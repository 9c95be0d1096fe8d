"""Benchmark 2: indexing throughput (FP32 and INT8) and time from store to searchable.

Why three measurements: the in-process component timing says where the time
goes (decode, preprocess, embed, store + index) without Orthanc in the way; the
end-to-end run through a real Orthanc is what an admin sees (an upload burst,
then the time until every image is indexed); the steady-rate run checks the
"searchable within seconds" promise at a realistic arrival rate.

    .venv/bin/python bench/indexing.py

The INT8 model is the shipped `models/default.onnx`; its FP32 original is the
`model.onnx` that `make benchmark-figshare` leaves in the training folder named
by the model card (or `--fp32 PATH`; without one only INT8 is measured). Each model's card must say the precision it is measured as.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

import common


def default_fp32() -> Path:
    """The FP32 export the shipped INT8 model was quantized from: its card names the training
    folder (`training_config.out`, e.g. runs/benchmark-e16/full), present after
    `make benchmark-figshare`."""
    card = json.loads(common.DEFAULT_MODEL.with_suffix(".json").read_text())
    out = card.get("training_config", {}).get("out", "runs/benchmark/full")
    return common.REPO / out / "model.onnx"


def precision(model: Path) -> str:
    """The precision the model card declares ('fp32' when it says nothing)."""
    card = json.loads(model.with_suffix(".json").read_text())
    return str(card.get("precision", "fp32")).lower()


def int8_model(fp32: Path) -> Path:
    """The shipped models/default.onnx when it is INT8, else a static INT8 model made once
    with the project's own `cbmir quantize` (200 figshare calibration images)."""
    if precision(common.DEFAULT_MODEL) == "int8":
        return common.DEFAULT_MODEL
    made = common.REPO / "runs" / "bench" / f"{fp32.stem}-int8.onnx"
    if not made.is_file():
        made.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(common.REPO / ".venv" / "bin" / "cbmir"), "quantize", "--model",
                        str(fp32), "--out", str(made), "--manifest",
                        str(common.FIGSHARE / "manifest.csv"), "--calibration-images", "200"],
                       check=True)
    return made


def component_timing(model: Path, datas: list[bytes], batch: int, lanes: int) -> dict:
    """Per-image seconds of each ingest stage, one lane in this process; then the whole
    pipeline as the worker runs it (cbmir.service.lanes: `lanes` lanes, single-thread
    onnxruntime session, store + index written by the calling thread)."""
    from cbmir.core import decode
    from cbmir.core.embed import Embedder
    from cbmir.core.preprocess import preprocess
    from cbmir.service.config import Config
    from cbmir.service.lanes import Lanes, lane_count, split
    from cbmir.vectors.index import VectorIndex
    from cbmir.vectors.store import Record, Store

    lanes = lane_count(lanes, 0, on_gpu=False)  # as the worker: 0 = one lane per core
    embedder = Embedder(model, threads=1, allow_spinning=False)  # as Engine.worker_embedder
    work = common.scratch_dir("cbmir-bench-idx-")
    shipped = Config()
    store = Store(work)
    index = VectorIndex(work, trees=shipped.annoy_trees, search_k=shipped.annoy_search_k,
                        candidates=shipped.candidates, rebuild_threshold=10**9)
    embedder.embed_inputs(np.zeros((batch, 1, embedder.input_size, embedder.input_size),
                                   np.float32))  # warm-up

    def keep(start, vectors, prefix="i"):
        records = [Record(instance=f"{prefix}{start + n}", frame=0, vector=v,
                          sop_uid=f"1.2.{prefix}.{start + n}", model_version=embedder.version)
                   for n, v in enumerate(vectors)]
        index.add(store.add(records, 1), vectors)

    times = {"decode": 0.0, "preprocess": 0.0, "embed": 0.0, "store_index": 0.0}
    started = time.perf_counter()
    for start in range(0, len(datas), batch):
        t0 = time.perf_counter()
        frames = [decode.decode_dicom_bytes(d)[0] for d in datas[start:start + batch]]
        t1 = time.perf_counter()
        inputs = np.stack([preprocess(f, embedder.input_size) for f in frames])
        t2 = time.perf_counter()
        vectors = embedder.embed_inputs(inputs)
        t3 = time.perf_counter()
        keep(start, vectors)
        t4 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key] += seconds
    total = time.perf_counter() - started
    out = {key: {"ms_per_image": round(1000 * s / len(datas), 3),
                 "images_per_s": round(len(datas) / s, 1)} for key, s in times.items()}
    out["pipeline"] = {"ms_per_image": round(1000 * total / len(datas), 3),
                       "images_per_s": round(len(datas) / total, 1)}

    def lane(chunk):
        return embedder.embed_inputs(np.stack([
            preprocess(decode.decode_dicom_bytes(d)[0], embedder.input_size) for d in chunk]))

    pool = Lanes(lanes)
    started = time.perf_counter()
    for start in range(0, len(datas), batch):
        keep(start, np.concatenate(pool.map(lane, split(datas[start:start + batch], lanes))),
             prefix="lane")
    total = time.perf_counter() - started
    pool.shutdown()
    out["pipeline_lanes"] = {"ms_per_image": round(1000 * total / len(datas), 3),
                             "images_per_s": round(len(datas) / total, 1)}
    out.update(images=len(datas), batch=batch, lanes=lanes, input_size=embedder.input_size)
    return out


def upload_all(server, datas: list[bytes], clients: int = 4) -> list[str]:
    session = requests.Session()
    session.auth = server.auth

    def one(data):
        response = session.post(server.url + "/instances", data=data, timeout=60,
                                headers={"Content-Type": "application/dicom"})
        response.raise_for_status()
        return response.json()["ID"]

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, datas))


def end_to_end(server, datas: list[bytes]) -> dict:
    """Upload a burst (4 clients), then wait until all are indexed."""
    before = server.status()["indexed"]
    started = time.perf_counter()
    upload_all(server, datas)
    uploaded = time.perf_counter() - started
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = server.status()
        if status["indexed"] - before >= len(datas) and status["pending"] == 0:
            break
        time.sleep(0.05)
    total = time.perf_counter() - started
    return {"images": len(datas), "upload_seconds": round(uploaded, 2),
            "all_indexed_seconds": round(total, 2),
            "images_per_s": round(len(datas) / total, 1),
            "worker_reported_images_per_s": status.get("ingest", {}).get("images_per_second"),
            "indexed": status["indexed"] - before, "failed": status["failed"]}


def catch_up(home: Path, model: Path, datas: list[bytes], cbmir: dict, profile: bool) -> dict:
    """Store `datas` with the plugin off, then start it: pure indexing throughput in Orthanc
    (decode + preprocess + embed + store + index), no uploads competing for the CPU."""
    plain = common.server(home, plugin=False)
    plain.start(wait_plugin=False)
    try:
        upload_all(plain, datas)
    finally:
        plain.stop()
    server = common.server(home, model=model, cbmir=cbmir)
    started = time.perf_counter()
    server.start()
    spy = None
    if profile:
        spy = subprocess.Popen([str(common.REPO / ".venv" / "bin" / "py-spy"), "record", "-p",
                                str(server.process.pid), "-d", "8", "-f", "raw", "-o",
                                str(home / "profile.txt"), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, first = time.monotonic() + 900, None
        while time.monotonic() < deadline:
            status = server.status()
            if first is None and status["indexed"] > 0:
                first = (time.perf_counter(), status["indexed"])
            if status["indexed"] >= len(datas) and status["pending"] == 0:
                break
            time.sleep(0.05)
        total = time.perf_counter() - started
        steady = (len(datas) - first[1]) / max(1e-6, time.perf_counter() - first[0])
    finally:
        if spy is not None:
            spy.wait(60)
        server.stop()
    return {"images": len(datas), "start_to_all_indexed_seconds": round(total, 2),
            "images_per_s": round(steady, 1), "images_per_s_incl_start": round(len(datas) / total, 1),
            "worker_reported_images_per_s": status.get("ingest", {}).get("images_per_second"),
            "indexed": status["indexed"], "failed": status["failed"],
            "profile": str(home / "profile.txt") if profile else None}


def time_to_searchable(server, datas: list[bytes], rate: float) -> dict:
    """Upload at a steady rate; a poller records when each image first answers 200."""
    session = requests.Session()
    session.auth = server.auth
    stored: list[tuple[str, float]] = []
    searchable: dict[str, float] = {}
    done = threading.Event()

    def poll():
        position = 0
        poller = requests.Session()
        poller.auth = server.auth
        deadline = time.monotonic() + len(datas) / rate + 120
        while time.monotonic() < deadline:
            if position >= len(stored):
                if done.is_set() and position >= len(datas):
                    return
                time.sleep(0.01)
                continue
            instance, _ = stored[position]
            answer = poller.get(f"{server.url}/cbmir/similar/{instance}",
                                params={"k": 1, "exclude_same_patient": "false"}, timeout=30)
            if answer.status_code == 200:
                searchable[instance] = time.perf_counter()
                position += 1
            else:
                time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start = time.perf_counter()
    for n, data in enumerate(datas):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        response = session.post(server.url + "/instances", data=data, timeout=60,
                                headers={"Content-Type": "application/dicom"})
        response.raise_for_status()
        stored.append((response.json()["ID"], time.perf_counter()))
    achieved = len(datas) / (time.perf_counter() - start)
    done.set()
    thread.join()
    delays = [searchable[i] - t for i, t in stored if i in searchable]
    out = common.percentiles(delays)
    out.update(rate_target=rate, rate_achieved=round(achieved, 1), images=len(datas),
               never_searchable=len(datas) - len(delays))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=default_fp32(),
                        help="FP32 model (default: the FP32 export of the shipped model)")
    parser.add_argument("--int8", type=Path, help="INT8 model; default models/default.onnx "
                        "(INT8), else made with `cbmir quantize` into runs/bench/")
    parser.add_argument("--component-images", type=int, default=400)
    parser.add_argument("--burst-images", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--index-threads", type=int, default=0,
                        help="CBMIR.IndexThreads: the worker's lanes (0: the plugin's default, "
                        "one per core)")
    parser.add_argument("--profile", action="store_true", help="py-spy the INT8 catch-up")
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args()
    env = common.environment()
    models = {"int8": args.int8 or int8_model(args.fp32)}
    if args.fp32.is_file():
        models = {"fp32": args.fp32, **models}
    else:  # a fresh checkout ships only the INT8 model
        print(f"no FP32 model at {args.fp32} (made by `make benchmark-figshare`, or pass --fp32): "
              "measuring INT8 only", flush=True)
    for name, model in models.items():
        if precision(model) != name:  # an INT8 file measured as FP32 would mislabel every row
            parser.error(f"{model}'s card says {precision(model)}, not {name}")
    count = max(args.component_images, args.burst_images, int(args.rate * args.rate_seconds))
    print(f"making {count} DICOM instances ...", flush=True)
    datas = common.make_instances(count, tag="IDX")
    results = {"models": {k: str(v) for k, v in models.items()}}
    lines = ["| precision | stage | ms/image | images/s |", "| --- | --- | --- | --- |"]
    for name, model in models.items():
        comp = component_timing(model, datas[:args.component_images], args.batch,
                                args.index_threads)
        results[f"components_{name}"] = comp
        for stage in ("decode", "preprocess", "embed", "store_index", "pipeline",
                      "pipeline_lanes"):
            lines.append(f"| {name} | {stage} | {comp[stage]['ms_per_image']} | "
                         f"{comp[stage]['images_per_s']} |")
        print(f"{name} components: {comp['pipeline']}", flush=True)
    for name, model in models.items():
        cbmir = {"IndexThreads": args.index_threads, "BatchSize": args.batch}
        server = common.server(common.scratch_dir(f"cbmir-bench-e2e-{name}-"),
                               model=model, cbmir=cbmir)
        server.start()
        try:
            results[f"end_to_end_{name}"] = end_to_end(server, datas[:args.burst_images])
        finally:
            server.stop()
        print(f"{name} burst: {results[f'end_to_end_{name}']}", flush=True)
        results[f"catch_up_{name}"] = catch_up(
            common.scratch_dir(f"cbmir-bench-cu-{name}-"), model,
            datas[:args.burst_images], cbmir, args.profile and name == "int8")
        print(f"{name} catch-up: {results[f'catch_up_{name}']}", flush=True)
    server = common.server(common.scratch_dir("cbmir-bench-rate-"),
                           model=models["int8"], cbmir={"IndexThreads": args.index_threads})
    server.start()
    try:
        steady = time_to_searchable(server, datas[:int(args.rate * args.rate_seconds)], args.rate)
    finally:
        server.stop()
    results["time_to_searchable_int8"] = steady
    print(f"time to searchable: {steady}", flush=True)
    lines += ["", "Through a real Orthanc: *burst* = 4 clients upload while the plugin indexes "
              "(upload start to all indexed); *catch-up* = images stored with the plugin off, "
              "then Orthanc + plugin started (seconds: start to all indexed, incl. model load; "
              "images/s: from the first indexed image to the last, indexing alone); worker = the rate /cbmir/status reports (time inside the worker's batches).",
              "", "| precision | mode | images | seconds | images/s | worker images/s |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name in models:
        for mode, key in (("burst", "all_indexed_seconds"), ("catch-up", "start_to_all_indexed_seconds")):
            r = results[f"{'end_to_end' if mode == 'burst' else 'catch_up'}_{name}"]
            lines.append(f"| {name} | {mode} | {r['images']} | {r[key]} | {r['images_per_s']} | "
                         f"{r['worker_reported_images_per_s']} |")
    int8 = results["catch_up_int8"]["images_per_s"]
    results["goals"] = {"int8_ge_150_img_s": int8 >= 150,
                        "searchable_p95_le_2s": steady.get("p95_ms", 1e9) <= 2000}
    lines += ["", f"Store to searchable at {steady['rate_target']} images/s "
              f"(achieved {steady['rate_achieved']}, {steady['images']} images, INT8): "
              f"p50 {steady.get('p50_ms')} ms, p95 {steady.get('p95_ms')} ms, max "
              f"{steady.get('max_ms')} ms, never searchable {steady['never_searchable']}.", "",
              f"- goal >= 150 images/s INT8 (catch-up through Orthanc): "
              f"{'met' if results['goals']['int8_ge_150_img_s'] else 'MISSED'} ({int8}; "
              f"in-process pipeline {results['components_int8']['pipeline_lanes']['images_per_s']} "
              f"in {results['components_int8']['lanes']} lane(s), "
              f"{results['components_int8']['pipeline']['images_per_s']} in one)",
              f"- goal p95 <= 2 s to searchable at 20 images/s: "
              f"{'met' if results['goals']['searchable_p95_le_2s'] else 'MISSED'}",
              f"- model input size {results['components_int8']['input_size']} px; the worker "
              "runs at nice 10, so a busy machine slows indexing before it slows storing; "
              "*pipeline* is one lane, *pipeline_lanes* the worker's lanes (IndexThreads)."]
    common.write_results("indexing", env, results, lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
