"""Benchmark 1: does storing an image get slower with the CBMIR plugin on?

Why this shape: two real Orthancs run side by side with the same configuration,
one without the Python plugin. Small blocks alternate between them (ABBA order)
so that drifting background load (this machine is shared) hits both alike. The
plugin-on server is *not* drained before its own uploads (its worker indexes
while images keep arriving, as in a real archive) but it is drained before the
plugin-off round starts, so its worker never steals CPU from the baseline. The
worker holds back for up to 1.2 s while images arrive (cbmir.service.workqueue.Pacer):
with `--block 100` the plugin-on phases last longer than that, so it indexes
during its own uploads; the report says how many images it indexed that way.

    .venv/bin/python bench/store_overhead.py --images 600 --block 10
    .venv/bin/python bench/store_overhead.py --images 600 --block 100 --cstore-single 10 --name store-overhead-block100
"""
from __future__ import annotations

import argparse
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

import common


def rest_block(server, datas: list[bytes], clients: int) -> tuple[list[float], float]:
    """POST /instances for each dataset; per-request latencies and wall time."""
    session = requests.Session()
    session.auth = server.auth
    url = server.url + "/instances"

    def one(data: bytes) -> float:
        started = time.perf_counter()
        response = session.post(url, data=data, headers={"Content-Type": "application/dicom"},
                                timeout=60)
        response.raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    if clients == 1:
        latencies = [one(d) for d in datas]
    else:
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, datas))
    return latencies, time.perf_counter() - started


