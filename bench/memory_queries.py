"""Memory benchmark, query half (issue 11 point 3): Orthanc's RSS over 10,000 POST /cbmir/query.

Why three servers in one run: orthanc-python 4.0 leaks every REST request's body, headers and
arguments (plugin/cbmir/service/rest_leak.py says why); the plugin frees them. The same requests go to
- "on": the plugin as shipped (workaround active),
- "on-leaky": the plugin with the workaround off (CBMIR_REST_LEAK_WORKAROUND=off): the leak,
- "off": Orthanc without the Python plugin (the same POST, answered 404 by Orthanc itself):
  what Orthanc costs on its own.
Two loads: `--queries` real queries (a small PNG slice, embedded and searched: the whole query
path) and `--large` POSTs of `--large-mib` MiB (refused with 422 after reading: the body size
dominates, so a leak shows at once). RSS is read from /proc after a warm-up and at the end;
the slope is (end - after warm-up) / requests. Figures: docs/benchmarks/memory-queries.md.

    .venv/bin/python bench/memory_queries.py                     # 10,000 queries, 300 x 1 MiB
    .venv/bin/python bench/memory_queries.py --queries 2000 --large 100   # quicker

About 15 minutes on 2 busy cores (a query embeds one slice: ~10 ms).
"""
from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import common
import numpy as np
import requests

WARMUP = 200


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png_slice(size: int = 128) -> bytes:
    """A noisy slice, so the PNG body is ~16 KB (a leaked body then shows in RSS)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = (np.add.outer(np.arange(size), np.arange(size)) % 256
              + rng.integers(0, 8, (size, size))).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def drive(server, body: bytes, content_type: str, count: int, warmup: int) -> dict:
    """`count` POST /cbmir/query; RSS at start, after `warmup` requests and at the end."""
    session = requests.Session()
    session.auth = server.auth
    url = server.url + "/cbmir/query"
    headers = {"Content-Type": content_type, "X-CBMIR-K": "5", "X-CBMIR-Label": "low grade glioma"}
    pid = server.process.pid
    start_rss, statuses = rss_mib(pid), {}
    warm_rss, began, samples = start_rss, time.monotonic(), []
    every = max(1, count // 10)
    for n in range(count):
        if n == warmup:
            warm_rss = rss_mib(pid)
        if n % every == 0:
            samples.append((n, round(rss_mib(pid), 1)))
        status = session.post(url, data=body, headers=headers, timeout=60).status_code
        statuses[status] = statuses.get(status, 0) + 1
    seconds = time.monotonic() - began
    time.sleep(0.5)
    end_rss = rss_mib(pid)
    measured = max(1, count - warmup)
    samples.append((count, round(end_rss, 1)))
    half = next((rss for n, rss in samples if n >= count // 2), end_rss)
    return {"requests": count, "body_bytes": len(body), "statuses": statuses,
            "seconds": round(seconds, 1), "rss_start_mib": round(start_rss, 1),
            "rss_after_warmup_mib": round(warm_rss, 1), "rss_end_mib": round(end_rss, 1),
            "growth_after_warmup_mib": round(end_rss - warm_rss, 1),
            "slope_bytes_per_request": round((end_rss - warm_rss) * 2**20 / measured),
            "slope_second_half_bytes_per_request": round((end_rss - half) * 2**20
                                                         / max(1, count - count // 2)),
            "rss_samples_mib": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--leaky-queries", type=int, default=2_000,
                        help="queries for the server without the workaround (its leak shows early)")
    parser.add_argument("--large", type=int, default=300, help="large-body POSTs per server")
    parser.add_argument("--large-mib", type=float, default=1.0)
    parser.add_argument("--model", type=Path, default=common.DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args()
    env = common.environment()
    work = common.scratch_dir("cbmir-bench-memory-")
    settings = {"MaxUploadBytes": 8 * 2**20}
    servers = {"on": common.server(work / "on", model=args.model, cbmir=settings),
               "on-leaky": common.server(work / "leaky", model=args.model, cbmir=settings),
               "off": common.server(work / "off", plugin=False)}
    servers["on"].start()
    os.environ["CBMIR_REST_LEAK_WORKAROUND"] = "off"
    try:
        servers["on-leaky"].start()
    finally:
        del os.environ["CBMIR_REST_LEAK_WORKAROUND"]
    servers["off"].start(wait_plugin=False)
    seed = common.make_instances(20, tag="MEM", seed=3)  # something to find
    for name in ("on", "on-leaky"):
        for blob in seed:
            servers[name].upload(blob)
        servers[name].wait_idle()
    png = png_slice()
    large = b"\x00not an image" + os.urandom(int(args.large_mib * 2**20))
    results: dict = {"settings": {"queries": args.queries, "leaky_queries": args.leaky_queries,
                                  "large": args.large,
                                  "large_mib": args.large_mib, "warmup": WARMUP}}
    try:
        for name, server in servers.items():
            count = args.leaky_queries if name == "on-leaky" else args.queries
            print(f"{name}: {count} queries ...", flush=True)
            results[f"{name}/queries"] = drive(server, png, "image/png", count, WARMUP)
            print(f"  {results[f'{name}/queries']}", flush=True)
            print(f"{name}: {args.large} x {args.large_mib:g} MiB ...", flush=True)
            results[f"{name}/large"] = drive(server, large, "image/png", args.large,
                                             min(20, args.large // 4))
            print(f"  {results[f'{name}/large']}", flush=True)
        results["leak_workaround"] = servers["on"].status().get("rest_leak_workaround")
        results["leak_workaround_leaky_server"] = servers["on-leaky"].status().get(
            "rest_leak_workaround")
    finally:
        for server in servers.values():
            server.stop()
    lines = ["| server | load | requests | body | answers | RSS start / after warm-up / end (MiB) "
             "| growth after warm-up | slope per request (after warm-up / second half) |",
             "|---|---|---|---|---|---|---|---|"]
    for key, row in results.items():
        if "/" not in key:
            continue
        name, load = key.split("/")
        lines.append(f"| {name} | {load} | {row['requests']} | {row['body_bytes']:,} B | "
                     f"{row['statuses']} | {row['rss_start_mib']} / {row['rss_after_warmup_mib']} / "
                     f"{row['rss_end_mib']} | {row['growth_after_warmup_mib']} MiB | "
                     f"{row['slope_bytes_per_request']:,} B / "
                     f"{row['slope_second_half_bytes_per_request']:,} B |")
    lines += ["", "on: the plugin as shipped (leak workaround active); on-leaky: the same plugin "
              "with CBMIR_REST_LEAK_WORKAROUND=off; off: Orthanc without the Python plugin "
              "(POST /cbmir/query answered 404 by Orthanc). Slope = RSS growth after the "
              "warm-up / requests after it."]
    common.write_results("memory-queries", env, results, lines, args.out)


if __name__ == "__main__":
    main()
