"""Reconciliation: Orthanc's instances against the index, both ways.

Why: the /changes checkpoint and the callbacks are the fast path, but anything that
went wrong once (a full disk in an older version, an index folder restored from a
backup, a lost callback) would otherwise stay wrong for good. At every start and on
demand (POST /cbmir/reconcile) every instance Orthanc has that the index neither
holds (active generation) nor recorded as skipped/failed is queued, and every one
the index holds that Orthanc no longer has is removed.
"""
from __future__ import annotations


def reconcile(engine, list_instances) -> dict:
    """Queue the missing, drop the gone; returns the counts (also logged)."""
    if hasattr(engine, "reconcile_cluster"):  # cluster mode (cbmir.service.cluster)
        return engine.reconcile_cluster(list_instances)
    existing = list_instances()
    in_orthanc = set(existing)
    known = engine.store.known_instances(engine.active.generation)
    missing = [instance for instance in existing if instance not in known]
    for instance in missing:
        engine.queue.put(instance)
    gone = [instance for instance in engine.store.all_instances() if instance not in in_orthanc]
    for instance in gone:
        engine.delete("instance", instance)
    if missing or gone:
        engine.log(f"CBMIR: reconciliation: {len(missing)} instance(s) missing from the index "
                   f"queued, {len(gone)} deleted from Orthanc removed")
    return {"orthanc_instances": len(in_orthanc), "queued": len(missing), "removed": len(gone),
            "pending": engine.queue.pending()}


def route(engine, list_instances) -> dict:
    """POST /cbmir/reconcile."""
    from cbmir.vectors.search import ApiError

    if engine is None:
        raise ApiError(503, "CBMIR is not running (see the Orthanc log)")
    return reconcile(engine, list_instances)
