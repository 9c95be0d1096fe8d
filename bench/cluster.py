"""Benchmark: the PostgreSQL cluster (issue 15) with 1, 2 and 3 Orthanc nodes on this machine.

For each node count, on a fresh database of one private PostgreSQL (cbmir.tools.pg_server, the same
helper `make cluster` uses) with the shipped model and real figshare pixels:

- indexing throughput: `--images` uploads spread over every node by 4 clients, from the first
  upload until PostgreSQL holds a vector for every instance (each embedded once, by whichever
  node claimed it);
- store to searchable across nodes: images stored on node 0 at `--rate` images/s, each polled
  on the LAST node (node 0 itself with one node) until `/cbmir/similar` answers 200: p50/p95;
- the same three on one node with today's embedded SQLite store (`make run`), in the same run
  and so under the same machine load: the cost of the PostgreSQL store itself;
- query latency: `--queries` `GET /cbmir/similar/{id}` from 2 clients, round-robin over the
  nodes: p50/p95/p99 and answers per second.

    .venv/bin/python bench/cluster.py --nodes 1,2,3 --images 300

Honesty note printed with the figures: every node, PostgreSQL and the clients share this
machine's cores (2 here), so throughput cannot grow with nodes; it measures the coordination
cost (claims, replica feeds), not scale-out. The per-node rates feed docs/capacity.md.
"""
from __future__ import annotations

import argparse
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import requests

from cbmir.tools.orthanc_config import cluster_overrides
from cbmir.tools.pg_server import PostgresServer, missing_reason

SIMILAR = {"k": 10, "exclude_same_patient": "false", "group_by": "instance"}


def start_nodes(count: int, pg: PostgresServer, database: str, home, model) -> list:
    settings = pg.create_database(database)
    nodes = []
    for i in range(count):
        overrides, cbmir = cluster_overrides(settings, home / database / "storage", f"node-{i}")
        node = common.server(home / database / f"node-{i}", model=model, cbmir=cbmir)
        node.overrides.update(overrides)
        nodes.append(node.start(timeout=180))
    return nodes


def vectors_in_pg(pg: PostgresServer, database: str) -> int:
    """Distinct instances with a vector in the active generation, read from PostgreSQL."""
    table = pg.psql("SELECT table_schema FROM information_schema.columns WHERE table_name='vectors' "
                    "AND column_name='instance' LIMIT 1", database=database).strip()
    if not table:
        return 0
    return int(pg.psql(f'SELECT count(DISTINCT instance) FROM "{table}".vectors WHERE generation = '
                       f'(SELECT max(generation) FROM "{table}".vectors)', database=database) or 0)


