"""cbmir.vectors.row_cache: whole instances in memory, exact after deletes, bounded."""
from __future__ import annotations

from cbmir.vectors.row_cache import RowCache


def _row(row_id: int, instance: str, frame: int = 0, generation: int = 1) -> dict:
    return {"id": row_id, "instance": instance, "frame": frame, "generation": generation}


def test_rows_by_id_and_whole_instances_in_frame_order():
    cache = RowCache()
    cache.put([_row(2, "a", frame=1), _row(1, "a", frame=0), _row(3, "b", generation=2)])
    assert cache.get(2)["frame"] == 1 and cache.get(9) is None
    assert [r["id"] for r in cache.instance("a", 1)] == [1, 2]
    assert cache.instance("b", 1) is None and len(cache.instance("b", 2)) == 1
    assert len(cache) == 3


def test_dropping_ids_keeps_the_rest_of_the_instance_and_forgets_empty_ones():
    cache = RowCache()
    cache.put([_row(1, "a"), _row(2, "a", frame=1), _row(3, "b")])
    cache.drop([1, 3, 99])
    assert [r["id"] for r in cache.instance("a", 1)] == [2]
    assert cache.instance("b", 1) is None and cache.get(3) is None and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.instance("a", 1) is None


def test_over_the_limit_nothing_of_the_batch_is_kept():
    cache = RowCache(limit=2)
    cache.put([_row(1, "a")])
    cache.put([_row(2, "b"), _row(3, "b", frame=1)])  # 3 rows > 2: the whole instance stays out
    assert len(cache) == 1 and cache.instance("b", 1) is None
