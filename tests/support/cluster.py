"""A cluster of real Orthanc nodes on one PostgreSQL, as the cluster tests see it (tests/cluster).

- `Cluster.vector_rows()`: the rows of CBMIR's shared vector table, counted per
  (generation, instance, frame), read straight from PostgreSQL (the "exactly once" checks).
- `Cluster.indexed_lines()`: how often each instance was logged "CBMIR: indexed" over every
  node's log (the "embedded once" checks).
"""
from __future__ import annotations

import collections
import re

from orthanc_server import OrthancServer, wait_for

INDEXED = re.compile(r"CBMIR: indexed ([0-9a-f]{8}(?:-[0-9a-f]{8}){4})")
ALL = {"exclude_same_patient": "false", "group_by": "instance", "k": 10}
# POST /cbmir/query with a raw DICOM body takes its parameters from X-CBMIR-* headers.
ALL_HEADERS = {"Content-Type": "application/dicom", "X-CBMIR-Exclude-Same-Patient": "false",
               "X-CBMIR-Group-By": "instance", "X-CBMIR-K": "10"}


class Cluster:
    def __init__(self, postgres, database: dict, nodes: list[OrthancServer]):
        self.postgres, self.database, self.nodes = postgres, database, nodes

    def sql(self, statement: str) -> list[list[str]]:
        out = self.postgres.psql(statement, database=self.database["Database"])
        return [line.split("|") for line in out.splitlines() if line]

    def vector_table(self) -> str:
        """The schema-qualified name of CBMIR's vector table (`vectors`, any schema)."""
        rows = self.sql("SELECT table_schema FROM information_schema.columns WHERE table_name = "
                        "'vectors' AND column_name IN ('generation', 'instance', 'frame') "
                        "GROUP BY table_schema HAVING count(*) = 3")
        assert rows, "no CBMIR `vectors` table (generation, instance, frame) in PostgreSQL"
        return f'"{rows[0][0]}".vectors'

    def vector_rows(self, generation: int | None = None) -> collections.Counter:
        """Counter {(generation, instance, frame): rows}."""
        where = f"WHERE generation = {int(generation)}" if generation is not None else ""
        rows = self.sql(f"SELECT generation, instance, frame, count(*) FROM {self.vector_table()} "
                        f"{where} GROUP BY generation, instance, frame")
        return collections.Counter({(int(g), i, int(f)): int(n) for g, i, f, n in rows})

    def indexed_lines(self) -> collections.Counter:
        counts = collections.Counter()
        for node in self.nodes:
            counts.update(INDEXED.findall(node.log_tail(10**9)))
        return counts

    def stored(self) -> set[str]:
        """Every instance Orthanc has (the shared index), asked from a live node."""
        node = next(n for n in self.nodes if n.process and n.process.poll() is None)
        return set(node.get("/instances").json())

    def wait_indexed(self, instances, generation: int = 1, timeout: float = 240) -> None:
        """Until PostgreSQL holds vectors of `generation` for every instance. Asked of the
        database, not of a node: a node asked /cbmir/similar about an instance it has not
        indexed queues it (a 409 answer), which would hide a catch-up that never happens."""
        wanted = set(instances)

        def done():
            rows = self.sql(f"SELECT DISTINCT instance FROM {self.vector_table()} "
                            f"WHERE generation = {int(generation)}")
            return wanted <= {row[0] for row in rows}
        try:
            wait_for(done, timeout=timeout, step=0.3)
        except TimeoutError:
            rows = {r[0] for r in self.sql(f"SELECT DISTINCT instance FROM {self.vector_table()}")}
            raise AssertionError(f"{len(wanted - rows)} of {len(wanted)} instances have no vector "
                                 f"after {timeout} s\n{self.nodes[0].status()}") from None

    def wait_searchable(self, instances, nodes=None, timeout: float = 240) -> None:
        """Until every node in `nodes` answers /cbmir/similar for every instance."""
        todo = {(n, i) for n in range(len(self.nodes)) for i in instances
                if nodes is None or n in nodes}

        def step():
            for pair in sorted(todo):
                node, instance = pair
                if self.nodes[node].get(f"/cbmir/similar/{instance}", params=ALL).status_code == 200:
                    todo.discard(pair)
            return not todo
        try:
            wait_for(step, timeout=timeout, step=0.3)
        except TimeoutError:
            node, instance = sorted(todo)[0]
            answer = self.nodes[node].get(f"/cbmir/similar/{instance}", params=ALL).text[:300]
            raise AssertionError(f"{len(todo)} (node, instance) pairs not searchable after "
                                 f"{timeout} s, e.g. node {node}: {answer}\n"
                                 f"{self.nodes[node].status()}\n{self.nodes[node].log_tail(3000)}")