def throughput(nodes, indexed_count, datas) -> dict:
    sessions = [requests.Session() for _ in nodes]
    for session, node in zip(sessions, nodes):
        session.auth = node.auth

    def upload(n: int) -> str:
        node = nodes[n % len(nodes)]
        answer = sessions[n % len(nodes)].post(node.url + "/instances", data=datas[n], timeout=60,
                                               headers={"Content-Type": "application/dicom"})
        answer.raise_for_status()
        return answer.json()["ID"]

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(upload, range(len(datas))))
    stored = time.perf_counter() - start
    deadline = time.monotonic() + 600
    while indexed_count() < len(set(ids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    indexed = time.perf_counter() - start
    done = indexed_count()
    return {"images": len(datas), "store_seconds": round(stored, 2),
            "store_images_per_s": round(len(datas) / stored, 1),
            "indexed_seconds": round(indexed, 2), "indexed": done,
            "indexed_images_per_s": round(done / indexed, 1), "ids": ids}


def store_to_searchable(store, poll, datas, rate: float) -> dict:
    """Store on `store` at `rate` images/s; a poller records when `poll` first answers 200."""
    stored: list[tuple[str, float]] = []
    searchable: dict[str, float] = {}
    done = threading.Event()

    def poller():
        session = requests.Session()
        session.auth = poll.auth
        position, deadline = 0, time.monotonic() + len(datas) / rate + 120
        while time.monotonic() < deadline:
            if position >= len(stored):
                if done.is_set() and position >= len(datas):
                    return
                time.sleep(0.005)
                continue
            instance, _ = stored[position]
            answer = session.get(f"{poll.url}/cbmir/similar/{instance}", params=SIMILAR, timeout=30)
            if answer.status_code == 200:
                searchable[instance] = time.perf_counter()
                position += 1
            else:
                time.sleep(0.02)

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    session = requests.Session()
    session.auth = store.auth
    start = time.perf_counter()
    for n, data in enumerate(datas):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        answer = session.post(store.url + "/instances", data=data, timeout=60,
                              headers={"Content-Type": "application/dicom"})
        answer.raise_for_status()
        stored.append((answer.json()["ID"], time.perf_counter()))
    achieved = len(datas) / (time.perf_counter() - start)
    done.set()
    thread.join()
    out = common.percentiles([searchable[i] - t for i, t in stored if i in searchable])
    out.update(rate_target=rate, rate_achieved=round(achieved, 1), images=len(datas),
               never_searchable=len(datas) - len(searchable))
    return out


def queries(nodes, ids, count: int) -> dict:
    latencies: list[float] = []
    errors = []

    def client(seed: int) -> None:
        chooser = random.Random(seed)
        sessions = [requests.Session() for _ in nodes]
        for session, node in zip(sessions, nodes):
            session.auth = node.auth
        for n in range(count // 2):
            k = (n + seed) % len(nodes)
            began = time.perf_counter()
            answer = sessions[k].get(f"{nodes[k].url}/cbmir/similar/{chooser.choice(ids)}",
                                     params=SIMILAR, timeout=30)
            latencies.append(time.perf_counter() - began)
            if answer.status_code != 200:
                errors.append(answer.status_code)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(s,)) for s in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out = common.percentiles(latencies)
    out.update(per_s=round(len(latencies) / (time.perf_counter() - start), 1), errors=len(errors))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure (default 1,2,3)")
    parser.add_argument("--images", type=int, default=300, help="images of the throughput run")
    parser.add_argument("--rate", type=float, default=20.0, help="store rate of the searchable run")
    parser.add_argument("--rate-images", type=int, default=200, help="images of the searchable run")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--model", default=str(common.DEFAULT_MODEL))
    parser.add_argument("--name", default="cluster")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the 1-node SQLite baseline measured in the same run")
    args = parser.parse_args()
    reason = missing_reason()
    if reason:
        parser.error(reason)
    env = common.environment()
    home = common.scratch_dir("cbmir-bench-cluster-")
    pg = PostgresServer(home / "postgres").start()
    counts = [int(n) for n in args.nodes.split(",")]
    datas = common.make_instances(args.images + args.rate_images * len(counts), tag="CLUSTER")
    results, rows = {}, []
    if not args.no_baseline:
        datas += common.make_instances(args.images + args.rate_images, tag="BASELINE", seed=1)
    try:
        if not args.no_baseline:  # today's single node (embedded SQLite store), same data, same load
            node = common.server(home / "sqlite", model=Path(args.model)).start(timeout=180)
            try:
                base = len(datas) - args.images - args.rate_images
                ingest = throughput([node], lambda: node.status()["indexed"],
                                    datas[base:base + args.images])
                ids = ingest.pop("ids")
                steady = store_to_searchable(node, node, datas[base + args.images:], args.rate)
                query = queries([node], ids, args.queries)
            finally:
                node.stop(timeout=60)
            results["1_node_sqlite"] = {"ingest": ingest, "store_to_searchable": steady,
                                        "query": query}
            print("1 node, SQLite:", results["1_node_sqlite"], flush=True)
            rows.append(f"| 1 (SQLite store, `make run`) | {ingest['indexed']}/{ingest['images']} | "
                        f"{ingest['store_images_per_s']} | {ingest['indexed_images_per_s']} | "
                        f"{steady.get('p50_ms')} | {steady.get('p95_ms')} | "
                        f"{steady['never_searchable']} | {query.get('p50_ms')} | "
                        f"{query.get('p99_ms')} | {query['per_s']} | {query['errors']} |")
        for run, count in enumerate(counts):
            database = f"bench_{count}_nodes"
            nodes = start_nodes(count, pg, database, home, Path(args.model))
            try:
                ingest = throughput(nodes, lambda: vectors_in_pg(pg, database),
                                    datas[:args.images])
                ids = ingest.pop("ids")
                first = args.images + run * args.rate_images
                steady = store_to_searchable(nodes[0], nodes[-1],
                                             datas[first:first + args.rate_images], args.rate)
                query = queries(nodes, ids, args.queries)
            finally:
                for node in nodes:
                    node.stop(timeout=60)
            results[f"{count}_nodes"] = {"ingest": ingest, "store_to_searchable": steady,
                                         "query": query}
            print(count, "nodes:", results[f"{count}_nodes"], flush=True)
            rows.append(f"| {count} | {ingest['indexed']}/{ingest['images']} | "
                        f"{ingest['store_images_per_s']} | {ingest['indexed_images_per_s']} | "
                        f"{steady.get('p50_ms')} | {steady.get('p95_ms')} | "
                        f"{steady['never_searchable']} | {query.get('p50_ms')} | "
                        f"{query.get('p99_ms')} | {query['per_s']} | {query['errors']} |")
    finally:
        pg.stop()
    lines = ["Nodes on one private PostgreSQL (fsync off), shipped model, figshare pixels (512 x 512). "
             "Throughput: 4 clients upload to every node in turn, seconds to a vector in PostgreSQL "
             "for every instance. Searchable: stored on node 0 at "
             f"{args.rate} images/s, polled on the last node. Queries: 2 clients, "
             "`GET /cbmir/similar/{id}?k=10`, round-robin over the nodes.", "",
             "| nodes | indexed | store img/s | indexed img/s | searchable p50 ms | p95 ms | "
             "never | query p50 ms | p99 ms | queries/s | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
             "- store rate achieved in the searchable run (target "
             f"{args.rate}/s): " + ", ".join(f"{k}: {v['store_to_searchable']['rate_achieved']}"
                                              for k, v in results.items()),
             "- `store img/s` is Orthanc's own storing (4 clients): with the PostgreSQL index "
             "(orthanc-postgresql) it is slower than with Orthanc's SQLite, before CBMIR does anything.",
             f"- CPU-bound: all nodes, PostgreSQL and the clients share {env['cores']} cores, so "
             "adding nodes here adds processes, not capacity; the figures show the cost of "
             "coordination (claims, replica feeds), not the scale-out a cluster of machines gets.",
             "- goal p95 <= 2 s store-to-searchable across nodes at 20 images/s: " +
             ", ".join(f"{k}: {'met' if v['store_to_searchable'].get('p95_ms', 1e9) <= 2000 else 'MISSED'}"
                       for k, v in results.items())]
    common.write_results(args.name, env, results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
