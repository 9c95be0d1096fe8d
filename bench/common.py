"""Shared helpers for the benchmarks: environment record, percentiles, result files, test data.

Why one place: every result must carry the same facts (CPU model, cores, date,
load average, git commit, the command that made it) so that figures from
different runs can be compared honestly, and every benchmark builds its DICOM
inputs the same way (real figshare pixels, synthetic patients, nothing from
../shared written into the repository).
"""
from __future__ import annotations

import atexit
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Set by `make bench` and the commands in bench/README.md, not edited here: the checkout's
# plugin, and tests/ for the helpers a benchmark shares with the tests (the real Orthanc of
# tests/orthanc_server.py, the DICOM builders of tests/support/).
PYTHONPATH = "plugin:export:tests"
try:
    import orthanc_server  # noqa: F401 - only the check that the path is set
except ImportError:
    sys.exit(f"bench: run from the repository root with PYTHONPATH={PYTHONPATH} "
             f"(make bench sets it), e.g. PYTHONPATH={PYTHONPATH} .venv/bin/python {sys.argv[0]}")
SHARED = REPO.parent / "shared" / "data"
FIGSHARE = SHARED / "figshare-cheng"
DICOM_MR = SHARED / "dicom-brain-mr"
RESULTS = REPO / "docs" / "benchmarks"
DEFAULT_MODEL = REPO / "models" / "default.onnx"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _run(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def busiest(count: int = 5) -> list[str]:
    """The processes using most CPU at start: other work sharing the cores, stated honestly."""
    lines = _run(["ps", "-eo", "pcpu,ni,comm", "--sort=-pcpu", "--no-headers"]).splitlines()
    return [" ".join(line.split()) for line in lines[:count]]


def environment() -> dict:
    """Hardware, date, load and commit: printed into every result file."""
    model = next((line.split(":", 1)[1].strip() for line in _run(["lscpu"]).splitlines()
                  if line.startswith("Model name")), platform.processor())
    return {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "cpu_model": model, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_start": load_average(), "uptime": _run(["uptime"]),
            "git_commit": _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
            "busiest_processes": busiest(),
            "python": platform.python_version(), "command": " ".join(sys.argv)}


def percentiles(values, points=(50, 95, 99)) -> dict:
    """Milliseconds summary of a list of seconds."""
    if not len(values):
        return {"n": 0}
    ms = np.asarray(values, dtype=np.float64) * 1000
    out = {"n": int(len(ms)), "mean_ms": round(float(ms.mean()), 3)}
    for p in points:
        out[f"p{p}_ms"] = round(float(np.percentile(ms, p)), 3)
    out["max_ms"] = round(float(ms.max()), 3)
    return out


def scratch_dir(prefix: str) -> Path:
    """A temporary folder removed when the benchmark exits (set CBMIR_BENCH_KEEP=1 to keep it).

    Why: each run stores thousands of instances and Annoy files (up to 1.4 GB at 1M vectors);
    left behind, a few runs fill the disk."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if not os.environ.get("CBMIR_BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def write_results(name: str, env: dict, results: dict, summary_lines: list[str],
                  out_dir: Path = RESULTS) -> Path:
    """docs/benchmarks/<name>.json and .md; the load average at the end is added too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env, load_average_end=load_average(), uptime_end=_run(["uptime"]))
    (out_dir / f"{name}.json").write_text(json.dumps({"environment": env, "results": results},
                                                     indent=2, default=str) + "\n")
    md = [f"# Benchmark: {name}", "",
          f"- command: `{env['command']}`",
          f"- date (UTC): {env['date_utc']}; commit {env['git_commit']}",
          f"- hardware: {env['cpu_model']}, {env['cores']} cores, {env['memory_gib']} GiB",
          f"- load average (1/5/15 min) at start {env['load_average_start']}, at end "
          f"{env['load_average_end']}",
          f"- busiest processes at start (%CPU, nice, name): {'; '.join(env['busiest_processes'])}",
          "", *summary_lines, "",
          f"Raw figures: `{name}.json`.", ""]
    path = out_dir / f"{name}.md"
    path.write_text("\n".join(md))
    print("\n".join(summary_lines))
    print(f"wrote {path} and {name}.json")
    return path


def figshare_rows(limit: int | None = None) -> list[dict]:
    with (FIGSHARE / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit else rows


def figshare_pixels(row: dict) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(FIGSHARE / row["path"]).convert("L"))


def make_instances(count: int, tag: str = "BENCH", per_study: int = 10, seed: int = 0) -> list[bytes]:
    """`count` distinct MR instances (real figshare pixels, cycled) as DICOM bytes."""
    from pydicom.uid import generate_uid
    from support.dicom_factory import mr_image

    rows = figshare_rows()
    rng = np.random.default_rng(seed)
    out, study, series = [], None, None
    for number in range(count):
        if number % per_study == 0:
            study, series = generate_uid(), generate_uid()
        row = rows[(number * 7 + seed) % len(rows)]
        pixels = figshare_pixels(row).astype(np.uint16) * 16
        if number >= len(rows):  # a cycled image still gets distinct pixels
            pixels = pixels + rng.integers(0, 4, pixels.shape, dtype=np.uint16)
        out.append(mr_image(pixels, f"{tag}-{number // per_study:05d}", study, series,
                            label=row["label"], instance_number=number % per_study + 1))
    return out


def server(home: Path, plugin: bool = True, model: Path | None = None,
           cbmir: dict | None = None):
    """An OrthancServer (tests/orthanc_server.py); plugin=False drops the Python plugin only."""
    from orthanc_server import OrthancServer

    overrides = {}
    if not plugin:
        template = json.loads((REPO / "orthanc.json").read_text())
        overrides["Plugins"] = [p for p in template["Plugins"] if "Python" not in p]
    return OrthancServer(home, model_path=model or DEFAULT_MODEL, cbmir=cbmir,
                         overrides=overrides)
