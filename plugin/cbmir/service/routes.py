"""REST handlers under /cbmir/ (behind Orthanc's own authentication).

Why every handler goes through `_answer`: an exception in a Python route becomes
a bare 500 with a traceback; clients need a JSON body with a status they can act
on (400 bad argument, 404 unknown, 409 not indexed yet, 422 not indexable,
413/415 bad upload, 503 no model). Handlers take `engine` and the Orthanc `gateway`
(gateway.py) as arguments so the wiring in wiring.py stays one line per route; they ask the
engine (its public methods), never its store or queue.
"""
from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import json
import re

from cbmir.core import decode
from cbmir.service.gateway import OrthancError, send_json, send_method_not_allowed
from cbmir.vectors.search import ApiError, Params, parse_params

ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
UID = re.compile(r"^[0-9.]{1,64}$")
PICTURE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/tiff")
DICOM_TYPES = ("application/dicom", "application/octet-stream", "")
HEADER_PREFIX = "x-cbmir-"


def answer(output, request: dict, method: str, handler, log) -> None:
    """Method check, then `handler()`; every failure becomes a JSON error."""
    try:
        if request.get("method") != method:
            send_method_not_allowed(output, method)
            return
        send_json(output, 200, handler())
    except ApiError as error:
        send_json(output, error.status, error.body())
    except RecursionError:  # deep nesting, parsed on a large stack (request_guard.py)
        send_json(output, 400, {"error": "input nested too deeply", "status": 400})
    except Exception as error:  # a request must never take Orthanc down
        log(f"CBMIR: internal error: {error!r}")
        send_json(output, 500, {"error": f"internal error: {type(error).__name__}: {error}",
                                "status": 500})


def require_engine(engine):
    """The engine when its model is loaded, else 503 (a missing engine is wiring's 503)."""
    if not engine.model_available:
        raise ApiError(503, f"model unavailable: {engine.model_error}",
                       model_path=str(engine.config.model_path))
    return engine


# -- GET /cbmir/similar/{id} -----------------------------------------------------------------
def resolve_instance(gateway, engine, identifier: str) -> str:
    """Orthanc instance ID or SOPInstanceUID -> Orthanc instance ID; ApiError 400/404."""
    identifier = identifier.strip()
    if ORTHANC_ID.match(identifier):
        return identifier
    if not UID.match(identifier):
        raise ApiError(400, f"'{identifier}' is neither an Orthanc instance ID nor a DICOM UID")
    known = engine.instances_for_sop(identifier)
    if not known:
        try:
            known = gateway.lookup_instances(identifier)
        except OrthancError:
            known = []
    if len(known) > 1:
        raise ApiError(409, f"SOPInstanceUID {identifier} is shared by {len(known)} instances: "
                            "ask by Orthanc instance ID", instances=known)
    if known:
        return known[0]
    raise ApiError(404, f"no instance with SOPInstanceUID {identifier}")


def indexed_rows(gateway, engine, instance: str) -> list[dict]:
    """Stored frames of an instance, or the reason why there are none (404/409/422)."""
    rows = engine.indexed_rows(instance)
    if rows:
        return rows
    rejection = engine.rejection(instance)
    if rejection is not None:
        raise ApiError(422, f"instance {instance} is not indexable: {rejection['reason']}",
                       instance=instance, kind=rejection["kind"])
    if not gateway.instance_exists(instance):
        raise ApiError(404, f"unknown instance {instance}", instance=instance)
    pending = engine.request_indexing(instance)  # known to Orthanc: make sure the worker sees it
    raise ApiError(409, f"instance {instance} is not indexed yet", instance=instance,
                   pending=pending)


