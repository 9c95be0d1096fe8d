"""The private PostgreSQL the cluster tests, `make cluster` and bench/cluster.py start
(cbmir.tools.pg_server): fresh databases do not see each other, a killed server restarts
on its data with every committed row."""
from __future__ import annotations


def test_fresh_databases_are_separate_and_survive_a_kill(postgres, pg_database):
    name = pg_database["Database"]
    postgres.psql("CREATE TABLE t (a int); INSERT INTO t VALUES (41), (42)", database=name)
    other = postgres.create_database("t_helper_other")["Database"]
    assert postgres.psql("SELECT count(*) FROM pg_tables WHERE tablename = 't'",
                         database=other).strip() == "0"
    postgres.kill()
    assert not postgres.running()
    postgres.start()
    assert postgres.psql("SELECT sum(a) FROM t", database=name).strip() == "83"
    assert postgres.psql("SHOW listen_addresses", database=name).strip() == "127.0.0.1"
