"""Wiring: Orthanc callbacks -> the CBMIR engine. One small callback per concern.

`register(orthanc)` takes the orthanc module as an argument so the logic it
wires can be tested with a fake. Bad configuration is logged with its key path
and stops Orthanc (fail fast); a missing model does not: Orthanc starts, images
stay pending and the REST API answers 503 until the model is there; neither does an
unusable index folder (availability.py: 503 with the reason, retried until it works).
Every route is registered through `leak.wrap` (rest_leak.py: orthanc-python 4.0 leaks
each request's arguments).
"""
from __future__ import annotations

import json

from cbmir.service import cluster, reconcile, routes, thumbnails
from cbmir.service.availability import Recovery
from cbmir.service.config import ConfigError, load_config
from cbmir.service.logs import Log, describe_index
from cbmir.service.metrics import MetricsPublisher
from cbmir.service.openapi import register_openapi_route
from cbmir.service.request_guard import decode_args, run_with_large_stack
from cbmir.service.rest_leak import LeakWorkaround
from cbmir.service.verify import run_in_thread, verify
from cbmir.service.worker import Ingestor
from cbmir.vectors.search import ApiError

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
    leak = LeakWorkaround(orthanc)  # every route frees what orthanc-python 4.0 leaks
    engine = ingestor = follower = metrics = None  # built by `build`; None while the index is unusable
    sdk_missing = missing_sdk_names(orthanc)
    if sdk_missing:
        orthanc.LogError(f"CBMIR: this orthanc-python lacks {sdk_missing}")
    state = {"leak": leak, "orthanc_started": False}

    def build():
        nonlocal engine, ingestor, follower, metrics
        built = cluster.make_engine(config, log, orthanc, lambda: routes.list_instances(orthanc))
        built.sdk_missing = sdk_missing
        ingestor = Ingestor(orthanc, built)
        follower = cluster.make_follower(orthanc, built, lambda: routes.list_instances(orthanc))
        metrics = MetricsPublisher(orthanc, built, period=config.catch_up_seconds)
        engine = built
        state.update(engine=engine, ingestor=ingestor, follower=follower, metrics=metrics)
        if state["orthanc_started"]:  # recovered after start-up: start what on_started would
            try:
                start_engine()
            except Exception as error:  # the index is open now: never build a second engine
                orthanc.LogError(f"CBMIR: start after recovery failed: {error!r}")

    recovery = Recovery(build, config.catch_up_seconds, orthanc.LogError)
    state["recovery"] = recovery
    recovery.attempt()

    def ready():
        """The engine, or a 503 naming why CBMIR is not running (the index folder, ...)."""
        if engine is None:
            raise ApiError(503, f"CBMIR is not running: {recovery.reason}",
                           index_directory=str(config.index_directory))
        return engine

    def start_engine():
        engine.load_model()
        ingestor.start()
        follower.start()
        cluster.start(engine)  # cluster mode: the claimer and the replica
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

    def on_started():
        state["orthanc_started"] = True
        if engine is not None:
            start_engine()
        else:
            recovery.start_retrying()

    def on_stopped():
        recovery.stop()
        if engine is None:
            return
        engine.queue.stop()
        metrics.stop()
        cluster.stop(engine)
        follower.join(5)
        ingestor.join(15)
        log.warning("CBMIR: stopped")

    def OnChange(change_type, level, resource_id):
        try:
            if change_type == orthanc.ChangeType.ORTHANC_STARTED:
                on_started()
            elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
                on_stopped()
            elif engine is None:
                pass  # the catch-up sees these changes once the index is back
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
            with ready().latency.timer("query"):
                return handler()
        return run

    def Similar(output, uri, **request):
        routes.answer(output, request, "GET", timed(lambda: routes.similar(
            orthanc, ready(), request["groups"][0], decode_args(request.get("get")))), log.error)

    def Query(output, uri, **request):
        # parsed on a large stack: deep JSON / nested sequences raise, not segfault
        routes.answer(output, request, "POST", timed(lambda: run_with_large_stack(
            lambda: routes.query_upload(orthanc, ready(), request.get("headers") or {},
                                        request.get("body") or b""))), log.error)

    def Status(output, uri, **request):
        routes.answer(output, request, "GET", lambda: dict(
            routes.status(ready(), ingestor), rest_leak_workaround=leak.describe()), log.error)

    def Reindex(output, uri, **request):
        routes.answer(output, request, "POST", lambda: routes.reindex(orthanc, ready()),
                      log.error)

    def Verify(output, uri, **request):
        routes.answer(output, request, "POST", lambda: run_in_thread(lambda: verify(
            orthanc, ready(), request.get("body") or b"")), log.error)

    def Thumbnail(output, uri, **request):
        thumbnails.answer(output, request, lambda: thumbnails.thumbnail(
            orthanc, ready(), request["groups"][0], decode_args(request.get("get"))), log.error)

    def Reconcile(output, uri, **request):
        routes.answer(output, request, "POST", lambda: reconcile.route(
            orthanc, ready(), lambda: routes.list_instances(orthanc)), log.error)

    orthanc.RegisterOnChangeCallback(OnChange)
    orthanc.RegisterRestCallback("/cbmir/similar/([^/]+)", leak.wrap(Similar))
    orthanc.RegisterRestCallback("/cbmir/query", leak.wrap(Query))
    orthanc.RegisterRestCallback("/cbmir/status", leak.wrap(Status))
    orthanc.RegisterRestCallback("/cbmir/reindex", leak.wrap(Reindex))
    orthanc.RegisterRestCallback("/cbmir/verify", leak.wrap(Verify))
    orthanc.RegisterRestCallback("/cbmir/thumbnail/([^/]+)", leak.wrap(Thumbnail))
    orthanc.RegisterRestCallback("/cbmir/reconcile", leak.wrap(Reconcile))
    register_openapi_route(leak.wrapping(orthanc), log.error)
    try:
        from cbmir.service.viewer_routes import register_static_routes
    except ImportError:
        pass  # the viewer is optional
    else:
        try:
            register_static_routes(leak.wrapping(orthanc), config)
        except Exception as error:  # a broken viewer must not keep the PACS from starting
            orthanc.LogError(f"CBMIR: viewer routes not registered: {error!r}")
    log.info(f"CBMIR: plugin registered (index directory {config.index_directory})")
    return state
