"""The private PostgreSQL of the tests: see cbmir/pg_server.py (shared with `make cluster`, bench/)."""
from cbmir.pg_server import PostgresServer, find_bindir, free_port, missing_reason  # noqa: F401
