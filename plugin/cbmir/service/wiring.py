"""Wiring: Orthanc callbacks -> the CBMIR engine. One small callback per concern.

`register(orthanc)` takes the orthanc module as an argument and reaches it only
through `Gateway` (gateway.py), so the logic it wires can be tested with a fake. Bad configuration is logged with its key path
and stops Orthanc (fail fast); a missing model does not: Orthanc starts, images
stay pending and the REST API answers 503 until the model is there; neither does an
unusable index folder (availability.py: 503 with the reason, retried until it works).
Every route is registered through `leak.wrap` (rest_leak.py: orthanc-python 4.0 leaks
each request's arguments), which the gateway applies to every route.
"""
from __future__ import annotations

from cbmir.service import cluster, reconcile, routes, thumbnails
from cbmir.service.availability import Recovery
from cbmir.service.config import ConfigError, load_config
from cbmir.service.gateway import Gateway
from cbmir.service.logs import describe_index
from cbmir.service.metrics import MetricsPublisher
from cbmir.service.openapi import register_openapi_route
from cbmir.service.request_guard import decode_args, run_with_large_stack
from cbmir.service.rest_leak import LeakWorkaround
from cbmir.service.verify import run_in_thread, verify
from cbmir.service.viewer_routes import register_static_routes
from cbmir.service.worker import Ingestor
from cbmir.vectors.search import ApiError


def register(orthanc) -> dict:
    gateway = Gateway(orthanc)
    log = gateway.log  # .info / .warning / .error
    try:
        config = load_config(gateway.configuration())
    except ConfigError as error:
        log.error(f"CBMIR: bad configuration: {error}")
        raise
    leak = LeakWorkaround(gateway.plugin_version)
    gateway.wrap_routes(leak.wrap)  # every route frees what orthanc-python 4.0 leaks
    engine = ingestor = follower = metrics = None  # built by `build`; None while the index is unusable
    if gateway.missing:
        log.error(f"CBMIR: this orthanc-python lacks {gateway.missing}")
    state = {"leak": leak, "gateway": gateway, "orthanc_started": False}

    def build():
        nonlocal engine, ingestor, follower, metrics
        built = cluster.make_engine(config, log, gateway)  # SQLite, or PostgreSQL (cluster)
        ingestor = Ingestor(gateway, built)
        follower = cluster.make_follower(gateway, built)
        metrics = MetricsPublisher(gateway, built, period=config.catch_up_seconds)
        engine = built
        state.update(engine=engine, ingestor=ingestor, follower=follower, metrics=metrics)
        if state["orthanc_started"]:  # recovered after start-up: start what on_started would
            try:
                start_engine()
            except Exception as error:  # the index is open now: never build a second engine
                log.error(f"CBMIR: start after recovery failed: {error!r}")

    recovery = Recovery(build, config.catch_up_seconds, log.error)
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
        cluster.start(engine)  # cluster mode: the claimer, the replica, the listener
        engine.resume_work(gateway.list_instances)  # re-index or rebuild; then "started"
        metrics.start()  # values set before ORTHANC_STARTED are dropped by Orthanc
        log.warning(f"CBMIR: started; index {describe_index(engine.counters()['index'])}")

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
        engine.stop()
        metrics.stop()
        cluster.stop(engine)
        follower.join(5)
        ingestor.join(15)
        log.warning("CBMIR: stopped")

    def on_change(kind, level, resource_id):
        try:
            if kind == "started":
                on_started()
            elif kind == "stopped":
                on_stopped()
            elif engine is None:
                pass  # the catch-up sees these changes once the index is back
            elif kind == "new_instance":
                # Enqueued here, not in OnStoredInstance: that hook runs in the storing thread
                # (serialized, and it must take the GIL from the busy worker), which made every
                # upload slower (bench/README.md). A re-sent instance fires no
                # NEW_INSTANCE, and it is already indexed or rejected. `arrival` tells the
                # worker's pacer that storing is busy. The follower is not woken: it would
                # read /changes (Orthanc's database) once per upload; it polls every
                # CatchUpSeconds, and its checkpoint only bounds what a restart replays.
                engine.enqueue(resource_id, arrival=True)
            elif kind == "deleted":
                follower.on_deleted(level, resource_id)
        except Exception as error:  # never let a callback take Orthanc down
            log.error(f"CBMIR: change callback failed: {error!r}")

    def timed(handler):
        """Successful answers count in the query latency metric."""
        def run():
            with ready().latency.timer("query"):
                return handler()
        return run

    def Similar(output, uri, **request):
        routes.answer(output, request, "GET", timed(lambda: routes.similar(
            gateway, ready(), request["groups"][0], decode_args(request.get("get")))), log.error)

    def Query(output, uri, **request):
        # parsed on a large stack: deep JSON / nested sequences raise, not segfault
        routes.answer(output, request, "POST", timed(lambda: run_with_large_stack(
            lambda: routes.query_upload(ready(), request.get("headers") or {},
                                        request.get("body") or b""))), log.error)

    def Status(output, uri, **request):
        routes.answer(output, request, "GET", lambda: dict(
            routes.status(ready(), ingestor), sdk_missing=gateway.missing,
            rest_leak_workaround=leak.describe()), log.error)

    def Reindex(output, uri, **request):
        routes.answer(output, request, "POST", lambda: routes.reindex(gateway, ready()),
                      log.error)

    def Verify(output, uri, **request):
        routes.answer(output, request, "POST", lambda: run_in_thread(lambda: verify(
            gateway, ready(), request.get("body") or b"")), log.error)

    def Thumbnail(output, uri, **request):
        thumbnails.answer(output, request, lambda: thumbnails.thumbnail(
            gateway, ready(), request["groups"][0], decode_args(request.get("get"))), log.error)

    def Reconcile(output, uri, **request):
        routes.answer(output, request, "POST", lambda: reconcile.reconcile(
            ready(), gateway.list_instances), log.error)

    gateway.register_change_callback(on_change)
    gateway.register_route("/cbmir/similar/([^/]+)", Similar)
    gateway.register_route("/cbmir/query", Query)
    gateway.register_route("/cbmir/status", Status)
    gateway.register_route("/cbmir/reindex", Reindex)
    gateway.register_route("/cbmir/verify", Verify)
    gateway.register_route("/cbmir/thumbnail/([^/]+)", Thumbnail)
    gateway.register_route("/cbmir/reconcile", Reconcile)
    register_openapi_route(gateway, log.error)
    try:
        register_static_routes(gateway, config)
    except Exception as error:  # a broken viewer must not keep the PACS from starting
        log.error(f"CBMIR: viewer routes not registered: {error!r}")
    log.info(f"CBMIR: plugin registered (index directory {config.index_directory})")
    return state