def similar(gateway, engine, identifier: str, args: dict) -> dict:
    engine = require_engine(engine)
    params = parse_params(args)
    instance = resolve_instance(gateway, engine, identifier)
    rows = indexed_rows(gateway, engine, instance)
    frame = params.frame if params.frame is not None else rows[len(rows) // 2]["frame"]
    row = next((r for r in rows if r["frame"] == frame), None)
    if row is None:
        raise ApiError(400, f"instance {instance} has frames 0..{len(rows) - 1}, not {frame}")
    query = {"instance": instance, "frame": frame, "sop_instance_uid": row["sop_uid"],
             "study_instance_uid": row["study_uid"], "patient_id": row["patient_id"],
             "label": row["label"] or None}
    results = engine.search(row["vector"], params, query)
    return {"query": dict(query, params=params.__dict__), "results": results}


# -- POST /cbmir/query -----------------------------------------------------------------------
def split_upload(headers: dict, body: bytes) -> tuple[bytes, str, dict]:
    """Body -> (file bytes, content type, parameters).

    Raw image bodies take parameters from X-CBMIR-* headers; a JSON body carries the
    image in base64 plus the parameters. Orthanc 1.10 answers multipart/form-data
    POSTs itself (its uploader), so multipart only reaches newer Orthanc versions."""
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    params = {k[len(HEADER_PREFIX):].replace("-", "_"): v for k, v in headers.items()
              if k.lower().startswith(HEADER_PREFIX)}
    if content_type == "multipart/form-data":
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body)
        data, part_type = None, ""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None or name in ("file", "image"):
                data, part_type = payload, (part.get_content_type() or "").lower()
            elif name:
                params[name] = payload.decode("utf-8", "replace")
        if data is None:
            raise ApiError(400, "multipart upload without a 'file' part")
        return data, part_type, params
    if content_type == "application/json":
        try:
            document = json.loads(body)
            data = base64.b64decode(document.pop("image"), validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise ApiError(400, "a JSON body must be an object with 'image' (base64 DICOM, "
                                "PNG or JPEG) and optional parameters") from None
        params.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                       for k, v in document.items()})
        kind = "application/dicom" if decode.looks_like_dicom(data) else ""
        return data, kind, params
    return body, content_type, params


def query_upload(engine, headers: dict, body: bytes) -> dict:
    engine = require_engine(engine)
    limit = engine.config.max_upload_bytes
    if len(body) > limit:
        raise ApiError(413, f"upload of {len(body)} bytes exceeds CBMIR.MaxUploadBytes={limit}")
    if not body:
        raise ApiError(400, "empty body: POST a DICOM file or a PNG/JPEG image")
    data, content_type, raw_params = split_upload(headers, body)
    params = parse_params(raw_params)
    patient_id = raw_params.get("patient_id") or None
    if decode.looks_like_dicom(data) or content_type == "application/dicom":
        try:
            dataset = decode.read_dataset(data)
            patient_id = patient_id or str(dataset.get("PatientID", "") or "") or None
            count = decode.frame_count(dataset)
            frame = params.frame if params.frame is not None else count // 2
            if frame >= count:
                raise ApiError(400, f"the upload has {count} frame(s), not frame {frame}")
            pixels = decode.decode_frame(dataset, frame)  # one frame in memory at a time
        except decode.NotAnImage as error:
            raise ApiError(422, f"not an indexable image: {error}") from None
        except decode.UndecodableImage as error:
            raise ApiError(422, f"cannot decode the DICOM upload: {error}") from None
        except (ValueError, TypeError, ArithmeticError) as error:  # e.g. RescaleSlope "abc"
            raise ApiError(422, f"cannot read the DICOM upload: {type(error).__name__}: "
                                f"{error}") from None
    elif content_type in PICTURE_TYPES or content_type in DICOM_TYPES:
        try:
            pixels = decode.read_picture_bytes(data)
        except decode.UndecodableImage as error:
            status = 415 if content_type in DICOM_TYPES else 422
            raise ApiError(status, f"unsupported upload: {error}") from None
    else:
        raise ApiError(415, f"unsupported content type {content_type!r}: "
                            "use application/dicom, image/png or image/jpeg")
    embedder = engine.answering_embedder()  # the model of the answering generation
    if embedder is None:
        raise ApiError(409, "re-index to the new model in progress; retry when done",
                       reindex=engine.reindex_status())
    try:
        vector = embedder.embed_images([pixels])[0]
    except ValueError as error:
        raise ApiError(422, f"not an indexable image: {error}") from None
    query = {"instance": None, "patient_id": patient_id,
             "upload_bytes": len(data), "content_type": content_type}
    if query["patient_id"] is None:
        params = Params(**dict(params.__dict__, exclude_same_patient=False))
    results = engine.search(vector, params, query)
    return {"query": dict(query, params=params.__dict__), "results": results}


# -- status and re-index ---------------------------------------------------------------------
def status(engine, ingestor=None) -> dict:
    result = engine.status()
    ingest = ingestor.describe() if ingestor is not None else None
    if ingest is not None:
        result["ingest"] = ingest
    return result


def reindex(gateway, engine) -> dict:
    engine = require_engine(engine)
    if not engine.start_reindex(gateway.list_instances):
        raise ApiError(409, "a re-index is already running", reindex=engine.reindex_status())
    return {"started": True, "reindex": engine.reindex_status()}
