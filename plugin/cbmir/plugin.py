"""Wiring: Orthanc callbacks -> the CBMIR engine. One small callback per concern.

`register(orthanc)` takes the orthanc module as an argument so the logic it
wires can be tested with a fake. Bad configuration is logged with its key path
and stops Orthanc (fail fast); a missing model does not: Orthanc starts, images
stay pending and the REST API answers 503 until the model is there.
"""
from __future__ import annotations

import json

from . import reconcile, routes, thumbnails
from .catchup import ChangeFollower
from .config import ConfigError, load_config
from .engine import Engine
from .ingest import Ingestor
from .logs import Log, describe_index
from .metrics import MetricsPublisher
from .openapi import register_openapi_route
from .verify import run_in_thread, verify


# The orthanc-python API this package uses; checked against the real module at start-up
# (status "sdk_missing") and against the unit tests' fakes, so a fake cannot drift.
SDK_NAMES = {
    "orthanc": ["GetConfiguration", "LogInfo", "LogWarning", "LogError", "SetMetricsValue",
                "MetricsType", "RegisterOnChangeCallback",
                "RegisterRestCallback", "RestApiGet", "RestApiPost", "GetDicomForInstance",
                "OrthancException", "ChangeType", "ResourceType"],
    "RestOutput": ["AnswerBuffer", "SendHttpStatus", "SetHttpHeader", "SendMethodNotAllowed"],
}


def missing_sdk_names(orthanc) -> list[str]:
    missing = []
    for owner, names in SDK_NAMES.items():
        target = orthanc if owner == "orthanc" else getattr(orthanc, owner, None)
        missing += [f"{owner}.{name}" for name in names if not hasattr(target, name)]
    return missing


def resource_levels(orthanc) -> dict:
    kinds = orthanc.ResourceType
    return {kinds.PATIENT: "patient", kinds.STUDY: "study", kinds.SERIES: "series",
            kinds.INSTANCE: "instance"}


def register(orthanc) -> dict:
    log = Log.from_orthanc(orthanc)  # .info / .warning / .error
    LEVELS = resource_levels(orthanc)  # noqa: N806 - a constant for this registration
    try:
        config = load_config(json.loads(orthanc.GetConfiguration()))
    except ConfigError as error:
        orthanc.LogError(f"CBMIR: bad configuration: {error}")
        raise
    engine = Engine(config, log=log)
    engine.sdk_missing = missing_sdk_names(orthanc)
    if engine.sdk_missing:
        orthanc.LogError(f"CBMIR: this orthanc-python lacks {engine.sdk_missing}")
    ingestor = Ingestor(orthanc, engine)
    follower = ChangeFollower(orthanc, engine, lambda: routes.list_instances(orthanc))
    metrics = MetricsPublisher(orthanc, engine, period=config.catch_up_seconds)
    state = {"engine": engine, "ingestor": ingestor, "follower": follower, "metrics": metrics}

    def on_started():
        engine.load_model()
        ingestor.start()
        follower.start()
        resume = int(engine.store.get_state("reindex_generation", "0") or 0)
        if resume and resume != engine.active.generation:
            engine.start_reindex(lambda: routes.list_instances(orthanc), resume_generation=resume)
        elif engine.model_changed():
            log.warning("CBMIR: the model changed since the index was built: re-indexing")
            engine.start_reindex(lambda: routes.list_instances(orthanc))
        else:  # a large fresh tier at start (lost Annoy file, crash before a rebuild) would
            engine.maybe_rebuild(engine.active)  # otherwise wait for the next stored image
        engine.started = True
        metrics.start()  # values set before ORTHANC_STARTED are dropped by Orthanc
        log.warning(f"CBMIR: started; index {describe_index(engine.active.describe())}")

    def on_stopped():
        engine.queue.stop()
        metrics.stop()
        follower.join(5)
        ingestor.join(15)
        log.warning("CBMIR: stopped")

    def OnChange(change_type, level, resource_id):
        try:
            if change_type == orthanc.ChangeType.ORTHANC_STARTED:
                on_started()
            elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
                on_stopped()
            elif change_type == orthanc.ChangeType.NEW_INSTANCE:
                # Enqueued here, not in OnStoredInstance: that hook runs in the storing thread
                # (serialized, and it must take the GIL from the busy worker), which made every
                # upload slower (bench/README.md). A re-sent instance fires no
                # NEW_INSTANCE, and it is already indexed or rejected. `arrival` tells the
                # worker's pacer that storing is busy. The follower is not woken: it would
                # read /changes (Orthanc's database) once per upload; it polls every
                # CatchUpSeconds, and its checkpoint only bounds what a restart replays.
                engine.queue.put(resource_id, arrival=True)
            elif change_type == orthanc.ChangeType.DELETED:
                follower.on_deleted(LEVELS.get(level, "instance"), resource_id)
        except Exception as error:  # never let a callback take Orthanc down
            orthanc.LogError(f"CBMIR: change callback failed: {error!r}")

    def timed(handler):
        """Successful answers count in the query latency metric."""
        def run():
            with engine.latency.timer("query"):
                return handler()
        return run

    def Similar(output, uri, **request):
        routes.answer(output, request, "GET", timed(lambda: routes.similar(
            orthanc, engine, request["groups"][0], request.get("get") or {})), log.error)

    def Query(output, uri, **request):
        routes.answer(output, request, "POST", timed(lambda: routes.query_upload(
            orthanc, engine, request.get("headers") or {}, request.get("body") or b"")),
            log.error)

    def Status(output, uri, **request):
        routes.answer(output, request, "GET", lambda: routes.status(engine, ingestor), log.error)

    def Reindex(output, uri, **request):
        routes.answer(output, request, "POST", lambda: routes.reindex(orthanc, engine),
                      log.error)

    def Verify(output, uri, **request):
        routes.answer(output, request, "POST", lambda: run_in_thread(lambda: verify(
            orthanc, engine, request.get("body") or b"")), log.error)

    def Thumbnail(output, uri, **request):
        thumbnails.answer(output, request, lambda: thumbnails.thumbnail(
            orthanc, engine, request["groups"][0], request.get("get") or {}), log.error)

    def Reconcile(output, uri, **request):
        routes.answer(output, request, "POST", lambda: reconcile.route(
            orthanc, engine, lambda: routes.list_instances(orthanc)), log.error)

    orthanc.RegisterOnChangeCallback(OnChange)
    orthanc.RegisterRestCallback("/cbmir/similar/([^/]+)", Similar)
    orthanc.RegisterRestCallback("/cbmir/query", Query)
    orthanc.RegisterRestCallback("/cbmir/status", Status)
    orthanc.RegisterRestCallback("/cbmir/reindex", Reindex)
    orthanc.RegisterRestCallback("/cbmir/verify", Verify)
    orthanc.RegisterRestCallback("/cbmir/thumbnail/([^/]+)", Thumbnail)
    register_openapi_route(orthanc, log.error)
    orthanc.RegisterRestCallback("/cbmir/reconcile", Reconcile)
    try:
        from .static_routes import register_static_routes
    except ImportError:
        pass  # the viewer is optional
    else:
        try:
            register_static_routes(orthanc, config)
        except Exception as error:  # a broken viewer must not keep the PACS from starting
            orthanc.LogError(f"CBMIR: viewer routes not registered: {error!r}")
    log.info(f"CBMIR: plugin registered (index directory {config.index_directory})")
    return state
