"""Benchmark: Orthanc's peak memory while it stores (and CBMIR indexes) large images,
plugin on vs off in the same run (issue 11; the query half is bench/memory_query*).

Why: a 0.5 MB deflated DICOM can declare 4 frames of 8192 x 8192 16-bit pixels (512 MiB
once inflated); before the header-first limits Orthanc reached ~3 GB with the plugin
against ~0.5 GB without it. Peak RSS is the kernel's high-water mark of the Orthanc
process (VmHWM in /proc/<pid>/status), read after each file has been stored and, with
the plugin, fully processed (indexed or skipped). Each file gets a fresh Orthanc.

    .venv/bin/python bench/memory_ingest.py                 # the bomb and a large allowed image
    .venv/bin/python bench/memory_ingest.py --cases bomb    # the bomb only
Goal: peak with the plugin <= 1.5 x peak without it, for the same file.
"""
from __future__ import annotations

import argparse
import time

import common


def kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


CASES = {  # name -> (rows, columns, frames, noise): what deflated_image builds
    "bomb": (8192, 8192, 4, False),          # over MaxFramePixels: skipped from its header
    "large": (4096, 4096, 8, True),          # = MaxInstancePixels: decoded and indexed
}


def measure(case: str, plugin: bool, data: bytes) -> dict:
    home = common.scratch_dir(f"cbmir-mem-{case}-{'on' if plugin else 'off'}-")
    server = common.server(home, plugin=plugin)
    server.start(wait_plugin=plugin)
    try:
        pid = server.process.pid
        idle = kib(pid, "VmHWM")
        started = time.monotonic()
        instance = server.upload(data)["ID"]
        outcome = None
        if plugin:
            server.wait_idle(timeout=600)
            answer = server.get(f"/cbmir/similar/{instance}")
            outcome = answer.status_code if answer.status_code != 422 else \
                "422 " + answer.json()["error"][:80]
        else:
            time.sleep(2)
        return {"plugin": plugin, "idle_peak_mib": round(idle / 1024, 1),
                "peak_mib": round(kib(pid, "VmHWM") / 1024, 1),
                "rss_after_mib": round(kib(pid, "VmRSS") / 1024, 1),
                "seconds": round(time.monotonic() - started, 2), "cbmir_answer": outcome}
    finally:
        server.stop(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--name", default="memory-ingest")
    args = parser.parse_args()
    from support.bombs import deflated_image

    env = common.environment()
    results, lines = {}, ["| file | Orthanc alone: peak RSS | with CBMIR: peak RSS (idle) | ratio "
                          "| CBMIR answer |", "|---|---|---|---|---|"]
    for case in args.cases:
        rows, columns, frames, noise = CASES[case]
        data = deflated_image(rows, columns, frames, patient_id=f"MEM-{case}", noise=noise)
        off = measure(case, False, data)
        on = measure(case, True, data)
        ratio = round(on["peak_mib"] / off["peak_mib"], 2)
        results[case] = {"rows": rows, "columns": columns, "frames": frames,
                         "file_bytes": len(data), "off": off, "on": on, "ratio": ratio}
        lines.append(f"| {case}: {frames} x {rows} x {columns} 16-bit, deflated "
                     f"{len(data) / 2**20:.1f} MB | {off['peak_mib']:.0f} MiB | "
                     f"{on['peak_mib']:.0f} MiB ({on['idle_peak_mib']:.0f}) | {ratio} | "
                     f"{on['cbmir_answer']} |")
        print(lines[-1], flush=True)
    lines.append("")
    lines.append("Goal: ratio <= 1.5 for the same file.")
    common.write_results(args.name, env, results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
