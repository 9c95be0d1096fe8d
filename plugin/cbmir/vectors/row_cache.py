"""The store's in-memory cache of whole instances' rows (metadata + vector)."""
from __future__ import annotations

import threading

CACHE_ROWS = 50_000  # rows kept in memory, ~1.5 KB each


class RowCache:
    """Rows (metadata + vector) of whole instances, in memory, up to `limit` rows.

    Why: a REST query reads its own instance's vector and the metadata of ~50
    neighbours; through SQLite that is one connection per Orthanc HTTP thread,
    each with a cold page cache over wide rows (~27 % of a query at 16k,
    docs/benchmarks/query.md). Filled at start and by every insert; rows are
    only ever inserted or deleted (never updated), so dropping deleted ids keeps
    it exact. Past `limit` rows, the rest is read from SQLite as before.
    """

    def __init__(self, limit: int = CACHE_ROWS):
        self.limit = limit
        self._rows: dict[int, dict] = {}
        self._by_instance: dict[tuple[int, str], list[dict]] = {}
        self._lock = threading.Lock()

    def put(self, rows: list[dict]) -> None:
        """Whole instances only (all their frames), or nothing when over the limit."""
        groups: dict[tuple[int, str], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["generation"], row["instance"]), []).append(row)
        with self._lock:
            if len(self._rows) + len(rows) > self.limit:
                return
            for key, group in groups.items():
                merged = self._by_instance.get(key, []) + group
                for row in group:
                    self._rows[row["id"]] = row
                self._by_instance[key] = sorted(merged, key=lambda r: r["frame"])

    def get(self, row_id: int) -> dict | None:
        return self._rows.get(row_id)

    def lookup(self, ids) -> tuple[dict[int, dict], list[int]]:
        """({id: row} of the ids held here, [ids the store must read]): both stores' metadata()."""
        found: dict[int, dict] = {}
        missing = []
        for row_id in ids:
            row = self.get(int(row_id))
            if row is None:
                missing.append(int(row_id))
            else:
                found[row["id"]] = row
        return found, missing

    def instance(self, instance: str, generation: int) -> list[dict] | None:
        return self._by_instance.get((generation, instance))

    def drop(self, ids) -> None:
        with self._lock:
            for row_id in ids:
                row = self._rows.pop(int(row_id), None)
                if row is not None:
                    key = (row["generation"], row["instance"])
                    rest = [r for r in self._by_instance.get(key, []) if r["id"] != row["id"]]
                    if rest:
                        self._by_instance[key] = rest
                    else:
                        self._by_instance.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._rows, self._by_instance = {}, {}

    def __len__(self) -> int:
        return len(self._rows)
