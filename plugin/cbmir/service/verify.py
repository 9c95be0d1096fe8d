"""POST /cbmir/verify: re-embed a sample of indexed instances from their files and compare.

Why: an index whose vectors disagree with its images answers wrongly without any
error. Releases before the single decoding path (docs/design.md, "Data path")
indexed some pixel layouts through Orthanc 1.10's decoder, which reads them wrongly
(BitsStored 8 in 16, junk in unused high bits, signed 12-bit values, per-frame
rescale); a model file replaced in place or a damaged store does the same. This
route takes each sampled instance's file from Orthanc (GetDicomForInstance), runs
it through `cbmir.core.decode.iter_frames` + the model, and reports every frame whose
stored vector differs, with the fix: `POST /cbmir/reindex`.

Body (JSON, optional): {"sample": N (default 100, at most 2000), "instances": [ids]}.
"""
from __future__ import annotations

import json
import random
import threading

import numpy as np

from cbmir.core import decode
from cbmir.service.gateway import NotFound
from cbmir.service.routes import require_engine
from cbmir.vectors.search import ApiError

DEFAULT_SAMPLE = 100
MAX_SAMPLE = 2000
MIN_COSINE = 0.999  # stored and re-computed vectors of the same file agree to ~1e-6
MAX_LISTED = 200    # mismatches listed in the answer (all are counted)
FIX = ("POST /cbmir/reindex: re-embeds every instance through the current decoding path "
       "into a new index; the current one answers until it is done")


def parse_request(body: bytes) -> tuple[int, list[str] | None]:
    """(sample size, explicit instance IDs or None); ApiError 400 on a bad body."""
    if not body or not body.strip():
        return DEFAULT_SAMPLE, None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be JSON: {\"sample\": N} or "
                            "{\"instances\": [\"<orthanc id>\", ...]}") from None
    if not isinstance(document, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = set(document) - {"sample", "instances"}
    if unknown:
        raise ApiError(400, f"unknown field(s) {sorted(unknown)}: use 'sample' or 'instances'")
    sample = document.get("sample", DEFAULT_SAMPLE)
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= MAX_SAMPLE:
        raise ApiError(400, f"'sample' must be an integer from 1 to {MAX_SAMPLE}")
    instances = document.get("instances")
    if instances is not None:
        if (not isinstance(instances, list) or not 1 <= len(instances) <= MAX_SAMPLE
                or not all(isinstance(i, str) and i for i in instances)):
            raise ApiError(400, f"'instances' must be a list of 1 to {MAX_SAMPLE} instance IDs")
    return sample, instances


def _embed_file(embedder, dicom: bytes, batch_size: int) -> np.ndarray:
    """Vectors of every frame of a DICOM file through the one decoding path, in batches."""
    dataset = decode.read_dataset(dicom)
    vectors, batch = [], []
    for frame in decode.iter_frames(dataset):
        batch.append(frame)
        if len(batch) >= batch_size:
            vectors.append(embedder.embed_images(batch))
            batch = []
    if batch:
        vectors.append(embedder.embed_images(batch))
    return np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), np.float32)


def check_instance(gateway, engine, instance: str, generation: int) -> tuple[int, list[dict]]:
    """(frames compared, problems) for one instance."""
    rows = engine.indexed_rows(instance, generation)
    if not rows:
        return 0, [{"instance": instance, "frame": None, "cosine": None,
                    "reason": "not in the index"}]
    sop = rows[0]["sop_uid"]
    embedder = engine.embedder
    if rows[0]["model_version"] != embedder.version:
        return 0, [{"instance": instance, "sop_instance_uid": sop, "frame": None, "cosine": None,
                    "reason": f"indexed by model {rows[0]['model_version']}, "
                              f"the plugin runs {embedder.version}"}]
    try:
        dicom = bytes(gateway.instance_dicom(instance))
    except NotFound:
        return 0, [{"instance": instance, "sop_instance_uid": sop, "frame": None, "cosine": None,
                    "reason": "indexed but no longer in Orthanc"}]
    try:
        vectors = _embed_file(embedder, dicom, engine.config.batch_size)
    except (decode.NotAnImage, decode.UndecodableImage, ValueError) as error:
        return 0, [{"instance": instance, "sop_instance_uid": sop, "frame": None, "cosine": None,
                    "reason": f"indexed but its file no longer decodes: {error}"}]
    stored = {row["frame"]: row["vector"] for row in rows}
    problems = []
    for frame, vector in enumerate(vectors):
        if frame not in stored:
            problems.append({"instance": instance, "sop_instance_uid": sop, "frame": frame,
                             "cosine": None, "reason": "frame not in the index"})
            continue
        cosine = float(np.dot(stored.pop(frame), vector))
        if not cosine >= MIN_COSINE:
            problems.append({"instance": instance, "sop_instance_uid": sop, "frame": frame,
                             "cosine": round(cosine, 4),
                             "reason": "stored vector differs from the file's"})
    problems += [{"instance": instance, "sop_instance_uid": sop, "frame": frame, "cosine": None,
                  "reason": "indexed frame not in the file"} for frame in sorted(stored)]
    return len(vectors), problems


def verify(gateway, engine, body: bytes, rng: random.Random | None = None) -> dict:
    """Check a random sample (or the listed instances) of the answering index."""
    engine = require_engine(engine)
    sample, chosen = parse_request(body)
    generation = engine.answering_generation
    indexed = engine.indexed_instances(generation)
    if chosen is None:
        chosen = (rng or random.Random()).sample(indexed, min(sample, len(indexed)))
    frames, problems = 0, []
    for instance in chosen:
        count, found = check_instance(gateway, engine, instance, generation)
        frames += count
        problems += found
    answer = {"indexed_instances": len(indexed), "checked_instances": len(chosen),
              "checked_frames": frames, "min_cosine": MIN_COSINE,
              "model_version": engine.embedder.version,
              "mismatched_instances": len({p["instance"] for p in problems}),
              "mismatches": problems[:MAX_LISTED], "ok": not problems}
    if problems:
        answer["fix"] = FIX
    return answer


def run_in_thread(function):
    """Run `function` in a Python thread and return its result (or raise its error).

    Why: REST callbacks run on Orthanc's HTTP threads, whose small stacks a deeply
    nested stored file can overflow while pydicom parses it (a crash, not an
    exception); Python threads get the usual stack, like the ingest worker."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=target, name="cbmir-verify", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