def storescu(server, paths: list[Path]) -> float:
    started = time.perf_counter()
    result = subprocess.run(["storescu", "-aet", "BENCH", "-aec", server.aet, "127.0.0.1",
                             str(server.dicom_port), *map(str, paths)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return time.perf_counter() - started


def cstore_block(server, paths: list[Path], per_file: int) -> tuple[list[float], float]:
    """`per_file` single-file associations (latency, incl. storescu start) then one batch."""
    latencies = [storescu(server, [p]) for p in paths[:per_file]]
    wall = storescu(server, paths[per_file:])
    return latencies, wall


def plugin_settings(args) -> dict:
    settings = {"Threads": 0}
    if args.index_delay is not None:
        settings["IndexDelaySeconds"] = args.index_delay
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images per server per transport")
    parser.add_argument("--block", type=int, default=10, help="images per block per transport")
    parser.add_argument("--clients", type=int, default=1, help="parallel REST clients")
    parser.add_argument("--cstore-single", type=int, default=2,
                        help="single-file C-STORE associations per block (latency)")
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL)
    parser.add_argument("--control", action="store_true",
                        help="A/A control: the 'on' server runs without the plugin too, so the "
                             "ratios show this machine's noise floor")
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    parser.add_argument("--name", default="store-overhead", help="result file name")
    parser.add_argument("--index-delay", type=float,
                        help="CBMIR.IndexDelaySeconds of the plugin-on server (default: the plugin's)")
    args = parser.parse_args()
    if args.images % args.block or args.block <= args.cstore_single:
        parser.error("--images must be a multiple of --block, and --block > --cstore-single")
    env = common.environment()
    per, args.rounds = args.block, args.images // args.block
    work = common.scratch_dir("cbmir-bench-store-")
    print(f"making {4 * args.images} DICOM instances ...", flush=True)
    data = {key: common.make_instances(args.images, tag=f"ST{key}", seed=i)
            for i, key in enumerate(("on-rest", "off-rest", "on-dimse", "off-dimse"))}
    files = {}
    for key in ("on-dimse", "off-dimse"):
        (work / key).mkdir()
        files[key] = []
        for n, blob in enumerate(data[key]):
            path = work / key / f"{n:05d}.dcm"
            path.write_bytes(blob)
            files[key].append(path)
    servers = {"on": (common.server(work / "on", plugin=False) if args.control else
                      common.server(work / "on", plugin=True, model=args.model,
                                    cbmir=plugin_settings(args))),
               "off": common.server(work / "off", plugin=False)}
    servers["on"].start(wait_plugin=not args.control)
    servers["off"].start(wait_plugin=False)
    lat = {f"{m}-{t}": [] for m in ("on", "off") for t in ("rest", "dimse")}
    wall = {key: 0.0 for key in lat}
    count = {key: 0 for key in lat}
    left_for_drains = 0  # images still pending when a drain began (the rest: indexed meanwhile)
    try:
        for r in range(args.rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for mode in order:
                if mode == "off" and not args.control:
                    left_for_drains += servers["on"].status()["pending"]
                    servers["on"].wait_idle(600)  # its worker must not load the baseline
                server, chunk = servers[mode], slice(r * per, (r + 1) * per)
                latencies, seconds = rest_block(server, data[f"{mode}-rest"][chunk], args.clients)
                lat[f"{mode}-rest"] += latencies
                wall[f"{mode}-rest"] += seconds
                count[f"{mode}-rest"] += len(latencies)
                latencies, seconds = cstore_block(server, files[f"{mode}-dimse"][chunk],
                                                  args.cstore_single)
                lat[f"{mode}-dimse"] += latencies
                wall[f"{mode}-dimse"] += seconds
                count[f"{mode}-dimse"] += per - args.cstore_single
            if r % 5 == 4:
                print(f"block {r + 1}/{args.rounds}: load {common.load_average()}", flush=True)
        if not args.control:
            left_for_drains += servers["on"].status()["pending"]
        status = ({"indexed": 0, "failed": 0} if args.control
                  else servers["on"].wait_idle(600))
    finally:
        for s in servers.values():
            s.stop()
    results = {"images_per_server_per_transport": args.images, "block": args.block,
               "rest_clients": args.clients, "model": str(args.model),
               "plugin_settings": plugin_settings(args),
               "indexed_by_plugin": status["indexed"], "failed": status["failed"],
               "indexed_while_uploading": status["indexed"] - left_for_drains}
    lines = ["| transport | plugin | p50 ms | p95 ms | throughput img/s |",
             "| --- | --- | --- | --- | --- |"]
    for key in lat:
        summary = common.percentiles(lat[key])
        summary["throughput_img_s"] = round(count[key] / wall[key], 1)
        results[key] = summary
        mode, transport = key.split("-")
        lines.append(f"| {'REST' if transport == 'rest' else 'C-STORE'} | {mode} | "
                     f"{summary['p50_ms']} | {summary['p95_ms']} | {summary['throughput_img_s']} |")
    ratios = {}
    for transport in ("rest", "dimse"):
        on, off = results[f"on-{transport}"], results[f"off-{transport}"]
        ratios[transport] = {"p50": round(on["p50_ms"] / off["p50_ms"], 3),
                             "p95": round(on["p95_ms"] / off["p95_ms"], 3),
                             "throughput": round(off["throughput_img_s"] / on["throughput_img_s"], 3)}
    results["ratios_on_over_off"] = ratios
    worst = max(v for r in ratios.values() for v in r.values())
    results["goal_ratio_le_1_10"] = worst <= 1.10
    lines += ["", "Ratio plugin on / off (throughput: off/on, so > 1 means slower with the plugin):",
              *(f"- {('REST' if t == 'rest' else 'C-STORE')}: p50 {r['p50']}, p95 {r['p95']}, "
                f"throughput {r['throughput']}" for t, r in ratios.items()),
              f"- goal <= 1.10: {'met' if results['goal_ratio_le_1_10'] else 'MISSED'} "
              f"(worst {worst}); plugin indexed {status['indexed']}, failed {status['failed']}",
              "- C-STORE latency is one `storescu` run per file (process start + association "
              "included, the same on both sides); C-STORE throughput is one association per block.",
              "- The plugin-on server's worker indexes while its own blocks upload (as in a "
              "real archive) and is drained before each plugin-off block: "
              f"{results['indexed_while_uploading']} of {status['indexed']} images were indexed "
              "before a drain began (the worker holds back <= CBMIR.IndexDelaySeconds, default "
              "1.2 s, while images arrive).", f"- plugin settings: {plugin_settings(args)}"]
    if args.control:
        results["control"] = True
        lines.insert(0, "**A/A control run: neither server has the plugin** (the ratios are noise).\n")
    common.write_results(args.name, env, results, lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
